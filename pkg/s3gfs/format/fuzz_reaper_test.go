package format_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// FuzzDecodeReaperObjects feeds arbitrary bytes to the decoders of the
// snapshot pin, lease, reaper record, settings and usage record: they must never panic,
// and whatever decodes must encode, and decode again to the same value.
// (Bytes may differ: readers accept over-long varints, §3.2.)
func FuzzDecodeReaperObjects(f *testing.F) {
	at := time.Unix(1800000000, 5).UTC()
	for _, seed := range [][]byte{
		must(format.EncodeSnapshotPin(&format.SnapshotPin{Name: "s", Created: at, Creator: "c", Label: "l"})),
		must(format.EncodeLease(&format.Lease{Owner: "o", Duration: time.Minute, Acquired: at, Seq: 2})),
		must(format.EncodeReaperRecord(&format.ReaperRecord{Horizon: at, Pass: at, Owner: "o", Retention: time.Hour, Grace: time.Second})),
		must(format.EncodeSettings(&format.Settings{Version: 1, Retention: time.Hour, Changed: at, Writer: "w"})),
		must(format.EncodeUsage(&format.Usage{At: at, Bytes: 1 << 40, Objects: 3, Inodes: 2})),
		{}, []byte("S3GF"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		if p, err := format.DecodeSnapshotPin(obj); err == nil {
			if again, err := format.EncodeSnapshotPin(p); err != nil || !sameDecoded(again, p, format.DecodeSnapshotPin) {
				t.Fatalf("pin does not round-trip: %v", err)
			}
		}
		if l, err := format.DecodeLease(obj); err == nil {
			if again, err := format.EncodeLease(l); err != nil || !sameDecoded(again, l, format.DecodeLease) {
				t.Fatalf("lease does not round-trip: %v", err)
			}
		}
		if r, err := format.DecodeReaperRecord(obj); err == nil {
			if again, err := format.EncodeReaperRecord(r); err != nil || !sameDecoded(again, r, format.DecodeReaperRecord) {
				t.Fatalf("record does not round-trip: %v", err)
			}
		}
		if s, err := format.DecodeSettings(obj); err == nil {
			if again, err := format.EncodeSettings(s); err != nil || !sameDecoded(again, s, format.DecodeSettings) {
				t.Fatalf("settings do not round-trip: %v", err)
			}
		}
		if u, err := format.DecodeUsage(obj); err == nil {
			if again, err := format.EncodeUsage(u); err != nil || !sameDecoded(again, u, format.DecodeUsage) {
				t.Fatalf("usage does not round-trip: %v", err)
			}
		}
	})
}

func sameDecoded[T any](obj []byte, want *T, decode func([]byte) (*T, error)) bool {
	got, err := decode(obj)
	return err == nil && reflect.DeepEqual(got, want)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
