package vfs_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// patternByte is byte i of what op k writes: never 0, so a byte no write
// put there (a hole, a lost range) cannot pass for written.
func patternByte(k, i int) byte { return byte(1 + (k*31+i*7)%255) }

// Three hosts (two with stale views of the directory, so that their
// deferred creates lose names to the others') race whole-file writes
// (open O_CREAT|O_TRUNC: deferred creates), O_EXCL creates, unlinks and
// renames on four names, then write every name whole one host after
// another. No operation fails with anything but "exists" or "does not
// exist", every name holds exactly what the last host wrote, every byte
// of every file was written there by some operation, fresh hosts agree
// on every name and its content, and the volume checks healthy (orphans
// of lost creates allowed).
func TestRandomDeferredCreatesThreeHosts(t *testing.T) {
	e := newEnv(t)
	hosts := []*vfs.FS{
		e.engine(),
		e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour }),
		e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour }),
	}
	names := []string{"f0", "f1", "f2", "f3"}
	const opsPerHost = 150
	var mu sync.Mutex
	lens := map[int]int{} // op -> bytes it wrote
	var wg sync.WaitGroup
	for hi, fs := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(hi), 77))
			for n := range opsPerHost {
				k := hi*opsPerHost + n + 1
				name := names[r.IntN(len(names))]
				var err error
				switch x := r.IntN(10); {
				case x < 6:
					flags := syscall.O_CREAT | syscall.O_TRUNC | syscall.O_WRONLY
					if x == 5 {
						flags = syscall.O_CREAT | syscall.O_EXCL | syscall.O_WRONLY
					}
					size := r.IntN(300)
					mu.Lock()
					lens[k] = size
					mu.Unlock()
					err = writeWhole(fs, name, flags, k, size, r.IntN(3) == 0)
				case x < 8:
					err = fs.Unlink(ctx, root, name)
				default:
					err = fs.Rename(ctx, root, name, root, names[r.IntN(len(names))], 0)
				}
				if err != nil && !errors.Is(err, vfs.ErrNotExist) && !errors.Is(err, vfs.ErrExist) {
					t.Errorf("host %d op %d on %s: %v", hi, k, name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Then each host in turn writes every name whole, one after another:
	// the stale hosts' creates of names they do not see lose to the
	// existing files, and each name must end up holding exactly what the
	// last host wrote (an O_TRUNC open of the file, then all of its bytes).
	last := map[string][]byte{}
	for hi, fs := range hosts {
		for ni, name := range names {
			k := len(hosts)*opsPerHost + hi*len(names) + ni + 1
			size := 50 + 40*ni
			lens[k] = size
			must(t, writeWhole(fs, name, syscall.O_CREAT|syscall.O_TRUNC|syscall.O_WRONLY, k, size, false))
			want := make([]byte, size)
			for i := range want {
				want[i] = patternByte(k, i)
			}
			last[name] = want
		}
	}
	for _, fs := range hosts {
		must(t, fs.Close(ctx))
	}
	// Every byte must be one some operation wrote at that offset.
	plausible := func(data []byte) error {
		for i, b := range data {
			ok := false
			for k, n := range lens {
				if n > i && patternByte(k, i) == b {
					ok = true
					break
				}
			}
			if !ok {
				return fmt.Errorf("byte %d of %d is %#x, which no write put there", i, len(data), b)
			}
		}
		return nil
	}
	a, b := e.engine(), e.engine()
	seen := 0
	for _, name := range names {
		x, errA := a.Lookup(ctx, root, name)
		y, errB := b.Lookup(ctx, root, name)
		if (errA == nil) != (errB == nil) || (errA == nil && x.Ino != y.Ino) {
			t.Fatalf("%s: host a finds %+v (%v), host b %+v (%v)", name, x, errA, y, errB)
		}
		if errA != nil {
			continue
		}
		seen++
		da, db := readFile(t, a, x.Ino), readFile(t, b, y.Ino)
		sameBytes(t, db, da, name+" on two fresh hosts")
		sameBytes(t, da, last[name], name+" after the last host wrote it whole")
		if err := plausible(da); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	rep, err := reaper.Check(ctx, e.vol, reaper.CheckOptions{})
	must(t, err)
	if !rep.Healthy() {
		t.Fatalf("volume damaged: %v", rep.Damage)
	}
	t.Logf("%d of %d names exist at the end; %d deferred creates; %d orphans", seen, len(names),
		hosts[0].DeferredCreates()+hosts[1].DeferredCreates()+hosts[2].DeferredCreates(), len(rep.Orphans))
}

// writeWhole opens name in the root with flags (O_CREAT and more), writes
// size bytes of op k's pattern in a few writes, fsyncs if asked, and
// closes.
func writeWhole(fs *vfs.FS, name string, flags, k, size int, fsync bool) error {
	_, h, err := fs.CreateOpen(ctx, root, name, 0o644, flags, caller)
	if err != nil {
		return err
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = patternByte(k, i)
	}
	for off := 0; off < size && err == nil; off += 100 {
		_, err = fs.Write(ctx, h, data[off:min(off+100, size)], int64(off))
	}
	if err == nil && fsync {
		err = fs.Fsync(ctx, h)
	}
	return errors.Join(err, fs.Flush(ctx, h), fs.Release(ctx, h))
}
