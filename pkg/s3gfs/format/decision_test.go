package format_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Rename transactions (FORMAT.md §5.5): pending entries and decisions.

func dirVersion(v, base uint64, es ...format.Entry) *format.Inode {
	return &format.Inode{ID: 0x77, Version: v, Kind: format.KindDir, Writer: 1, Mode: 0o755, Base: base, Entries: es}
}

func pput(name string, child, tx uint64) format.Entry {
	return format.Entry{Op: format.EntryPendingPut, Name: name, Child: child, ChildKind: format.KindFile, Tx: tx, Host: 9}
}

func prem(name string, tx uint64) format.Entry {
	return format.Entry{Op: format.EntryPendingRemove, Name: name, Tx: tx, Host: 9}
}

func put(name string, child uint64) format.Entry {
	return format.Entry{Op: format.EntryPut, Name: name, Child: child, ChildKind: format.KindFile}
}

func TestPendingEntriesRoundTrip(t *testing.T) {
	for _, n := range []*format.Inode{
		dirVersion(2, 1, pput("b", 5, 3), prem("a", 3)),
		dirVersion(3, 3, put("a", 5), prem("a", 4), put("b", 6), pput("b", 7, 8), pput("c", 7, 8)),
		dirVersion(4, 4, format.Entry{Op: format.EntryPendingDelete, Tx: 3, Host: 9}),
		dirVersion(5, 4, format.Entry{Op: format.EntryRemove, Name: "x"}, format.Entry{Op: format.EntryPendingDelete, Tx: 3, Host: 9}),
	} {
		obj, err := format.EncodeInode(n)
		if err != nil {
			t.Fatalf("encode %+v: %v", n.Entries, err)
		}
		got, err := format.DecodeInode(obj, format.DefaultExtentSize)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(got.Entries, n.Entries) {
			t.Fatalf("entries %+v, want %+v", got.Entries, n.Entries)
		}
	}
}

func TestPendingEntriesRefused(t *testing.T) {
	for name, n := range map[string]*format.Inode{
		"pending without txid":            dirVersion(2, 1, format.Entry{Op: format.EntryPendingPut, Name: "a", Child: 5, ChildKind: format.KindFile, Host: 9}),
		"pending without host":            dirVersion(2, 1, format.Entry{Op: format.EntryPendingRemove, Name: "a", Tx: 3}),
		"put carrying a txid":             dirVersion(2, 1, format.Entry{Op: format.EntryPut, Name: "a", Child: 5, ChildKind: format.KindFile, Tx: 3}),
		"two pending entries, full":       dirVersion(3, 3, put("a", 5), prem("a", 4), pput("a", 6, 4)),
		"pending remove without put":      dirVersion(3, 3, prem("a", 4)),
		"pending delete with a name":      dirVersion(2, 1, format.Entry{Op: format.EntryPendingDelete, Name: "a", Tx: 3, Host: 9}),
		"pending delete not last":         dirVersion(2, 1, format.Entry{Op: format.EntryPendingDelete, Tx: 3, Host: 9}, put("a", 5)),
		"pending delete of non-empty dir": dirVersion(3, 3, put("a", 5), format.Entry{Op: format.EntryPendingDelete, Tx: 3, Host: 9}),
		"unknown op 6":                    dirVersion(2, 1, format.Entry{Op: 6, Name: "a"}),
	} {
		if _, err := format.EncodeInode(n); !errors.Is(err, format.ErrCorrupt) && !errors.Is(err, format.ErrUnsupported) {
			t.Errorf("%s: encoded (%v)", name, err)
		}
	}
	// A delta chain giving a name a second pending entry is refused when
	// applied (each version alone is valid).
	st := format.NewDirState()
	if err := st.Apply([]format.Entry{put("a", 5)}); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply([]format.Entry{prem("a", 3)}); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply([]format.Entry{pput("a", 6, 4)}); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("second pending entry: %v", err)
	}
	// A put or remove ends the pending entry of its name.
	st = format.NewDirState()
	st.Apply([]format.Entry{put("a", 5), prem("a", 3), pput("b", 6, 3)})
	st.Apply([]format.Entry{{Op: format.EntryRemove, Name: "a"}, put("b", 6)})
	if len(st.Pending) != 0 || len(st.Committed) != 1 || st.Committed["b"].Child != 6 {
		t.Fatalf("state after folding: %+v", st)
	}
}

func TestDecisionRoundTripAndRefusals(t *testing.T) {
	d := &format.Decision{Outcome: format.Commit, Host: 1, Writer: 1, Dirs: []uint64{2, 3, 4}}
	obj, err := format.EncodeDecision(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := format.DecodeDecision(obj)
	if err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	for name, bad := range map[string]*format.Decision{
		"outcome 0": {Host: 1, Writer: 1},
		"outcome 3": {Outcome: 3, Host: 1, Writer: 1},
		"no host":   {Outcome: format.Abort, Writer: 1},
		"no writer": {Outcome: format.Abort, Host: 1},
		"dir 0":     {Outcome: format.Abort, Host: 1, Writer: 1, Dirs: []uint64{0}},
		"four dirs": {Outcome: format.Commit, Host: 1, Writer: 1, Dirs: []uint64{1, 2, 3, 4}},
	} {
		if _, err := format.EncodeDecision(bad); !errors.Is(err, format.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for i := range obj {
		b := append([]byte(nil), obj...)
		b[i] ^= 0x40
		if _, err := format.DecodeDecision(b); err == nil {
			t.Fatalf("flipped byte %d decoded", i)
		}
	}
	if _, err := format.DecodeDecision(obj[:len(obj)-1]); err == nil {
		t.Fatal("truncated decision decoded")
	}
	k, _ := format.NewKeys("vol")
	if key := k.Decision(0x9d04c1e7a2b35f68); key != "vol/t/9d04c1e7a2b35f68" {
		t.Fatalf("key %q", key)
	}
	for _, bad := range []string{"vol/t/0000000000000000", "vol/t/9D04C1E7A2B35F68", "vol/t/9d04c1e7a2b35f6", "vol/t/x"} {
		if _, err := k.ParseDecision(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
