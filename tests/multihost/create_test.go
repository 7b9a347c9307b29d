package multihost

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Files written whole (open with O_TRUNC, as os.WriteFile does) are
// created without waiting for the directory commit (a deferred create):
// through the kernel the flags reach the engine, each close still returns
// only once name and content are stored, and another host reads them.
// An O_EXCL create is never deferred.
func TestWholeFileWritesDeferCreates(t *testing.T) {
	requireFUSE(t)
	v := newVolume(t, volume.FormatOptions{})
	a, b := v.mount(t), v.mount(t)
	const n = 20
	for i := range n {
		name := fmt.Sprintf("f%02d", i)
		if err := os.WriteFile(a.path(name), []byte("content of "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(a.path("excl"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for i := range n {
		name := fmt.Sprintf("f%02d", i)
		eventually(t, visible, name+" on b", func() error {
			got, err := os.ReadFile(b.path(name))
			if err != nil {
				return err
			}
			if string(got) != "content of "+name {
				return fmt.Errorf("read %q", got)
			}
			return nil
		})
	}
	a.stop()
	if want := fmt.Sprintf("deferred_creates=%d", n); !strings.Contains(a.logs(), want) {
		t.Fatalf("mount log does not say %s:\n%s", want, a.logs())
	}
}

// Two hosts write the same new name whole at once, round after round:
// one create takes the name and the other's becomes an open of that file
// (O_TRUNC), so every round leaves one file of that name holding one of
// the two contents, whole, and both hosts read the same.
func TestRacingWholeFileWritesOneFile(t *testing.T) {
	requireFUSE(t)
	v := newVolume(t, volume.FormatOptions{})
	a, b := v.mount(t), v.mount(t)
	const rounds = 15
	for r := range rounds {
		name := fmt.Sprintf("r%02d", r)
		contents := [2][]byte{bytes.Repeat([]byte{'a'}, 100+r), bytes.Repeat([]byte{'b'}, 200+r)}
		var wg sync.WaitGroup
		var errs [2]error
		for i, h := range []*host{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = os.WriteFile(h.path(name), contents[i], 0o644)
			}()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v", r, errs)
		}
	}
	for r := range rounds {
		name := fmt.Sprintf("r%02d", r)
		var seen [2][]byte
		for i, h := range []*host{a, b} {
			eventually(t, visible, name+" settled on "+h.dir, func() error {
				got, err := os.ReadFile(h.path(name))
				if err != nil {
					return err
				}
				if !bytes.Equal(got, bytes.Repeat([]byte{'a'}, 100+r)) && !bytes.Equal(got, bytes.Repeat([]byte{'b'}, 200+r)) {
					return fmt.Errorf("read %d bytes, neither write whole", len(got))
				}
				seen[i] = got
				if i == 1 && !bytes.Equal(seen[0], got) {
					return fmt.Errorf("b reads %d bytes, a read %d", len(got), len(seen[0]))
				}
				return nil
			})
		}
	}
	es, err := os.ReadDir(a.path("."))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != rounds {
		t.Fatalf("%d entries, want %d", len(es), rounds)
	}
}
