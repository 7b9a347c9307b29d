package format

import (
	"fmt"
	"strconv"
	"strings"
)

// KindCaps tags a host's capabilities object (FORMAT.md §12.1).
const KindCaps Kind = 'K'

// Capability bits: what a host's build reads beyond the objects of format
// version 1 as first written. A writer uses an addition only while every
// live host has its bit (FORMAT.md §12.1).
const (
	CapBlockSums uint64 = 1 << 0 // file versions with block checksums (§5.3, body flag 4)
	CapBornPuts  uint64 = 1 << 1 // directory entries that are born puts (§5.4, op 6)

	// KnownCaps is every capability this build has.
	KnownCaps = CapBlockSums | CapBornPuts
)

// Caps is a host's capabilities object (key Keys.Caps), written once by
// the host before its first ping. Bits this build does not know are kept
// (a newer build's), never refused: capabilities only ever allow.
type Caps struct {
	HostID uint64
	Bits   uint64
}

// CapsPrefix is the common prefix of the hosts' capabilities objects.
func (k Keys) CapsPrefix() string { return k.prefix + "caps/" }

// Caps is the key of host hostID's capabilities object.
func (k Keys) Caps(hostID uint64) string { return fmt.Sprintf("%scaps/%016x", k.prefix, hostID) }

// ParseCaps parses a key made by Caps.
func (k Keys) ParseCaps(key string) (uint64, error) {
	rest, ok := strings.CutPrefix(key, k.prefix+"caps/")
	if ok && len(rest) == 16 {
		if id, err := strconv.ParseUint(rest, 16, 64); err == nil && id != 0 && k.Caps(id) == key {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not a capabilities key", ErrCorrupt, key)
}

// EncodeCaps returns the sealed capabilities object of c.
func EncodeCaps(c *Caps) ([]byte, error) {
	if c.HostID == 0 {
		return nil, fmt.Errorf("%w: capabilities of host 0", ErrCorrupt)
	}
	var e encoder
	e.u64(c.HostID)
	e.uvarint(c.Bits)
	return Seal(KindCaps, e.b), nil
}

// DecodeCaps opens and validates a capabilities object.
func DecodeCaps(obj []byte) (*Caps, error) {
	b, err := Open(KindCaps, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	c := &Caps{HostID: d.u64("host id"), Bits: d.uvarint("bits")}
	if err := d.end("capabilities"); err != nil {
		return nil, err
	}
	if c.HostID == 0 {
		return nil, fmt.Errorf("%w: capabilities of host 0", ErrCorrupt)
	}
	return c, nil
}
