package vfs

import (
	"context"
	"testing"
	"time"
)

// getWithin runs p.get and fails the test if it does not return in time.
func getWithin(t *testing.T, p *bufferPool, evict func() bool) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		b, err := p.get(context.Background(), evict)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	select {
	case b := <-got:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("bufferPool.get missed a wake-up and hung")
		return nil
	}
}

// Every event that lets a waiting get make progress may happen between
// its call to evict and its wait; none may be missed.
func TestBufferPoolNoLostWakeup(t *testing.T) {
	const size = 4096
	events := map[string]func(p *bufferPool, held [][]byte) func() bool{
		// evict starts an upload that finishes (returns its buffer) at once.
		"upload finished": func(p *bufferPool, held [][]byte) func() bool {
			return func() bool { p.put(held[0], len(held[0])); return true }
		},
		// evict's upload fails at once (frees nothing); the next evict
		// succeeds.
		"upload failed": func(p *bufferPool, held [][]byte) func() bool {
			calls := 0
			return func() bool {
				calls++
				if calls == 1 {
					p.wake()
				} else {
					p.put(held[0], len(held[0]))
				}
				return true
			}
		},
		// nothing was evictable, but a buffer became so meanwhile.
		"buffer became evictable": func(p *bufferPool, held [][]byte) func() bool {
			calls := 0
			return func() bool {
				calls++
				if calls == 1 {
					p.noteDirty(newInode(7))
					return false
				}
				p.put(held[0], len(held[0]))
				return true
			}
		},
	}
	for name, mk := range events {
		t.Run(name, func(t *testing.T) {
			p := newBufferPool(2*size, size)
			held := [][]byte{getWithin(t, p, nil), getWithin(t, p, nil)}
			b := getWithin(t, p, mk(p, held))
			if len(contentOf(b)) != size || p.used != 2*size || p.peak != 2*size {
				t.Fatalf("got %d bytes; used %d peak %d", len(b), p.used, p.peak)
			}
		})
	}
}

// A recycled buffer comes back all zeros although only the bytes it was
// used for are cleared.
func TestBufferPoolRecycledZeroed(t *testing.T) {
	p := newBufferPool(1<<20, 64<<10)
	b, err := p.get(context.Background(), func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if len(contentOf(b)) != 64<<10 {
		t.Fatalf("content of %d bytes, want %d", len(contentOf(b)), 64<<10)
	}
	for i := range 100 {
		contentOf(b)[i] = 0xff
	}
	p.put(b, 100)
	b2, err := p.get(context.Background(), func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if &b2[0] != &b[0] {
		t.Fatal("the buffer was not recycled")
	}
	for i, c := range contentOf(b2) {
		if c != 0 {
			t.Fatalf("byte %d of a recycled buffer is %#x", i, c)
		}
	}
}

// BenchmarkSmallWriteBuffer: a small write's buffer, recycled.
func BenchmarkSmallWriteBuffer(b *testing.B) {
	p := newBufferPool(128<<20, 4<<20)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ := p.get(context.Background(), func() bool { return false })
		copy(contentOf(buf), "some small file's content")
		p.put(buf, 4096)
	}
}
