package vfs_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// extentGets counts GETs of extent objects (whole or ranged).
type extentGets struct {
	objstore.Store
	gets atomic.Int64
}

func (s *extentGets) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	if strings.Contains(key, "/d/") {
		s.gets.Add(1)
	}
	return s.Store.Get(ctx, key)
}

func (s *extentGets) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if strings.Contains(key, "/d/") {
		s.gets.Add(1)
	}
	return s.Store.GetRange(ctx, key, off, n)
}

// Several sequential readers share the read cache: readahead stays within
// it, so no extent is evicted before its reader gets to it and fetched
// twice. (With the full readahead depth each, 4 readers would keep 20
// extents in a cache of 16.)
func TestReadaheadWithinCache(t *testing.T) {
	var st *extentGets
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		st = &extentGets{Store: m}
		return st
	})
	const files, perFile = 4, 12
	w := e.engine()
	r := rand.New(rand.NewPCG(7, 7))
	want := make([][]byte, files)
	ids := make([]uint64, files)
	for i := range files {
		want[i] = randBytes(r, perFile*extSize)
		ids[i] = writeFile(t, w, root, fmt.Sprintf("f%d", i), want[i])
	}
	fs := e.engine(func(o *vfs.Options) { o.CacheSize = 16 * extSize; o.Readahead = 4 })
	st.gets.Store(0)
	hs := make([]*vfs.Handle, files)
	for i := range files {
		hs[i] = open(t, fs, ids[i], false)
	}
	// Round robin, a quarter extent at a time.
	buf := make([]byte, extSize/4)
	for off := int64(0); off < perFile*extSize; off += int64(len(buf)) {
		for i, h := range hs {
			readAt(t, fs, h, buf, off)
			sameBytes(t, buf, want[i][off:off+int64(len(buf))], fmt.Sprintf("file %d at %d", i, off))
		}
	}
	for _, h := range hs {
		closeH(t, fs, h)
	}
	// Readers count once they read, so the first reader fetches ahead as
	// the only one, and may lose one extent to the others: one spare GET
	// per reader. (The full depth each fetched 62-68 here.)
	if got := st.gets.Load(); got > files*perFile+files {
		t.Errorf("%d extent GETs for %d extents: readahead evicted extents before they were read", got, files*perFile)
	}
}
