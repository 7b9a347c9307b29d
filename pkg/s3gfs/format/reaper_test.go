package format_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

func TestReaperObjectsRoundTrip(t *testing.T) {
	at := time.Unix(1800000000, 123).UTC()
	pin := &format.SnapshotPin{Name: "snap-1", Created: at, Creator: "node-a", Label: "csi"}
	obj, err := format.EncodeSnapshotPin(pin)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := format.DecodeSnapshotPin(obj); err != nil || !reflect.DeepEqual(got, pin) {
		t.Fatalf("pin: %+v %v", got, err)
	}
	lease := &format.Lease{Owner: "reaper-1", Duration: 30 * time.Second, Acquired: at, Seq: 4}
	obj, _ = format.EncodeLease(lease)
	if got, err := format.DecodeLease(obj); err != nil || !reflect.DeepEqual(got, lease) {
		t.Fatalf("lease: %+v %v", got, err)
	}
	rec := &format.ReaperRecord{Horizon: at, Pass: at.Add(time.Hour), Owner: "r", Retention: time.Hour, Grace: 90 * time.Second}
	obj, _ = format.EncodeReaperRecord(rec)
	if got, err := format.DecodeReaperRecord(obj); err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("record: %+v %v", got, err)
	}
	set := &format.Settings{Version: 3, Retention: 48 * time.Hour, Changed: at, Writer: "admin"}
	obj, _ = format.EncodeSettings(set)
	if got, err := format.DecodeSettings(obj); err != nil || !reflect.DeepEqual(got, set) {
		t.Fatalf("settings: %+v %v", got, err)
	}
	use := &format.Usage{At: at, Bytes: 5 << 30, Objects: 1200, Inodes: 1000}
	uobj, _ := format.EncodeUsage(use)
	if got, err := format.DecodeUsage(uobj); err != nil || !reflect.DeepEqual(got, use) {
		t.Fatalf("usage: %+v %v", got, err)
	}
	if _, err := format.DecodeUsage(obj); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("settings decoded as usage: %v", err)
	}
	if _, err := format.EncodeUsage(&format.Usage{Bytes: 1}); err == nil {
		t.Fatal("usage without a time accepted")
	}
	// Every byte flipped is refused; a wrong kind is refused.
	for i := range obj {
		bad := append([]byte(nil), obj...)
		bad[i] ^= 0x40
		if _, err := format.DecodeSettings(bad); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	if _, err := format.DecodeLease(obj); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("settings decoded as lease: %v", err)
	}
	if _, err := format.EncodeLease(&format.Lease{Owner: "x", Duration: 2 * time.Hour}); err == nil {
		t.Fatal("lease of 2h accepted")
	}
	if _, err := format.EncodeSnapshotPin(&format.SnapshotPin{Name: "a/b"}); err == nil {
		t.Fatal("pin named a/b accepted")
	}
}

func TestReaperKeys(t *testing.T) {
	k, _ := format.NewKeys("vol")
	if got := k.Settings(1); got != "vol/settings/fffffffffffffffe" {
		t.Fatal(got)
	}
	if v, err := k.ParseSettings("vol/settings/fffffffffffffffd"); err != nil || v != 2 {
		t.Fatal(v, err)
	}
	for _, bad := range []string{"vol/settings/ffffffffffffffff", "vol/settings/FFFFFFFFFFFFFFFD", "vol/settings/x", "settings/fffffffffffffffd"} {
		if _, err := k.ParseSettings(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if n, err := k.ParseSnapshot("vol/s/snap"); err != nil || n != "snap" {
		t.Fatal(n, err)
	}
	if _, err := k.ParseSnapshot("vol/s/a/b"); err == nil {
		t.Fatal("nested snapshot key parsed")
	}
	if id, err := k.ParsePing(k.Ping(0xabc)); err != nil || id != 0xabc {
		t.Fatal(id, err)
	}
	if k.Reaper() != "vol/reaper" || k.Lease() != "vol/lease" || k.Usage() != "vol/usage" {
		t.Fatal(k.Reaper(), k.Lease(), k.Usage())
	}
}
