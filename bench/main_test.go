package main

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wsroom/wsroom"
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
// and checks that every measurement is there and nothing was lost. The
// compression scenario runs on its own servers: 4 KiB JSON to 20
// subscribers, idle at 50.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	md, svg, js := filepath.Join(dir, "r.md"), filepath.Join(dir, "r.svg"), filepath.Join(dir, "r.json")
	rep, err := run(context.Background(), []string{
		"-all", "-sizes", "20,50,60", "-dur", "100ms", "-lat-rate", "2000", "-lat-dur", "200ms",
		"-soak", "200ms", "-parallel", "8", "-sources", "2", "-compress-settle", "100ms", "-inflate-every", "3",
		"-stalled", "20", "-fast", "3", "-stalled-msgs", "200", "-stalled-runs", "2",
		// The resume scenario is integration's TestResumeUnderCuts, which
		// CI runs at its own size; TestParseResume covers the reading.
		"-skip", "resume",
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
		} else if s != nil && s.Samples[5].Stats.Goroutines != s.Samples[0].Stats.Goroutines {
			// RSS is not judged at this size: 60 connections move it less
			// than the runtime's own noise.
			t.Errorf("soak: the burst left goroutines behind: %s", s.verdict())
		}
	}
	checkCompression(t, rep)
	checkStalled(t, rep)
	for path, want := range map[string]string{
		md:  "| metric | wsroom | gorilla | melody | gobwas-raw |",
		svg: "<svg",
		js:  `"Server": "gobwas-raw"`,
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q:\n%s", filepath.Base(path), want, b)
		}
	}
}

// checkCompression checks the compression scenario of an -all run: every
// message arrived and was counted, the sampled ones were checked, RSV1
// appeared exactly on the compressing servers' messages, which are much
// smaller on the wire, and the report has the table and the idle target.
func checkCompression(t *testing.T, rep *report) {
	t.Helper()
	if len(rep.compress) != len(compressServers) {
		t.Fatalf("%d compression results for %d servers", len(rep.compress), len(compressServers))
	}
	for _, r := range rep.compress {
		if r.Failed != "" {
			t.Errorf("compression %s failed: %s", r.Server, r.Failed)
			continue
		}
		lr := r.Fanout
		if lr == nil || lr.Err != "" || lr.Deliveries != lr.Expected || lr.Expected == 0 || lr.PerSec <= 0 || lr.CPUMicros <= 0 {
			t.Errorf("compression %s fan-out: %+v", r.Server, lr)
			continue
		}
		// Each of the 20 connections checks its 1st, 4th, 7th, ... message.
		if want := 20 * ((lr.Deliveries/20 + 2) / 3); lr.Verified != want {
			t.Errorf("compression %s: %d messages checked of %d, want %d", r.Server, lr.Verified, lr.Deliveries, want)
		}
		want, wire := int64(0), lr.WirePerDelivery
		if r.Deflate {
			want = lr.Deliveries
		}
		if lr.Compressed != want {
			t.Errorf("compression %s: %d of %d deliveries compressed, want %d", r.Server, lr.Compressed, lr.Deliveries, want)
		}
		if (r.Deflate && wire > jsonSize/3) || (!r.Deflate && wire < jsonSize) {
			t.Errorf("compression %s: %.0f wire bytes per %d-byte message", r.Server, wire, jsonSize)
		}
		for _, ir := range []*idleResult{r.Idle, r.IdleAfter} {
			if ir == nil || ir.Conns != 50 || ir.RSSKiBPerConn <= 0 {
				t.Errorf("compression %s: idle %+v", r.Server, ir)
			}
		}
	}
	md := rep.markdown()
	for _, want := range []string{"### Compression (issue 5)", "| server CPU µs/delivery, 20 subs |", "negotiated compression adds ≤ 0.5 KiB idle RSS/conn @50 (before any message)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// checkStalled checks the stalled scenario of an -all run at its tiny
// size (20 stalled, 3 fast readers, 200 messages of 1 KiB: the burst fits
// in every queue, so nothing may be lost or closed): both runs are there,
// the fast readers got every message in order, the server's samples saw
// the stalled connections' kernel send queues, and the report has the
// section and the targets.
func checkStalled(t *testing.T, rep *report) {
	t.Helper()
	s := rep.stalled
	if s == nil || s.Failed != "" || s.Control == nil || s.Run == nil || s.Probe == nil || len(s.Controls) != 2 || len(s.Runs) != 2 {
		t.Fatalf("stalled scenario: %+v", s)
	}
	for _, r := range s.all() {
		if !r.complete() || r.Expected != 3*200 || r.Err != "" || r.FastSecs <= 0 || r.Samples < 2 || r.Peak.Heap <= 0 || r.Peak.RSS <= 0 || r.Peak.TCPPages < 0 {
			t.Errorf("stalled scenario, %d stalled: %s", r.Stalled, r.summary())
		}
	}
	// The timed runs do not read each socket's kernel memory; the probe
	// does. Every run reads the machine's TCP memory (in pages: a run with
	// few sockets may see 0).
	if r := s.Run; r.Peak.Sockets != 0 || r.Peak.Outq != -1 {
		t.Errorf("stalled scenario: the timed run sampled %d sockets (%d bytes queued); want none", r.Peak.Sockets, r.Peak.Outq)
	}
	// Each of the 20 stalled sockets fills its kernel send queue as far as
	// wsroom lets it: the kernel holds what the client's 4 KiB receive
	// buffer took, plus at most about SendBufferUnsent (16 KiB) not yet
	// sent, of the 200 KiB sent to each (TCP_NOTSENT_LOWAT; without it,
	// about 94 KiB); the rest waits in wsroom's queue. Only the 3 fast
	// readers' sockets may hold more than overOutq (their limit is lifted
	// once they have read a send buffer's worth; 56 KiB seen).
	if r := s.Probe; r.Peak.Sockets < 23 || r.Peak.Outq < 20*8<<10 || r.Peak.Over > 3 || r.Peak.Queued < r.Peak.Outq || r.Kicked != 0 {
		t.Errorf("stalled scenario: %d sockets sampled, %d bytes queued (%d with overhead, at most %d in one socket, %d sockets over %d KiB), %d kicked; want 23, ≥ 20 × 8 KiB, at most the 3 fast readers' over, 0",
			r.Peak.Sockets, r.Peak.Outq, r.Peak.Queued, r.Peak.MaxOutq, r.Peak.Over, overOutq>>10, r.Kicked)
	}
	// The floor: every stalled socket was written, and took at least
	// what TCP_NOTSENT_LOWAT lets it and at most that plus a 4 KiB
	// receiver's window and some slack (22 KiB measured).
	if f := s.Floor; f == nil || s.FloorErr != "" {
		t.Errorf("stalled scenario: no floor: %s", s.FloorErr)
	} else if per := f.Taken / int64(max(f.Sockets, 1)); f.Sockets != 20 || per < wsroom.DefaultSendBufferUnsent || per > wsroom.DefaultSendBufferUnsent+32<<10 || f.CPUMicros < 0 || f.Interrupts < 0 {
		t.Errorf("stalled scenario: floor %+v (%d bytes a socket)", f.floorFill, per)
	}
	md := rep.markdown()
	for _, want := range []string{"### Stalled neighbours (issue 11)", "Floor: a gobwas-raw server took the same clients", "; the kernel's floor alone: ", "| fast readers' messages delivered | 600 / 600 (100.0%) | 600 / 600 (100.0%) | 600 / 600 (100.0%) |",
		"| every fast reader receives all 200 messages, in order | 100.0% delivered, 0 out of order; probe: 100.0% delivered, 0 out of order | met |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestJSONMessage checks the compression scenario's messages and the
// clients' checks: every variant is valid JSON of jsonSize bytes with a
// matching CRC-32, survives deflate + inflate, and a changed byte, a
// truncated or a longer message, or bad deflate data are caught.
func TestJSONMessage(t *testing.T) {
	f := getInflater()
	defer putInflater(f)
	for seq := range jsonVariants {
		m := jsonMessage(seq)
		if !json.Valid(m) || !checkJSON(m) {
			t.Fatalf("message %d (%d bytes) does not check: %s", seq, len(m), m)
		}
		var z bytes.Buffer
		fw, _ := flate.NewWriter(&z, flate.BestSpeed)
		fw.Write(m)
		fw.Flush()
		p := bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff})
		if len(p) == z.Len() || len(p) > jsonSize/4 {
			t.Fatalf("message %d compresses to %d bytes (with tail %d)", seq, len(p), z.Len())
		}
		if got := f.inflate(p); !checkJSON(got) {
			t.Fatalf("message %d: inflated %d bytes that do not check", seq, len(got))
		}
		bad := bytes.Clone(m)
		bad[100] ^= 1
		if checkJSON(bad) || checkJSON(m[:jsonSize-1]) || checkJSON(append(bytes.Clone(m), ' ')) {
			t.Fatalf("message %d: a changed, truncated or longer message checks", seq)
		}
	}
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, flate.BestSpeed)
	fw.Write(bytes.Repeat(jsonMessage(0), 2))
	fw.Flush()
	if got := f.inflate(z.Bytes()); len(got) != jsonSize+1 || checkJSON(got) {
		t.Errorf("a message of 2×%d bytes inflated to %d bytes", jsonSize, len(got))
	}
	if got := f.inflate([]byte{0xff, 0xff, 0xff}); got != nil {
		t.Errorf("bad deflate data inflated to %d bytes", len(got))
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

// TestMedianRun: the median run by FastSecs (the lower of an even count),
// a run that delivered nothing counting as the slowest; and the pairs'
// summary counts the pairs within 3×.
func TestMedianRun(t *testing.T) {
	runs := func(secs ...float64) []*stalledRun {
		var rs []*stalledRun
		for _, s := range secs {
			rs = append(rs, &stalledRun{FastSecs: s})
		}
		return rs
	}
	for _, tc := range []struct {
		secs []float64
		want float64
	}{
		{[]float64{0.3}, 0.3},
		{[]float64{0.5, 0.1, 0.3}, 0.3},
		{[]float64{0.4, 0.1, 0.3, 0.2}, 0.2},
		{[]float64{-1, 0.1, 0.2}, 0.2},
		{[]float64{-1, -1, 0.2}, -1},
	} {
		if got := medianRun(runs(tc.secs...)).FastSecs; got != tc.want {
			t.Errorf("medianRun(%v) = %v, want %v", tc.secs, got, tc.want)
		}
	}
	s := &stalledResult{Controls: runs(0.1, 0.05, 0.1), Runs: runs(0.25, 0.2, -1)}
	want := "3 alternated pairs: control 0.050–0.100 s, with the stalled peers 0.200–0.250 s (first broadcast → last fast-reader delivery); pair by pair 2.5–4.0×, within 3× in 1 of 2."
	if got := s.pairsLine(); !strings.HasPrefix(got, want) {
		t.Errorf("pairsLine = %q, want it to start with %q", got, want)
	}
}
