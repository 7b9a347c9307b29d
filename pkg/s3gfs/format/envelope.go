package format

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Errors returned by decoders. Callers test with errors.Is.
var (
	// ErrCorrupt: the object is truncated, its checksum does not match, or
	// a field is out of range.
	ErrCorrupt = errors.New("corrupt object")
	// ErrUnsupported: the object uses a format version or flag this build
	// does not know. Such objects are refused, never guessed at.
	ErrUnsupported = errors.New("unsupported object format")
)

// Kind tags what an object is; it is the fifth byte of every object.
type Kind byte

// Object kinds.
const (
	KindVolume   Kind = 'V' // the volume header
	KindInode    Kind = 'I' // one version of one inode
	KindExtent   Kind = 'E' // one data extent
	KindPing     Kind = 'H' // a host's ping
	KindSnapshot Kind = 'S' // a snapshot pin
	KindLease    Kind = 'L' // the reaper's lease
)

func (k Kind) String() string {
	switch k {
	case KindVolume:
		return "volume"
	case KindInode:
		return "inode"
	case KindExtent:
		return "extent"
	case KindPing:
		return "ping"
	case KindSnapshot:
		return "snapshot"
	case KindLease:
		return "lease"
	case KindReaper:
		return "reaper record"
	case KindSettings:
		return "settings"
	case KindUsage:
		return "usage record"
	case KindDecision:
		return "decision"
	case KindCaps:
		return "capabilities"
	}
	return fmt.Sprintf("kind(%#x)", byte(k))
}

// Envelope layout: magic(4) kind(1) version(1) flags(2, LE) payload crc32c(4, LE).
const (
	// Magic opens every s3gfs object.
	Magic = "S3GF"
	// Version is the only object format version this build reads and writes.
	Version = 1
	// EnvelopeOverhead is the number of bytes the envelope adds to a payload.
	EnvelopeOverhead = headerLen + crcLen
	// EnvelopeHeader is the number of envelope bytes before the payload.
	EnvelopeHeader = headerLen

	headerLen = 8
	crcLen    = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C (Castagnoli) used throughout the format.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Seal wraps payload in an envelope of the given kind.
func Seal(kind Kind, payload []byte) []byte {
	out := make([]byte, 0, len(payload)+EnvelopeOverhead)
	out = append(out, Magic...)
	out = append(out, byte(kind), Version, 0, 0)
	out = append(out, payload...)
	return binary.LittleEndian.AppendUint32(out, Checksum(out))
}

// SealInPlace wraps the payload buf[EnvelopeHeader:EnvelopeHeader+n] in
// an envelope of the given kind without copying it: it writes the header
// into buf[:EnvelopeHeader] and the checksum into the 4 bytes after the
// payload, and returns the object, buf[:n+EnvelopeOverhead]. It is Seal
// for a writer that keeps its data where the envelope can grow around it.
func SealInPlace(kind Kind, buf []byte, n int) []byte {
	obj := buf[:headerLen+n+crcLen]
	copy(obj, Magic)
	obj[4], obj[5], obj[6], obj[7] = byte(kind), Version, 0, 0
	binary.LittleEndian.PutUint32(obj[headerLen+n:], Checksum(obj[:headerLen+n]))
	return obj
}

// Open checks an envelope and returns its payload (aliasing obj).
func Open(kind Kind, obj []byte) ([]byte, error) {
	if len(obj) < EnvelopeOverhead {
		return nil, fmt.Errorf("%w: %s object of %d bytes is shorter than its envelope", ErrCorrupt, kind, len(obj))
	}
	if string(obj[:4]) != Magic {
		return nil, fmt.Errorf("%w: bad magic %q, not an s3gfs object", ErrCorrupt, obj[:4])
	}
	body, sum := obj[:len(obj)-crcLen], binary.LittleEndian.Uint32(obj[len(obj)-crcLen:])
	if got := Checksum(body); got != sum {
		return nil, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, sum, got)
	}
	if err := checkHeader(kind, obj); err != nil {
		return nil, err
	}
	return body[headerLen:], nil
}

// checkHeader checks the kind, version and flags of an envelope's header,
// obj[:8] (steps 4-6 of FORMAT.md §3.1), and its magic.
func checkHeader(kind Kind, obj []byte) error {
	if string(obj[:4]) != Magic {
		return fmt.Errorf("%w: bad magic %q, not an s3gfs object", ErrCorrupt, obj[:4])
	}
	if Kind(obj[4]) != kind {
		return fmt.Errorf("%w: expected a %s object, found a %s object", ErrCorrupt, kind, Kind(obj[4]))
	}
	if obj[5] != Version {
		return fmt.Errorf("%w: %s object has format version %d, this build reads version %d", ErrUnsupported, kind, obj[5], Version)
	}
	if flags := binary.LittleEndian.Uint16(obj[6:8]); flags != 0 {
		return fmt.Errorf("%w: %s object has unknown flags %#04x", ErrUnsupported, kind, flags)
	}
	return nil
}
