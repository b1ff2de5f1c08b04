package conformance_test

import (
	"net"
	"sync"
	"testing"

	"github.com/wsroom/wsroom/internal/conformance"
)

// serveTCP serves every connection accepted on a loopback listener with
// serve (which need not close it), until the test ends: then it closes
// the listener and every open connection and joins the goroutines.
func serveTCP(t *testing.T, serve func(net.Conn)) conformance.Target {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return conformance.Target{Addr: ln.Addr().String(), Path: "/"}
}

// checkVerdicts compares each result's verdict with want[case ID].
func checkVerdicts(t *testing.T, results []conformance.Result, want map[string]conformance.Verdict) {
	t.Helper()
	for _, res := range results {
		if res.Verdict != want[res.Case.ID] {
			t.Errorf("case %s: got %s (%s), want %s", res.Case.ID, res.Verdict, res.Reason, want[res.Case.ID])
		} else {
			t.Logf("case %s: %s %s", res.Case.ID, res.Outcome(), res.Reason)
		}
		if res.Retried() {
			t.Logf("case %s: first run %s", res.Case.ID, res.FirstTry)
		}
	}
}

// logRetries names every case that was run twice, with its first run.
func logRetries(t *testing.T, results []conformance.Result) {
	t.Helper()
	for _, res := range results {
		if res.Retried() {
			t.Logf("case %s (%s) was run twice: %s; first run %s", res.Case.ID, res.Case.Description, res.Outcome(), res.FirstTry)
		}
	}
}

// startFlawed runs, in the background on wg, the cases of all named in
// want against the endpoint target, storing the results in *out.
func startFlawed(t *testing.T, wg *sync.WaitGroup, all []conformance.Case, want map[string]conformance.Verdict,
	ep conformance.Endpoint, target conformance.Target, out *[]conformance.Result) {
	t.Helper()
	var cases []conformance.Case
	for _, c := range all {
		if _, ok := want[c.ID]; ok {
			cases = append(cases, c)
		}
	}
	if len(cases) != len(want) {
		t.Fatalf("want names %d cases, %d exist", len(want), len(cases))
	}
	r := conformance.Runner{Targets: map[conformance.Endpoint]conformance.Target{ep: target}}
	wg.Go(func() { *out = r.Run(cases) })
}
