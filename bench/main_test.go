package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The tool re-executes its own binary as the server process; under
	// `go test` that binary is the test binary.
	if name := os.Getenv(serveEnv); name != "" {
		cpu, _ := strconv.Atoi(os.Getenv("WSROOM_BENCH_CPU"))
		if err := serve(name, cpu); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestEndToEnd runs every scenario on every server at a tiny size, as the
// real command does (server processes, control channel, report, chart),
// and checks that every measurement is there and nothing was lost.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	md, svg, js := filepath.Join(dir, "r.md"), filepath.Join(dir, "r.svg"), filepath.Join(dir, "r.json")
	rep, err := run(context.Background(), []string{
		"-all", "-sizes", "20,50,60", "-dur", "100ms", "-lat-rate", "2000", "-lat-dur", "200ms",
		"-soak", "200ms", "-parallel", "8", "-sources", "2",
		"-server-cpu", "-1", "-client-cpu", "-1", "-server-procs", "0", "-client-procs", "0",
		"-md", md, "-svg", svg, "-json", js,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.results) != len(servers) {
		t.Fatalf("%d results for %d servers", len(rep.results), len(servers))
	}
	for _, r := range rep.results {
		if r.Failed != "" {
			t.Errorf("%s failed: %s", r.Server, r.Failed)
			continue
		}
		if len(r.Idle) != 2 {
			t.Errorf("%s: %d idle measurements, want 2", r.Server, len(r.Idle))
		}
		for _, ir := range r.Idle {
			if ir.GoroutinePerCon <= 0 && r.Server != "wsroom" && r.Server != "gobwas-epoll" {
				t.Errorf("%s: %v goroutines per conn at %d", r.Server, ir.GoroutinePerCon, ir.Conns)
			}
			if r.Server == "gobwas-epoll" && ir.GoroutinePerCon >= 0.5 {
				t.Errorf("gobwas-epoll: %v goroutines per conn at %d, want none", ir.GoroutinePerCon, ir.Conns)
			}
		}
		for what, m := range map[string]map[int]loadResult{"fan-out": r.Fanout, "SendTo": r.SendTo} {
			for n, lr := range m {
				if lr.Err != "" || lr.Deliveries != lr.Expected || lr.Expected == 0 || lr.PerSec <= 0 {
					t.Errorf("%s %s at %d: %s", r.Server, what, n, fmtLoad(lr))
				}
			}
		}
		if len(r.Fanout) != 2 || len(r.SendTo) != 3 {
			t.Errorf("%s: %d fan-out and %d SendTo runs, want 2 and 3", r.Server, len(r.Fanout), len(r.SendTo))
		}
		if r.LatSamples != 8*50 || r.LatErr != "" || r.P99 <= 0 {
			t.Errorf("%s: latency %d samples (want 8 broadcasts × 50), p99 %v, %s", r.Server, r.LatSamples, r.P99, r.LatErr)
		}
		if r.Handshakes <= 0 {
			t.Errorf("%s: no handshake rate", r.Server)
		}
		if (r.Soak != nil) != (r.Server == "wsroom") {
			t.Errorf("%s: soak ran: %v, want only on wsroom", r.Server, r.Soak != nil)
		}
		if s := r.Soak; s != nil && (s.Burst.Deliveries != 20*60 || len(s.Samples) != 6 || s.Samples[5].Stats.Conns != 60) {
			t.Errorf("soak: burst %s, samples %+v", fmtLoad(s.Burst), s.Samples)
		}
	}
	for path, want := range map[string]string{md: "| metric | wsroom | gorilla | melody | gobwas-raw |", svg: "<svg", js: `"Server": "gobwas-raw"`} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q:\n%s", filepath.Base(path), want, b)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := int64(1); i <= 1000; i++ {
		h.record(i * 1000) // 1 µs .. 1 ms
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 500_000}, {0.99, 990_000}, {1, 1_000_000}} {
		got := int64(h.quantile(c.q))
		if got > c.want || float64(got) < float64(c.want)*0.93 {
			t.Errorf("quantile(%v) = %d, want within 7%% below %d", c.q, got, c.want)
		}
	}
	for ns := int64(0); ns < 1<<40; ns = ns*3 + 1 {
		if b := bucketOf(ns); lowerBound(b) > ns || (b+1 < len(h.counts) && lowerBound(b+1) <= ns) {
			t.Fatalf("%d ns in bucket %d [%d, %d)", ns, b, lowerBound(b), lowerBound(b+1))
		}
	}
}
