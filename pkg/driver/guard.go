package driver

import (
	"fmt"
	"sync"
)

// guard refuses a second operation on a volume, snapshot or path while one
// is running (the CSI spec's answer is Aborted; the CO retries). A key is
// held exclusively, or shared by any number of holders (publishing one
// volume into many pods at once), never both.
type guard struct {
	mu   sync.Mutex
	busy map[string]int // -1: held exclusively; n > 0: shared by n
}

func newGuard() *guard { return &guard{busy: map[string]int{}} }

// acquire takes every key exclusively, or none, and returns the function
// releasing them.
func (g *guard) acquire(keys ...string) (func(), error) { return g.take(keys, nil) }

// acquireShared takes the keys in excl exclusively and those in shared
// shared, or none.
func (g *guard) acquireShared(excl []string, shared ...string) (func(), error) {
	return g.take(excl, shared)
}

func (g *guard) take(excl, shared []string) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range excl {
		if g.busy[k] != 0 {
			return nil, fmt.Errorf("%w: %s", ErrInFlight, clip(k))
		}
	}
	for _, k := range shared {
		if g.busy[k] < 0 {
			return nil, fmt.Errorf("%w: %s", ErrInFlight, clip(k))
		}
	}
	for _, k := range excl {
		g.busy[k] = -1
	}
	for _, k := range shared {
		g.busy[k]++
	}
	return func() {
		g.mu.Lock()
		for _, k := range excl {
			delete(g.busy, k)
		}
		for _, k := range shared {
			if g.busy[k]--; g.busy[k] <= 0 {
				delete(g.busy, k)
			}
		}
		g.mu.Unlock()
	}, nil
}
