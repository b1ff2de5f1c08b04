package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"time"
)

// report renders the results as Markdown (table, targets, method notes)
// and as an SVG chart.
type report struct {
	cfg         *config
	clientCPU   int
	clientProcs int
	started     time.Time
	load        string // load average when the run started
	backlog     int    // net.core.netdev_max_backlog
	results     []*result
	compress    []*compressResult // the compression scenario
	stalled     *stalledResult    // the stalled-neighbours scenario
	resume      *resumeResult     // the resume-under-cuts scenario
}

// row is one line of the comparison table: how to read a value from a
// result, and whether lower values are better.
type row struct {
	name  string
	lower bool
	get   func(*result) (v float64, note string, ok bool)
}

func (rep *report) rows() []row {
	c := rep.cfg
	idle := func(n int, f func(idleResult) float64) func(*result) (float64, string, bool) {
		return func(r *result) (float64, string, bool) {
			for _, ir := range r.Idle {
				if ir.Conns == n {
					return f(ir), "", true
				}
			}
			return 0, "", false
		}
	}
	load := func(m func(*result) map[int]loadResult, n int, f func(loadResult) float64) func(*result) (float64, string, bool) {
		return func(r *result) (float64, string, bool) {
			lr, ok := m(r)[n]
			if !ok {
				return 0, "", false
			}
			return f(lr), loadNote(lr), true
		}
	}
	fan := func(r *result) map[int]loadResult { return r.Fanout }
	snd := func(r *result) map[int]loadResult { return r.SendTo }
	perSec := func(lr loadResult) float64 { return lr.PerSec }
	cpu := func(lr loadResult) float64 { return lr.CPUMicros }
	lat := func(q func(*result) time.Duration) func(*result) (float64, string, bool) {
		return func(r *result) (float64, string, bool) {
			if r.LatSamples == 0 {
				return 0, "", false
			}
			var parts []string
			if r.LatErr != "" {
				parts = append(parts, "loss")
			}
			if r.LatKicked > 0 {
				parts = append(parts, fmt.Sprintf("kicked %d", r.LatKicked))
			}
			if r.LatDrops > 0 {
				parts = append(parts, fmt.Sprintf("kernel drops %d", r.LatDrops))
			}
			note := strings.Join(parts, ", ")
			return float64(q(r).Microseconds()) / 1000, note, true
		}
	}
	return []row{
		{fmt.Sprintf("idle RSS KiB/conn @%s", k(c.mid)), true, idle(c.mid, func(i idleResult) float64 { return i.RSSKiBPerConn })},
		{fmt.Sprintf("idle RSS KiB/conn @%s", k(c.large)), true, idle(c.large, func(i idleResult) float64 { return i.RSSKiBPerConn })},
		{fmt.Sprintf("idle Go heap+stacks KiB/conn @%s", k(c.mid)), true, idle(c.mid, func(i idleResult) float64 { return i.HeapPerConn / 1024 })},
		{fmt.Sprintf("goroutines per idle conn @%s", k(c.mid)), true, idle(c.mid, func(i idleResult) float64 { return i.GoroutinePerCon })},
		{fmt.Sprintf("fan-out deliveries/s, %s subs", k(c.small)), false, load(fan, c.small, perSec)},
		{fmt.Sprintf("fan-out deliveries/s, %s subs", k(c.mid)), false, load(fan, c.mid, perSec)},
		{fmt.Sprintf("server CPU µs/delivery, %s subs", k(c.small)), true, load(fan, c.small, cpu)},
		{fmt.Sprintf("server CPU µs/delivery, %s subs", k(c.mid)), true, load(fan, c.mid, cpu)},
		{fmt.Sprintf("p50 latency ms, %s subs @%s/s", k(c.mid), k(int(c.latRate))), true, lat(func(r *result) time.Duration { return r.P50 })},
		{fmt.Sprintf("p99 latency ms, %s subs @%s/s", k(c.mid), k(int(c.latRate))), true, lat(func(r *result) time.Duration { return r.P99 })},
		{fmt.Sprintf("SendTo 10 users msgs/s among %s", k(c.small)), false, load(snd, c.small, perSec)},
		{fmt.Sprintf("SendTo 10 users msgs/s among %s", k(c.mid)), false, load(snd, c.mid, perSec)},
		{fmt.Sprintf("SendTo 10 users msgs/s among %s", k(c.large)), false, load(snd, c.large, perSec)},
		{fmt.Sprintf("SendTo spread %s→%s (lower is flatter)", k(c.small), k(c.large)), true, func(r *result) (float64, string, bool) {
			f, ok := flatness(r, c)
			return 100 * f, "%", ok
		}},
		{fmt.Sprintf("handshakes/s (opening %s, %d dialers)", k(c.mid), c.parallel), false, func(r *result) (float64, string, bool) {
			note := ""
			if r.HSDrops > 0 {
				note = fmt.Sprintf("kernel drops %d", r.HSDrops)
			}
			return r.Handshakes, note, r.Handshakes > 0
		}},
	}
}

// flatness is (max-min)/max of the SendTo rates at the three sizes.
func flatness(r *result, c *config) (float64, bool) {
	lo, hi := math.Inf(1), 0.0
	for _, n := range []int{c.small, c.mid, c.large} {
		lr, ok := r.SendTo[n]
		if !ok || lr.PerSec == 0 {
			return 0, false
		}
		lo, hi = min(lo, lr.PerSec), max(hi, lr.PerSec)
	}
	return (hi - lo) / hi, true
}

func loadNote(lr loadResult) string {
	var parts []string
	if lost := lr.Expected - lr.Deliveries; lost > 0 || lr.Err != "" {
		parts = append(parts, fmt.Sprintf("LOST %d", max(lost, 0)))
	}
	if lr.Kicked > 0 {
		parts = append(parts, fmt.Sprintf("kicked %d", lr.Kicked))
	}
	if lr.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("dropped %d", lr.Dropped))
	}
	if lr.Merged > 0 {
		parts = append(parts, fmt.Sprintf("merged frames %d", lr.Merged))
	}
	if lr.NetDrops > 0 {
		parts = append(parts, fmt.Sprintf("kernel drops %d", lr.NetDrops))
	}
	if lr.Foreign > 0.25 {
		parts = append(parts, fmt.Sprintf("busy machine %.0f%%", 100*lr.Foreign))
	}
	if lr.ClientUtil > 0.9 && lr.ClientUtil > lr.ServerUtil {
		parts = append(parts, "client-bound")
	}
	return strings.Join(parts, ", ")
}

func (rep *report) byName(name string) *result {
	for _, r := range rep.results {
		if r.Server == name {
			return r
		}
	}
	return nil
}

// drops sums the kernel's softnet drops over the measured intervals
// (handshakes, fan-out, latency and SendTo runs).
func (rep *report) drops() int64 {
	var n int64
	for _, r := range rep.results {
		n += r.HSDrops + r.LatDrops
		for _, m := range []map[int]loadResult{r.Fanout, r.SendTo} {
			for _, lr := range m {
				n += lr.NetDrops
			}
		}
	}
	for _, r := range rep.compress {
		if r.Fanout != nil {
			n += r.Fanout.NetDrops
		}
	}
	if s := rep.stalled; s != nil {
		for _, r := range s.all() {
			n += r.NetDrops
		}
	}
	return n
}

// ratio is wsroom's advantage over other on a row (> 1: wsroom is better).
func ratio(rw row, w, other *result) (float64, bool) {
	if w == nil || other == nil {
		return 0, false
	}
	a, _, ok1 := rw.get(w)
	b, _, ok2 := rw.get(other)
	if !ok1 || !ok2 {
		return 0, false
	}
	return advantage(a, b, rw.lower)
}

// advantage is how much better value a is than b (> 1: a is better);
// lower says lower values are better.
func advantage(a, b float64, lower bool) (float64, bool) {
	if lower {
		a, b = b, a
	}
	if b == 0 {
		return math.Inf(1), a > 0
	}
	return a / b, true
}

var anchors = []string{"melody", "gorilla", "gobwas-raw"}

func (rep *report) markdown() string {
	var b strings.Builder
	c := rep.cfg
	fmt.Fprintf(&b, "\n## wsroom bench, %s\n\n", rep.started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "%s, %d CPUs, %s; load average at start %s, net.core.netdev_max_backlog %d. Server: own process, CPU %s, GOMAXPROCS=%s. "+
		"Load generator: CPU %s, GOMAXPROCS=%d, one goroutine per client connection. 64-byte binary messages (the compression scenario: 4 KiB JSON).\n\n",
		cpuModel(), runtime.NumCPU(), runtime.Version(), rep.load, rep.backlog, cpuStr(c.serverCPU), procsStr(c.serverProcs),
		cpuStr(rep.clientCPU), rep.clientProcs)
	if len(rep.results) > 0 {
		rep.mainTable(&b)
	}
	if d := rep.drops(); d > 0 {
		fmt.Fprintf(&b, "\n**Warning: the kernel dropped %d packets during the measurements** (/proc/net/softnet_stat: a CPU's input "+
			"backlog was full; counted machine-wide). Each drop stalls a TCP connection for a retransmission timeout (≥ 200 ms); "+
			"cells marked \"kernel drops\" measure that, not the server. Rerun on a quiet machine, or raise "+
			"net.core.netdev_max_backlog (now %d).\n", d, rep.backlog)
	}
	for _, r := range rep.results {
		if r.Failed != "" {
			fmt.Fprintf(&b, "\n**%s failed:** %s\n", r.Server, r.Failed)
		}
	}
	b.WriteString(rep.targets())
	b.WriteString(rep.compressionSection())
	b.WriteString(rep.stalledSection())
	b.WriteString(rep.resumeSection())
	b.WriteString(rep.soakSection())
	b.WriteString(rep.runsSection())
	var notes strings.Builder
	for _, s := range servers {
		if rep.byName(s.name) != nil {
			fmt.Fprintf(&notes, "- **%s**: %s.\n", s.name, s.note)
		}
	}
	for _, s := range compressServers {
		if rep.compressByName(s.name) != nil {
			fmt.Fprintf(&notes, "- **%s** (compression): %s.\n", s.name, s.note)
		}
	}
	if notes.Len() > 0 {
		b.WriteString("\n### Servers\n\n" + notes.String())
	}
	b.WriteString(methodNotes)
	return b.String()
}

// mainTable writes the comparison table of the servers and wsroom's
// advantage over each anchor.
func (rep *report) mainTable(b *strings.Builder) {
	names := make([]string, 0, len(rep.results))
	for _, r := range rep.results {
		names = append(names, r.Server)
	}
	b.WriteString("| metric | " + strings.Join(names, " | ") + " |")
	w := rep.byName("wsroom")
	var shown []string
	for _, a := range anchors {
		if rep.byName(a) != nil && w != nil {
			shown = append(shown, a)
			b.WriteString(" wsroom vs " + a + " |")
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(names)+len(shown)) + "\n")
	for _, rw := range rep.rows() {
		b.WriteString("| " + rw.name + " |")
		for _, r := range rep.results {
			v, note, ok := rw.get(r)
			switch {
			case !ok:
				b.WriteString(" — |")
			case note == "%":
				fmt.Fprintf(b, " %.0f%% |", v)
			case note != "":
				fmt.Fprintf(b, " %s (%s) |", num(v), note)
			default:
				fmt.Fprintf(b, " %s |", num(v))
			}
		}
		for _, a := range shown {
			if x, ok := ratio(rw, w, rep.byName(a)); ok {
				fmt.Fprintf(b, " %s× |", num(x))
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\nRatios are wsroom's advantage (> 1× means wsroom is better: faster, leaner or lower latency).\n")
}

// targets checks issue 4's goals.
func (rep *report) targets() string {
	c := rep.cfg
	w := rep.byName("wsroom")
	if w == nil {
		return ""
	}
	rows := rep.rows()
	get := func(i int, r *result) (float64, bool) {
		if r == nil {
			return 0, false
		}
		v, _, ok := rows[i].get(r)
		return v, ok
	}
	const (
		idleMid, idleLarge, _, _, fanSmall, fanMid, cpuSmall, cpuMid, _, p99, _, sendMid = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
	)
	var b strings.Builder
	b.WriteString("\n### Targets (issue 4)\n\n| target | measured | status |\n|---|---|---|\n")
	line := func(target, measured string, ok, known bool) {
		st := "n/a (not measured)"
		if known {
			st = "**NOT met**"
			if ok {
				st = "met"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", target, measured, st)
	}
	show := func(v float64, ok bool, unit string) string {
		if !ok {
			return "—"
		}
		return num(v) + unit
	}
	abs := func(target string, i int, limit float64) {
		v, ok := get(i, w)
		line(target, show(v, ok, ""), ok && v <= limit && lossless(rows[i], w), ok)
	}
	rel := func(target string, i int, anchor string, factor float64) {
		x, ok := ratio(rows[i], w, rep.byName(anchor))
		line(target, show(x, ok, "×"), ok && x >= factor && lossless(rows[i], w), ok)
	}
	abs(fmt.Sprintf("idle ≤ 2 KiB/conn @%s", k(c.mid)), idleMid, 2)
	abs(fmt.Sprintf("idle ≤ 2 KiB/conn @%s", k(c.large)), idleLarge, 2)
	rel("idle ≥ 8× leaner than gorilla", idleMid, "gorilla", 8)
	rel("idle ≥ 10× leaner than melody", idleMid, "melody", 10)
	rel(fmt.Sprintf("fan-out ≥ 3× melody @%s", k(c.small)), fanSmall, "melody", 3)
	rel(fmt.Sprintf("fan-out ≥ 3× melody @%s", k(c.mid)), fanMid, "melody", 3)
	rel(fmt.Sprintf("fan-out ≥ 1.5× gobwas-raw @%s", k(c.mid)), fanMid, "gobwas-raw", 1.5)
	abs(fmt.Sprintf("server CPU ≤ 1 µs/delivery @%s", k(c.small)), cpuSmall, 1)
	abs(fmt.Sprintf("server CPU ≤ 1.5 µs/delivery @%s", k(c.mid)), cpuMid, 1.5)
	rel("p99 latency ≤ half of melody's", p99, "melody", 2)
	x, ok := ratio(rows[p99], w, rep.byName("gobwas-raw"))
	line("p99 latency below gobwas-raw", show(x, ok, "×"), ok && x > 1 && lossless(rows[p99], w), ok)
	rel(fmt.Sprintf("SendTo ≥ 20× melody @%s", k(c.mid)), sendMid, "melody", 20)
	f, ok := flatness(w, c)
	line(fmt.Sprintf("SendTo flat within 20%% %s→%s", k(c.small), k(c.large)), show(100*f, ok, "%"), ok && f <= 0.2, ok)
	x, ok = ratio(rows[len(rows)-1], w, rep.byName("gorilla"))
	line("handshakes/s ≥ 1.2× gorilla", show(x, ok, "×"), ok && x >= 1.2, ok)
	b.WriteString("\nA throughput or latency target counts as met only if wsroom lost nothing in that run.\n")
	return b.String()
}

// lossless reports whether wsroom's run behind a row lost no message and
// kicked no connection.
func lossless(rw row, w *result) bool {
	_, note, _ := rw.get(w)
	return !strings.Contains(note, "LOST") && !strings.Contains(note, "loss") && !strings.Contains(note, "kicked")
}

func (rep *report) soakSection() string {
	var b strings.Builder
	for _, r := range rep.results {
		s := r.Soak
		if s == nil {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\n### Soak\n\n| server | conns | when | RSS KiB | goroutines | heap KiB |\n|---|---:|---|---:|---:|---:|\n")
		}
		for _, x := range s.Samples {
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %d |\n", r.Server, s.Conns, x.When, x.Stats.RSSKiB, x.Stats.Goroutines, x.Stats.HeapInuse>>10)
		}
		fmt.Fprintf(&b, "\n%s soak: %s. Burst: %s.\n", r.Server, s.verdict(), fmtLoad(s.Burst))
	}
	return b.String()
}

// runsSection lists every load run with what limited it: both processes'
// CPU use, kicks, drops, merged frames and kernel drops.
func (rep *report) runsSection() string {
	var b strings.Builder
	for _, r := range rep.results {
		for _, x := range []struct {
			what string
			m    map[int]loadResult
		}{{"fan-out", r.Fanout}, {"SendTo", r.SendTo}} {
			for _, n := range []int{rep.cfg.small, rep.cfg.mid, rep.cfg.large} {
				if lr, ok := x.m[n]; ok {
					fmt.Fprintf(&b, "- %s %s @%s: %s\n", r.Server, x.what, k(n), fmtLoad(lr))
				}
			}
		}
		if r.LatSamples > 0 {
			fmt.Fprintf(&b, "- %s latency @%s: p50 %v, p99 %v, max %v over %d deliveries, kicked %d, kernel drops %d %s\n",
				r.Server, k(rep.cfg.mid), r.P50, r.P99, r.LatMax, r.LatSamples, r.LatKicked, r.LatDrops, r.LatErr)
		}
	}
	for _, r := range rep.compress {
		if r.Fanout != nil {
			fmt.Fprintf(&b, "- %s 4 KiB JSON fan-out @%s: %s\n", r.Server, k(rep.cfg.small), fmtLoad(*r.Fanout))
		}
	}
	if s := rep.stalled; s != nil {
		for i, r := range s.runs() {
			if r != nil {
				fmt.Fprintf(&b, "- wsroom stalled neighbours%s, %d stalled + %d fast: %s\n", []string{"", "", " (probe)"}[i], r.Stalled, s.Fast, r.summary())
			}
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "\n### Runs (what limited each)\n\n" + b.String()
}

const methodNotes = `
### Method and limits

- One machine, loopback TCP. The server process and the load generator each get one CPU (see above); the
  kernel's loopback work is charged to whichever side runs it, so "server CPU µs/delivery" (getrusage of the
  server process, user+system, over the whole run including the control requests) includes the server's share
  of the kernel TCP send path.
- Fan-out and SendTo runs publish from inside the server process in chunks requested over a keep-alive HTTP
  control connection, keeping at most 64 (1k subs), 16 (10k subs) broadcasts or 192 SendTo calls in flight so
  that gorilla's and melody's 256-message buffers are not overrun; deliveries/s = messages received by all
  clients / (first publish to last receipt). Zero loss is required: a run that stalls for -stall is reported
  LOST, with kicked connections (closed by the server), dropped messages (melody's full buffer, counted in its
  error handler) and merged frames (gorilla's writer joins queued messages with '\n'; the client splits them).
- "client-bound" marks runs where the load generator used > 90% of its CPU and more than the server: the number
  is then a lower bound for that server. With one client core, 10k subscribers are read by 10k goroutines one
  after another, which dominates latency at 10k subs; latency is measured on the same clock
  (UnixNano stamped in the payload) and includes the client's scheduling.
- Idle memory: RSS (VmRSS) of the server process after runtime.GC and debug.FreeOSMemory, minus the same before
  the first connection, divided by connections; it excludes kernel socket buffers. Measured before any traffic.
- Handshakes/s: time to open the 10k set with concurrent dialers (dial + HTTP upgrade + 101), connections kept
  open; the client's dial cost is in the loop.
- Loopback packets pass through each CPU's input backlog (net.core.netdev_max_backlog, 1000 by default). When the
  kernel cannot drain it (a busy machine starves ksoftirqd), packets are dropped and the TCP connection waits a
  retransmission timeout: the tool counts these drops machine-wide and marks the runs they hit.
- "busy machine N%" marks runs during which more than 25% of a CPU on the measured cores went to something
  other than the two processes (/proc/stat busy time minus both processes' getrusage, 10 ms resolution): other
  processes, or kernel packet work not charged to either. Above that, the numbers say little.
- Numbers from a loaded machine are not conclusions: check the load average above.
`

func k(n int) string {
	if n >= 1000 && n%100 == 0 {
		return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/1000), ".0") + "k"
	}
	return fmt.Sprint(n)
}

// num formats a value with three significant digits and thousands as k/M.
func num(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "∞"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func cpuStr(cpu int) string {
	if cpu < 0 {
		return "unpinned"
	}
	return fmt.Sprint(cpu)
}

func procsStr(p int) string {
	if p <= 0 {
		return "default"
	}
	return fmt.Sprint(p)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}
