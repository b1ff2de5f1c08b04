package wstest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Many tests drive hundreds of connections at once: DialAll opens them,
// Go runs a function per connection on its own goroutine, and
// Group.Wait collects what those functions returned. Nothing in the
// goroutines touches a testing.T.

// DialAll opens n WebSocket connections, to url(i) for the i-th, a few at
// a time, and fails the test if any cannot be opened. Cleanup closes them.
func DialAll(t testing.TB, n int, url func(i int) string) []*Conn {
	t.Helper()
	conns := make([]*Conn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	next := make(chan int)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				conns[i], errs[i] = Open(url(i), nil)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := firstErrors(errs); err != nil {
		t.Fatalf("dialing %d connections: %v", n, err)
	}
	return conns
}

// Group is a set of goroutines started by Go, one per connection.
type Group struct {
	wg   sync.WaitGroup
	errs []error
}

// Go runs f(i, c) for every connection on a goroutine of its own and
// returns at once. Cleanup closes the connections (which ends a blocked
// read) and waits for the goroutines, so none outlives the test even if it
// fails before Wait.
func Go(t testing.TB, conns []*Conn, f func(i int, c *Conn) error) *Group {
	g := &Group{errs: make([]error, len(conns))}
	for i, c := range conns {
		g.wg.Go(func() {
			if err := f(i, c); err != nil {
				g.errs[i] = fmt.Errorf("connection %d: %w", i, err)
			}
		})
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		g.wg.Wait()
	})
	return g
}

// Wait waits for every goroutine of the group and fails the test,
// reporting the first few errors, if any returned one.
func (g *Group) Wait(t testing.TB, what string) {
	t.Helper()
	g.wg.Wait()
	if err := firstErrors(g.errs); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// firstErrors joins the first three non-nil errors of errs, saying how
// many there were, or returns nil.
func firstErrors(errs []error) error {
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d failed; first: %w", len(failed), len(errs), errors.Join(failed[:min(len(failed), 3)]...))
}
