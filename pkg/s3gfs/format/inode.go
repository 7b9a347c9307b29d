package format

import (
	"fmt"
	"sort"
	"strings"
)

// InodeKind says what an inode version describes.
type InodeKind byte

// Inode kinds. A tombstone is the final version of a deleted inode.
const (
	KindFile      InodeKind = 1
	KindDir       InodeKind = 2
	KindSymlink   InodeKind = 3
	KindTombstone InodeKind = 4
	KindSpecial   InodeKind = 5 // FIFO, socket or device node
)

func (k InodeKind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	case KindTombstone:
		return "tombstone"
	case KindSpecial:
		return "special"
	}
	return fmt.Sprintf("inodekind(%d)", byte(k))
}

// Limits enforced by the encoder and the decoder.
const (
	MaxNameLen       = 255  // bytes in one directory entry name
	MaxSymlinkLen    = 4095 // bytes in a symlink target
	MaxXattrNameLen  = 255  // bytes in an extended attribute name
	MaxXattrValueLen = 64 << 10
	MaxXattrs        = 1024
	MaxEntries       = 1 << 24 // entries in one directory version
	MaxExtents       = 1 << 24 // extents in one file version
	MaxFileSize      = 1 << 62 // bytes in one file
	MaxExtentIndex   = 1 << 50 // highest extent index
	// MaxDeltaChain: a directory version more than this many versions past
	// its base MUST be written as a full version instead.
	MaxDeltaChain = 64
)

// ValidateName checks a directory entry name (invariant 10 of the protocol).
func ValidateName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: invalid name %q", ErrBadName, name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes exceeds %d", ErrNameTooLong, len(name), MaxNameLen)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: name %q contains '/' or NUL", ErrBadName, name)
	}
	return nil
}

// Name errors, wrapped by ValidateName.
var (
	ErrBadName     = fmt.Errorf("bad file name")
	ErrNameTooLong = fmt.Errorf("file name too long")
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// ExtentRef names the extent object holding bytes
// [Index*ExtentSize, Index*ExtentSize+Length) of a file. Bytes of the file
// inside its size but beyond Length, or in an index with no ExtentRef, are
// zeros.
//
// The bytes are checked (FORMAT.md §5.3) either against CRC, one CRC-32C of
// the whole extent (BlockShift 0, the only form before block checksums),
// or block by block against Sums (BlockShift >= MinBlockShift), which lets
// a reader check a part of the extent it fetched alone (§6).
type ExtentRef struct {
	Index  uint64 // position of the extent in the file
	EID    uint64 // the extent object's id (key: Keys.Extent(inode, EID))
	Length uint32 // bytes stored in the extent object
	CRC    uint32 // CRC-32C of those bytes (BlockShift 0 only; else 0)
	// BlockShift, when not 0, makes the blocks 1<<BlockShift bytes long.
	BlockShift uint8
	// Sums holds the CRC-32C of every block, 4 bytes little-endian each
	// (Blocks() of them): a string, so that references stay comparable.
	Sums string
	// Origin says which volume holds the extent: 0 this one, k >= 1 the
	// k-th volume of a clone's source chain (FORMAT.md §16).
	Origin uint8
}

// EntryOp is a directory change in a version.
type EntryOp byte

// Directory entry operations. A full version holds only EntryPut.
const (
	EntryPut    EntryOp = 1 // name now refers to Child
	EntryRemove EntryOp = 2 // name no longer exists
	// Pending entries (FORMAT.md §5.5): they apply iff transaction Tx
	// commits.
	EntryPendingPut    EntryOp = 3 // name refers to Child if Tx commits
	EntryPendingRemove EntryOp = 4 // name is removed if Tx commits
	EntryPendingDelete EntryOp = 5 // the directory is deleted if Tx commits (no name)
)

// Pending reports whether op is a pending entry.
func (op EntryOp) Pending() bool { return op >= EntryPendingPut && op <= EntryPendingDelete }

// HasChild reports whether entries of op carry a child.
func (op EntryOp) HasChild() bool { return op == EntryPut || op == EntryPendingPut }

// Entry is one directory entry, or one change to it in a delta version.
type Entry struct {
	Op        EntryOp
	Name      string
	Child     uint64    // inode id (puts only)
	ChildKind InodeKind // kind of Child when the entry was made (puts only)
	Tx        uint64    // pending entries only: the rename transaction
	Host      uint64    // pending entries only: the renaming host
	// Born (committed puts of a regular file only): Child's version 1,
	// which has no object of its own (FORMAT.md §5.4, "born puts"). A
	// reader that finds no version of Child visible reads this one.
	Born *Birth
}

// Birth is the version 1 of a regular file carried by the directory entry
// that created it (a born put): an empty inline file with one link, with
// these attributes. It saves the object a new file's version 1 would
// otherwise need, so that creating a file is one write, not two.
type Birth struct {
	Mode uint32 // permission bits (07777)
	UID  uint32
	GID  uint32
	Time int64 // atime, mtime and ctime of version 1 (ns since the epoch, creator's clock)
}

// Version1 is the inode version 1 that b describes, of inode id.
func (b *Birth) Version1(id uint64) *Inode {
	return &Inode{ID: id, Version: 1, Kind: KindFile, Mode: b.Mode, UID: b.UID, GID: b.GID, Nlink: 1,
		Atime: b.Time, Mtime: b.Time, Ctime: b.Time, Inline: true}
}

// entryOpBornPut is the stored op of a committed put with a birth
// (FORMAT.md §5.4); in memory it is an EntryPut with Born set.
const entryOpBornPut = 6

// Inode is one immutable version of one inode.
type Inode struct {
	ID      uint64
	Version uint64 // 1 for the first version, then +1 per version
	Kind    InodeKind
	Writer  uint64 // host id of the writer, for diagnostics
	Mode    uint32 // permission bits (07777); for KindSpecial also the file type bits
	UID     uint32
	GID     uint32
	Nlink   uint32 // names referring to a file, symlink or special inode; 0 for dirs
	Size    uint64 // file size; target length for symlinks
	Rdev    uint32 // device number (KindSpecial)
	Atime   int64  // nanoseconds since the Unix epoch (client clock, POSIX attribute)
	Mtime   int64
	Ctime   int64
	Xattrs  []Xattr // sorted by name, unique

	// KindFile
	Inline  bool        // data is stored in Data, not in extents
	Data    []byte      // inline file contents (len == Size)
	Extents []ExtentRef // sorted by Index, unique

	// KindDir
	Base    uint64  // version holding the full entry list this one builds on; == Version for a full version
	Entries []Entry // full version: every entry, sorted by name; delta: changes since Version-1

	// KindSymlink
	Target string
}

// MaxOrigin is the highest origin of the version's extent references (0
// when every extent is the volume's own).
func (n *Inode) MaxOrigin() int {
	m := 0
	for _, x := range n.Extents {
		m = max(m, int(x.Origin))
	}
	return m
}

// CheckOrigins refuses a version read from a volume of clone depth depth
// (0: not a clone) with an extent reference reaching below its chain.
func (n *Inode) CheckOrigins(depth int) error {
	if o := n.MaxOrigin(); o > depth {
		return fmt.Errorf("%w: inode %016x v%d names an extent of origin %d in a volume of clone depth %d", ErrCorrupt, n.ID, n.Version, o, depth)
	}
	return nil
}

// File body flags (FORMAT.md §5.2).
const (
	flagInline  = 1 // the data is inline
	flagOrigins = 2 // every extent reference has an origin
	flagBlocks  = 4 // every extent reference has a block shift
)

// bodyFlags returns the body flags a file version is encoded with: the
// bits for origins and block checksums only when some reference needs
// them, so that a version without either is encoded as before they
// existed.
func (n *Inode) bodyFlags() byte {
	if n.Inline {
		return flagInline
	}
	var f byte
	for _, x := range n.Extents {
		if x.Origin != 0 {
			f |= flagOrigins
		}
		if x.BlockShift != 0 {
			f |= flagBlocks
		}
	}
	return f
}

// IsFull reports whether a directory version holds its full entry list.
func (n *Inode) IsFull() bool { return n.Base == n.Version }

// Validate checks every field against the rules in FORMAT.md.
func (n *Inode) Validate() error {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: inode %016x v%d: "+f, append([]any{ErrCorrupt, n.ID, n.Version}, a...)...)
	}
	if n.ID == 0 || n.Version == 0 || n.Version == ^uint64(0) {
		return bad("zero id or invalid version")
	}
	if len(n.Xattrs) > MaxXattrs {
		return bad("%d xattrs exceed %d", len(n.Xattrs), MaxXattrs)
	}
	for i, x := range n.Xattrs {
		if x.Name == "" || len(x.Name) > MaxXattrNameLen || strings.IndexByte(x.Name, 0) >= 0 || len(x.Value) > MaxXattrValueLen {
			return bad("invalid xattr %q", x.Name)
		}
		if i > 0 && n.Xattrs[i-1].Name >= x.Name {
			return bad("xattrs not sorted and unique")
		}
	}
	if n.Kind != KindSpecial && n.Mode&^0o7777 != 0 {
		return bad("mode %o has bits outside 07777", n.Mode)
	}
	if n.Size > MaxFileSize {
		return bad("size %d exceeds %d", n.Size, uint64(MaxFileSize))
	}
	switch n.Kind {
	case KindFile:
		if n.Inline {
			if uint64(len(n.Data)) != n.Size || len(n.Extents) != 0 || len(n.Data) > MaxInlineLimit {
				return bad("inline data of %d bytes for size %d", len(n.Data), n.Size)
			}
		} else if len(n.Data) != 0 {
			return bad("data without inline flag")
		}
		if len(n.Extents) > MaxExtents {
			return bad("%d extents exceed %d", len(n.Extents), MaxExtents)
		}
		for i, x := range n.Extents {
			if i > 0 && n.Extents[i-1].Index >= x.Index {
				return bad("extents not sorted and unique")
			}
			if x.Length == 0 || x.Index > MaxExtentIndex {
				return bad("extent %d has length 0 or an index above %d", x.Index, uint64(MaxExtentIndex))
			}
			if x.Origin > MaxCloneDepth {
				return bad("extent %d has origin %d above %d", x.Index, x.Origin, MaxCloneDepth)
			}
			if err := x.validateSums(); err != nil {
				return bad("%v", err)
			}
		}
	case KindDir:
		if n.Base == 0 || n.Base > n.Version || n.Version-n.Base > MaxDeltaChain {
			return bad("directory base %d out of range", n.Base)
		}
		if n.Nlink != 0 {
			return bad("directory with a stored link count")
		}
		if len(n.Entries) > MaxEntries {
			return bad("%d entries exceed %d", len(n.Entries), MaxEntries)
		}
		for i, e := range n.Entries {
			if e.Op == EntryPendingDelete {
				if e.Name != "" || e.Child != 0 || e.ChildKind != 0 || e.Born != nil || i != len(n.Entries)-1 {
					return bad("pending delete with a name or a child, or not last")
				}
			} else if err := ValidateName(e.Name); err != nil {
				return bad("%v", err)
			}
			switch e.Op {
			case EntryPut, EntryPendingPut:
				if e.Child == 0 || !validChildKind(e.ChildKind) {
					return bad("entry %q has invalid child", e.Name)
				}
				if b := e.Born; b != nil && (e.Op != EntryPut || e.ChildKind != KindFile || b.Mode&^0o7777 != 0) {
					return bad("entry %q: a birth on an entry other than a put of a file, or mode %o", e.Name, b.Mode)
				}
			case EntryRemove, EntryPendingRemove, EntryPendingDelete:
				if e.Op == EntryRemove && n.IsFull() {
					return bad("full directory version holds a removal")
				}
				if e.Child != 0 || e.ChildKind != 0 || e.Born != nil {
					return bad("removal of %q carries a child", e.Name)
				}
			default:
				return bad("entry %q has unknown op %d", e.Name, e.Op)
			}
			if e.Op.Pending() {
				if e.Tx == 0 || e.Host == 0 {
					return bad("pending entry %q without a transaction or host", e.Name)
				}
			} else if e.Tx != 0 || e.Host != 0 {
				return bad("entry %q carries a transaction", e.Name)
			}
			if n.IsFull() && i > 0 {
				p := n.Entries[i-1]
				if p.Name > e.Name || (p.Name == e.Name && (p.Op >= e.Op || p.Op != EntryPut)) {
					return bad("entries not sorted and unique")
				}
			}
		}
		if n.IsFull() {
			if err := NewDirState().Apply(n.Entries); err != nil {
				return bad("%v", err)
			}
		}
	case KindSymlink:
		if n.Target == "" || len(n.Target) > MaxSymlinkLen || uint64(len(n.Target)) != n.Size {
			return bad("invalid symlink target")
		}
	case KindSpecial:
		switch n.Mode & sIFMT {
		case sIFIFO, sIFSOCK, sIFCHR, sIFBLK:
		default:
			return bad("special inode with file type bits %o", n.Mode&sIFMT)
		}
		if n.Mode&^(sIFMT|0o7777) != 0 {
			return bad("mode %o has unknown bits", n.Mode)
		}
	case KindTombstone:
	default:
		return fmt.Errorf("%w: inode %016x v%d has unknown kind %d", ErrUnsupported, n.ID, n.Version, n.Kind)
	}
	if n.Kind != KindFile && (n.Inline || len(n.Data) > 0 || len(n.Extents) > 0) {
		return bad("%s with file data", n.Kind)
	}
	if n.Kind != KindDir && (n.Base != 0 || len(n.Entries) > 0) {
		return bad("%s with directory entries", n.Kind)
	}
	if n.Kind != KindSymlink && n.Target != "" {
		return bad("%s with a symlink target", n.Kind)
	}
	return nil
}

// File type bits of a special inode's mode (as in stat(2)).
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFBLK  = 0o060000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
)

// ValidateExtents checks that every extent of a file version lies inside
// the file, given the volume's extent size. Writers MUST call it before
// encoding (DecodeInode calls it for readers).
func (n *Inode) ValidateExtents(extentSize uint32) error {
	for _, x := range n.Extents {
		// x.Index*extentSize+x.Length <= Size, computed without overflow.
		if uint64(x.Length) > uint64(extentSize) || uint64(x.Length) > n.Size || x.Index > (n.Size-uint64(x.Length))/uint64(extentSize) {
			return fmt.Errorf("%w: inode %016x v%d: extent %d lies beyond the file size or is longer than an extent", ErrCorrupt, n.ID, n.Version, x.Index)
		}
	}
	return nil
}

func validChildKind(k InodeKind) bool {
	return k == KindFile || k == KindDir || k == KindSymlink || k == KindSpecial
}

// EncodeInode validates n and returns the sealed inode version object.
func EncodeInode(n *Inode) ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	if len(n.Extents) > 0 {
		size := 64 + 24*len(n.Extents) // the fields, and each reference but its checksums
		for _, x := range n.Extents {
			size += len(x.Sums)
		}
		e.b = make([]byte, 0, size)
	}
	e.u64(n.ID)
	e.uvarint(n.Version)
	e.u8(byte(n.Kind))
	e.u64(n.Writer)
	e.uvarint(uint64(n.Mode))
	e.uvarint(uint64(n.UID))
	e.uvarint(uint64(n.GID))
	e.uvarint(uint64(n.Nlink))
	e.uvarint(n.Size)
	e.uvarint(uint64(n.Rdev))
	e.varint(n.Atime)
	e.varint(n.Mtime)
	e.varint(n.Ctime)
	e.uvarint(uint64(len(n.Xattrs)))
	for _, x := range n.Xattrs {
		e.str(x.Name)
		e.bytes(x.Value)
	}
	switch n.Kind {
	case KindFile:
		if n.Inline {
			e.u8(1)
			e.bytes(n.Data)
		} else {
			flags := n.bodyFlags()
			e.u8(flags)
			e.uvarint(uint64(len(n.Extents)))
			for _, x := range n.Extents {
				e.uvarint(x.Index)
				e.u64(x.EID)
				e.uvarint(uint64(x.Length))
				if flags&flagBlocks != 0 {
					e.u8(x.BlockShift)
				}
				if x.BlockShift == 0 {
					e.u32(x.CRC)
				} else {
					e.b = append(e.b, x.Sums...)
				}
				if flags&flagOrigins != 0 {
					e.u8(x.Origin)
				}
			}
		}
	case KindDir:
		e.uvarint(n.Base)
		e.uvarint(uint64(len(n.Entries)))
		for _, x := range n.Entries {
			if x.Born != nil {
				e.u8(entryOpBornPut)
			} else {
				e.u8(byte(x.Op))
			}
			e.str(x.Name)
			if x.Op.HasChild() {
				e.u64(x.Child)
				e.u8(byte(x.ChildKind))
			}
			if b := x.Born; b != nil {
				e.uvarint(uint64(b.Mode))
				e.uvarint(uint64(b.UID))
				e.uvarint(uint64(b.GID))
				e.varint(b.Time)
			}
			if x.Op.Pending() {
				e.u64(x.Tx)
				e.u64(x.Host)
			}
		}
	case KindSymlink:
		e.str(n.Target)
	}
	return Seal(KindInode, e.b), nil
}

// DecodeInode opens and validates an inode version object. extentSize is
// the volume's extent size (from its header): it bounds extent lengths and
// places extents in the file.
func DecodeInode(obj []byte, extentSize uint32) (*Inode, error) {
	p, err := Open(KindInode, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: p}
	n := &Inode{}
	n.ID = d.u64("id")
	n.Version = d.uvarint("version")
	n.Kind = InodeKind(d.u8("kind"))
	if d.err == nil && (n.Kind < KindFile || n.Kind > KindSpecial) {
		return nil, fmt.Errorf("%w: inode %016x has unknown kind %d", ErrUnsupported, n.ID, n.Kind)
	}
	n.Writer = d.u64("writer")
	n.Mode = uint32(d.uvarintMax("mode", 0xffffffff))
	n.UID = uint32(d.uvarintMax("uid", 0xffffffff))
	n.GID = uint32(d.uvarintMax("gid", 0xffffffff))
	n.Nlink = uint32(d.uvarintMax("nlink", 0xffffffff))
	n.Size = d.uvarintMax("size", MaxFileSize)
	n.Rdev = uint32(d.uvarintMax("rdev", 0xffffffff))
	n.Atime = d.varint("atime")
	n.Mtime = d.varint("mtime")
	n.Ctime = d.varint("ctime")
	if nx := d.uvarintMax("xattr count", MaxXattrs); nx > 0 {
		n.Xattrs = make([]Xattr, 0, nx)
		for i := uint64(0); i < nx && d.err == nil; i++ {
			name := d.str("xattr name", MaxXattrNameLen)
			n.Xattrs = append(n.Xattrs, Xattr{Name: name, Value: d.bytes("xattr value", MaxXattrValueLen)})
		}
	}
	switch n.Kind {
	case KindFile:
		flags := d.u8("body flags")
		switch {
		case d.err != nil:
		case flags&^(flagInline|flagOrigins|flagBlocks) != 0:
			return nil, fmt.Errorf("%w: inode %016x has unknown file body flags %#02x", ErrUnsupported, n.ID, flags)
		case flags == flagInline:
			n.Inline = true
			n.Data = d.bytes("inline data", MaxInlineLimit)
		case flags&flagInline != 0:
			d.fail("bad file body flags %#02x", flags)
		default:
			cnt := d.uvarintMax("extent count", MaxExtents)
			if cnt > uint64(len(p)) { // each extent takes at least 14 bytes
				d.fail("extent count %d exceeds object size", cnt)
			}
			blocks := false
			var ps string // the payload as a string, shared by every reference's Sums
			for i := uint64(0); i < cnt && d.err == nil; i++ {
				x := ExtentRef{Index: d.uvarintMax("extent index", MaxExtentIndex), EID: d.u64("extent id")}
				x.Length = uint32(d.uvarintMax("extent length", uint64(extentSize)))
				if flags&flagBlocks != 0 {
					x.BlockShift = d.u8("extent block shift")
				}
				switch {
				case x.BlockShift == 0:
					x.CRC = d.u32("extent crc")
				case x.BlockShift < MinBlockShift || x.BlockShift > MaxBlockShift:
					d.fail("extent block shift %d outside %d..%d", x.BlockShift, MinBlockShift, MaxBlockShift)
				default:
					blocks = true
					if nb := 4 * blockCount(x.Length, x.BlockShift); d.need(nb, "extent block checksums") {
						if ps == "" {
							ps = string(p) // one copy for all references, not one each
						}
						x.Sums = ps[d.off : d.off+nb]
						d.off += nb
					}
				}
				if flags&flagOrigins != 0 {
					if x.Origin = d.u8("extent origin"); x.Origin > MaxCloneDepth {
						d.fail("extent origin %d exceeds %d", x.Origin, MaxCloneDepth)
					}
				}
				n.Extents = append(n.Extents, x)
			}
			if flags&flagOrigins != 0 && d.err == nil && n.MaxOrigin() == 0 {
				d.fail("extents with origins, all of them 0")
			}
			if flags&flagBlocks != 0 && d.err == nil && !blocks {
				d.fail("extents with block shifts, all of them 0")
			}
		}
	case KindDir:
		n.Base = d.uvarint("base")
		cnt := d.uvarintMax("entry count", MaxEntries)
		if cnt > uint64(len(p)) {
			d.fail("entry count %d exceeds object size", cnt)
		}
		for i := uint64(0); i < cnt && d.err == nil; i++ {
			op := d.u8("entry op")
			born := op == entryOpBornPut
			if born {
				op = byte(EntryPut)
			}
			x := Entry{Op: EntryOp(op), Name: d.str("entry name", MaxNameLen)}
			if x.Op.HasChild() {
				x.Child = d.u64("entry child")
				x.ChildKind = InodeKind(d.u8("entry child kind"))
			}
			if born {
				x.Born = &Birth{
					Mode: uint32(d.uvarintMax("birth mode", 0o7777)),
					UID:  uint32(d.uvarintMax("birth uid", 0xffffffff)),
					GID:  uint32(d.uvarintMax("birth gid", 0xffffffff)),
					Time: d.varint("birth time"),
				}
			}
			if x.Op.Pending() {
				x.Tx = d.u64("entry txid")
				x.Host = d.u64("entry host")
			}
			n.Entries = append(n.Entries, x)
		}
	case KindSymlink:
		n.Target = d.str("symlink target", MaxSymlinkLen)
	}
	if err := d.end("inode"); err != nil {
		return nil, err
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	if err := n.ValidateExtents(extentSize); err != nil {
		return nil, err
	}
	return n, nil
}

// SortEntries sorts a full entry list by name, then op.
func SortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Name != es[j].Name {
			return es[i].Name < es[j].Name
		}
		return es[i].Op < es[j].Op
	})
}

// SortXattrs sorts xattrs by name.
func SortXattrs(xs []Xattr) { sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name }) }
