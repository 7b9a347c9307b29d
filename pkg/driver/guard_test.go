package driver

import (
	"errors"
	"testing"
)

func TestGuard(t *testing.T) {
	g := newGuard()
	r1, err := g.acquireShared([]string{"/t1"}, "vol")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.acquireShared([]string{"/t2"}, "vol")
	if err != nil {
		t.Fatal("a second publish of one volume at another target was refused:", err)
	}
	if _, err := g.acquireShared([]string{"/t1"}, "vol"); !errors.Is(err, ErrInFlight) {
		t.Fatal("two publishes at one target:", err)
	}
	if _, err := g.acquire("vol", "/staging"); !errors.Is(err, ErrInFlight) {
		t.Fatal("stage while publishing:", err)
	}
	r1()
	r2()
	r3, err := g.acquire("vol", "/staging")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.acquireShared([]string{"/t1"}, "vol"); !errors.Is(err, ErrInFlight) {
		t.Fatal("publish while staging:", err)
	}
	if _, err := g.acquire("/staging"); !errors.Is(err, ErrInFlight) {
		t.Fatal("a key taken twice:", err)
	}
	r3()
	if len(g.busy) != 0 {
		t.Fatalf("keys left: %v", g.busy)
	}
}
