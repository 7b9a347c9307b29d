package driver

import (
	"fmt"
	"sync"
)

// guard refuses a second operation on a volume, snapshot or path while one
// is running (the CSI spec's answer is Aborted; the CO retries).
type guard struct {
	mu   sync.Mutex
	busy map[string]bool
}

func newGuard() *guard { return &guard{busy: map[string]bool{}} }

// acquire takes every key or none, and returns the function releasing them.
func (g *guard) acquire(keys ...string) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range keys {
		if g.busy[k] {
			return nil, fmt.Errorf("%w: %s", ErrInFlight, clip(k))
		}
	}
	for _, k := range keys {
		g.busy[k] = true
	}
	return func() {
		g.mu.Lock()
		for _, k := range keys {
			delete(g.busy, k)
		}
		g.mu.Unlock()
	}, nil
}
