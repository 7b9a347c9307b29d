package torture

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestScratchStaleAlias(t *testing.T) {
	c := newCluster(t, 1)
	h0, h1 := c.mount(0), c.mount(1)
	os.Mkdir(h0.path("c"), 0o755)
	big := bytes.Repeat([]byte("0123456789abcdef"), 360)
	for i := 0; i < 5; i++ {
		if err := os.WriteFile(h0.path("c/2"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(h0.path("c/2")); !bytes.Equal(got, big) {
			t.Fatal("first read")
		}
		eventually(t, 5*time.Second, "h1 sees", func() error { _, err := os.Stat(h1.path("c/2")); return err })
		time.Sleep(1200 * time.Millisecond)
		var st syscall.Stat_t
		syscall.Stat(h0.path("c/2"), &st) // refresh h0's dentry
		if err := os.Rename(h1.path("c/2"), h1.path("c/3")); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(h1.path("c/3"), os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(0)
		f.Write([]byte("h1h1h1h1h1h1h1h1"))
		f.Close()
		small := []byte("h0h0h0h0h0h0h0h0h0h0h0h0h0h0h0h0")
		f, err = os.OpenFile(h0.path("c/3"), os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		var fst syscall.Stat_t
		syscall.Fstat(int(f.Fd()), &fst)
		f.Truncate(0)
		f.Write(small)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(h0.path("c/2"))
		var st2 syscall.Stat_t
		syscall.Stat(h0.path("c/2"), &st2)
		t.Logf("attempt %d: ino c/2 before %x, c/3 written %x, c/2 now %x: read via c/2 %d bytes (%q...), err %v", i, st.Ino, fst.Ino, st2.Ino, len(got), got[:min(len(got), 16)], err)
		got3, _ := os.ReadFile(h0.path("c/3"))
		t.Logf("   read via c/3: %d bytes %q", len(got3), got3[:min(len(got3), 16)])
		os.Remove(h0.path("c/3"))
		os.Remove(h0.path("c/2"))
		time.Sleep(1500 * time.Millisecond)
	}
}
