package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func randomBytes(n int64) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// parallel runs fn(i) for i in [0, n) on c workers and returns the wall time.
func parallel(c, n int, fn func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), first
}

// runRaw measures the backend ceiling with the SDK s3gfs itself uses.
// The run does this twice, first and last; each figure keeps the better
// pass (see results.setRaw), so a burst of load from elsewhere during one
// pass does not lower the ceiling the filesystems are compared with.
func runRaw(ctx context.Context, cfg *config, proxy *countingProxy, res *results, pass int) error {
	bucket := fmt.Sprintf("bench-raw%d-%s", pass, cfg.runID)
	if err := cfg.makeBucket(ctx, bucket); err != nil {
		return err
	}
	st, err := cfg.store(ctx, bucket)
	if err != nil {
		return err
	}
	objs := int(cfg.size / cfg.objSize)
	big := randomBytes(cfg.objSize)
	small := randomBytes(cfg.smallSize)
	mib := float64(int64(objs)*cfg.objSize) / (1 << 20)

	measure := func(key string, ops int, body func() (time.Duration, error), value func(d time.Duration) float64) {
		proxy.setLabel("raw/" + key)
		defer proxy.setLabel("raw/-")
		before := snap(proxy)
		d, err := body()
		c := cell{ops: int64(ops), secs: d.Seconds(), reqs: snap(proxy).sub(before)}
		if err != nil {
			c.err = err.Error()
		} else {
			c.value = value(d)
		}
		logf("raw %s (pass %d): %s", key, pass, c.summary(metricByKey[key].unit))
		res.setRaw(key, c)
	}
	perSec := func(n int) func(time.Duration) float64 {
		return func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	}
	mibPerSec := func(d time.Duration) float64 { return mib / d.Seconds() }

	for _, c := range []int{1, 8} {
		prefix := fmt.Sprintf("large-c%d/", c)
		measure(fmt.Sprintf("raw.put%d", c), objs, func() (time.Duration, error) {
			return parallel(c, objs, func(i int) error {
				_, err := st.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), big)
				return err
			})
		}, mibPerSec)
		measure(fmt.Sprintf("raw.get%d", c), objs, func() (time.Duration, error) {
			return parallel(c, objs, func(i int) error {
				_, _, err := st.Get(ctx, fmt.Sprintf("%s%06d", prefix, i))
				return err
			})
		}, mibPerSec)
	}
	n := cfg.files
	for _, c := range []int{1, 8} {
		prefix := fmt.Sprintf("small-c%d/", c)
		measure(fmt.Sprintf("raw.smallput%d", c), n, func() (time.Duration, error) {
			return parallel(c, n, func(i int) error {
				_, err := st.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), small)
				return err
			})
		}, perSec(n))
	}
	measure("raw.smallget1", n, func() (time.Duration, error) {
		return parallel(1, n, func(i int) error {
			_, _, err := st.Get(ctx, fmt.Sprintf("small-c1/%06d", i))
			return err
		})
	}, perSec(n))
	measure("raw.head1", n, func() (time.Duration, error) {
		return parallel(1, n, func(i int) error {
			_, err := st.Head(ctx, fmt.Sprintf("small-c1/%06d", i))
			return err
		})
	}, perSec(n))
	measure("raw.list", n, func() (time.Duration, error) {
		return listAll(ctx, st, "small-c1/", n)
	}, perSec(n))
	measure("raw.delete1", n, func() (time.Duration, error) {
		return parallel(1, n, func(i int) error {
			return st.Delete(ctx, fmt.Sprintf("small-c1/%06d", i))
		})
	}, perSec(n))
	proxy.setLabel("cleanup")
	return cfg.emptyBucket(ctx, bucket)
}

// listAll lists every key under prefix, 1,000 a page, and checks it found want.
func listAll(ctx context.Context, st *s3store.Store, prefix string, want int) (time.Duration, error) {
	start := time.Now()
	after, got := "", 0
	for {
		page, err := st.List(ctx, prefix, after, 1000)
		if err != nil {
			return 0, err
		}
		got += len(page.Objects)
		if !page.Truncated || len(page.Objects) == 0 {
			break
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
	if got != want {
		return 0, fmt.Errorf("listed %d keys, want %d", got, want)
	}
	return time.Since(start), nil
}

func snap(p *countingProxy) counts {
	if p == nil {
		return counts{}
	}
	return p.snapshot()
}
