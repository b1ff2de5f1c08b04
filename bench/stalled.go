package main

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/sysstat"
	"golang.org/x/sys/unix"
)

// The stalled-neighbours scenario (issue 11): S connections that never
// read (their SO_RCVBUF set to 4 KiB before connect) and F fast readers
// in the one room of a wsroom server, which broadcasts M messages back to
// back; first a control run with the F fast readers alone. Each run has a
// fresh server process that samples its own memory (Go heap, RSS) while
// it publishes. Reading the kernel's send-side memory of each socket
// costs the server a syscall pair per socket (about 15 ms of its one
// processor per sample for 2,000 sockets), which the control run, with
// its 10 sockets, would not pay: so the timed runs read only the
// machine's TCP memory, and a third run, the same as the second, samples
// every socket for the kernel figures.

// stalledResult is the scenario: the control run, the run with the
// stalled connections (each the median of its Runs pairs, by FastSecs),
// and the probe (that run again, sampling every socket's kernel memory).
// A control run lasts about 60 ms, so one pair's ratio moves with the
// machine's noise (1.9–4.5× over 22 pairs of one build); the pairs are
// alternated so that both sides see the same conditions.
type stalledResult struct {
	Stalled, Fast, Msgs, Size int
	Control, Run, Probe       *stalledRun
	Controls, Runs            []*stalledRun // every pair, in order
	TCPMem                    []int64       // net.ipv4.tcp_mem: low, pressure, high (pages)
	Floor                     *stalledFloor // the kernel's share alone (floor.go)
	FloorErr                  string        `json:",omitempty"` // why the floor was not measured
	Failed                    string        `json:",omitempty"`
}

// stalledRun is one run: what the fast readers got and what the server
// held meanwhile.
type stalledRun struct {
	Stalled    int         // connections that never read
	Expected   int64       // fast readers × messages
	Delivered  int64       // messages the fast readers received
	MinReader  int64       // messages received by the fast reader that got the fewest
	OutOfOrder int64       // messages that did not carry their connection's next sequence number
	Malformed  int64       // messages of the wrong size or type
	FastClosed map[int]int // fast readers closed by the server, by close code
	FastSecs   float64     // first broadcast → last fast-reader receipt
	LoopSecs   float64     // the server's broadcast loop
	Kicked     int64       // slow-consumer closes counted by the server during the run
	FirstKick  float64     // seconds from the first broadcast to the sample that first saw a kick (-1: none)
	LastKick   float64     // … to the sample that saw the last one
	ServerCPU  float64     // seconds of server CPU (user+sys) over the run
	NetDrops   int64       // softnet drops during the run
	Samples    int         // memory samples taken
	Peak       memSample   // the peak of each field over the samples (T unused)
	Before     memSample   // the first sample, before the first broadcast
	Err        string      `json:",omitempty"`
}

// runStalled runs the scenario: c.stalledRuns alternated pairs of a
// control run and a run with the stalled connections, then the probe.
func runStalled(ctx context.Context, c *config) *stalledResult {
	res := &stalledResult{Stalled: c.stalled, Fast: c.fast, Msgs: c.stalledMsgs, Size: c.stalledSize, TCPMem: sysstat.TCPMemLimits()}
	for i := range c.stalledRuns {
		for _, run := range []struct {
			dst      *[]*stalledRun
			name     string
			nStalled int
		}{
			{&res.Controls, fmt.Sprintf("control %d/%d, %d fast readers alone", i+1, c.stalledRuns, c.fast), 0},
			{&res.Runs, fmt.Sprintf("run %d/%d, %d stalled + %d fast readers", i+1, c.stalledRuns, c.stalled, c.fast), c.stalled},
		} {
			r, err := runStalledOnce(ctx, c, run.nStalled, 0)
			if err != nil {
				res.Failed = run.name + ": " + err.Error()
				log.Printf("stalled: %s", res.Failed)
				return res
			}
			*run.dst = append(*run.dst, r)
			log.Printf("stalled: %s: %s", run.name, r.summary())
		}
	}
	res.Control, res.Run = medianRun(res.Controls), medianRun(res.Runs)
	name := fmt.Sprintf("probe (the run again, sampling each socket's kernel memory every %v)", c.kernelEvery)
	r, err := runStalledOnce(ctx, c, c.stalled, c.kernelEvery)
	if err != nil {
		res.Failed = name + ": " + err.Error()
		log.Printf("stalled: %s", res.Failed)
		return res
	}
	res.Probe = r
	log.Printf("stalled: %s: %s", name, r.summary())
	if res.Floor, err = runStalledFloor(ctx, c); err != nil {
		res.FloorErr = err.Error()
		log.Printf("stalled: floor: %v", err)
	}
	return res
}

// medianRun returns the run whose FastSecs is the median (the lower one
// of an even count); a run that delivered nothing counts as the slowest.
func medianRun(runs []*stalledRun) *stalledRun {
	s := slices.Clone(runs)
	key := func(r *stalledRun) float64 {
		if r.FastSecs < 0 {
			return math.Inf(1)
		}
		return r.FastSecs
	}
	slices.SortFunc(s, func(a, b *stalledRun) int { return cmp.Compare(key(a), key(b)) })
	return s[(len(s)-1)/2]
}

// runs are the scenario's reported runs, in order (nil for those that did not run).
func (s *stalledResult) runs() []*stalledRun { return []*stalledRun{s.Control, s.Run, s.Probe} }

// all are every run of the scenario, pairs first, then the probe.
func (s *stalledResult) all() []*stalledRun {
	all := append(slices.Clone(s.Controls), s.Runs...)
	if s.Probe != nil {
		all = append(all, s.Probe)
	}
	return all
}

// runStalledOnce runs one server with nStalled stalled connections and
// c.fast fast readers, the fast reader j joining the room after j/F of
// the stalled ones, and has it broadcast c.stalledMsgs messages. The
// server samples its sockets' kernel memory every kevery (0: never).
func runStalledOnce(ctx context.Context, c *config, nStalled int, kevery time.Duration) (*stalledRun, error) {
	set, err := setupStalled(ctx, c, "wsroom", nStalled, socketsEnv+"=1", roomsEnv+"="+strconv.Itoa(c.stalledRooms))
	if err != nil {
		return nil, err
	}
	defer set.close()
	srv, l := set.srv, set.l
	before, err := srv.ctl.stats(ctx, false)
	if err != nil {
		return nil, err
	}
	if err := srv.ctl.sampleStart(ctx, c.sampleEvery, kevery); err != nil {
		return nil, err
	}
	drops0 := sysstat.SoftnetDrops()
	type published struct {
		start time.Time
		took  time.Duration
		err   error
	}
	pubc := make(chan published, 1)
	go func() {
		start, took, err := srv.ctl.publishSeq(ctx, c.stalledMsgs, c.stalledSize)
		pubc <- published{start, took, err}
	}()
	r := &stalledRun{Stalled: nStalled, Expected: int64(c.fast) * int64(c.stalledMsgs)}
	if _, err := l.waitRecv(r.Expected, c.stall); err != nil {
		r.Err = "fast readers: " + err.Error()
	}
	pub := <-pubc
	samples, serr := srv.ctl.sampleStop(ctx)
	after, aerr := srv.ctl.stats(ctx, false)
	for _, err := range []error{pub.err, serr, aerr} {
		if err != nil {
			return r, err
		}
	}
	r.NetDrops = sysstat.SoftnetDrops() - drops0
	r.Delivered = l.recv.Load()
	r.MinReader = r.Expected
	for _, n := range l.snapshot(nil) {
		r.MinReader = min(r.MinReader, n)
	}
	r.OutOfOrder, r.Malformed = l.outOfOrder.Load(), l.bad.Load()
	r.FastClosed = l.closeCodes()
	r.FastSecs = -1 // nothing delivered
	if last := l.lastRecv.Load(); last > 0 {
		r.FastSecs = time.Unix(0, last).Sub(pub.start).Seconds()
	}
	r.LoopSecs = pub.took.Seconds()
	r.Kicked = after.Kicked - before.Kicked
	r.ServerCPU = float64(after.CPUMicros-before.CPUMicros) / 1e6
	r.peaks(samples, before.Kicked, pub.start)
	return r, nil
}

// stalledSetup is a server with the scenario's clients connected.
type stalledSetup struct {
	srv *serverProc
	l   *loader // the fast readers
	st  stalledClients
}

// setupStalled starts server name (with env) and connects c.fast fast
// readers and nStalled stalled clients to it, fast reader j after j/F of
// the stalled ones, and waits until the server has them all. The fast
// readers read through 64 KiB buffers: a few read calls per burst of
// messages rather than one per message.
func setupStalled(ctx context.Context, c *config, name string, nStalled int, env ...string) (*stalledSetup, error) {
	srv, err := startServer(name, c.serverCPU, c.serverProcs, env...)
	if err != nil {
		return nil, err
	}
	s := &stalledSetup{srv: srv, l: newLoader(srv.addr, c.sources, loadOpts{seq: c.stalledSize, readBuf: 64 << 10})}
	for j := range c.fast {
		lo, hi := nStalled*j/c.fast, nStalled*(j+1)/c.fast
		if _, err = s.l.connect(j, 1, 1); err != nil {
			break
		}
		if err = s.st.dial(srv.addr, c.sources, c.stalledRcvbuf, lo, hi-lo, c.parallel, c.stalledPoll); err != nil {
			break
		}
	}
	if err == nil {
		err = waitServer(ctx, srv.ctl, c.fast+nStalled)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// close disconnects the clients and stops the server.
func (s *stalledSetup) close() {
	s.st.close()
	s.l.close()
	s.srv.stop()
}

// peaks fills the peaks and the kick times from the samples.
func (r *stalledRun) peaks(samples []memSample, kicked0 int64, start time.Time) {
	r.Samples = len(samples)
	r.FirstKick, r.LastKick = -1, -1
	if len(samples) == 0 {
		return
	}
	r.Before = samples[0]
	p := &r.Peak
	*p = memSample{Outq: -1, Queued: -1, MaxOutq: -1, MaxQueued: -1, MaxSndbuf: -1, TCPPages: -1}
	last := kicked0
	for _, s := range samples {
		p.Heap, p.Live, p.RSS = max(p.Heap, s.Heap), max(p.Live, s.Live), max(p.RSS, s.RSS)
		p.Outq, p.Queued, p.Sockets = max(p.Outq, s.Outq), max(p.Queued, s.Queued), max(p.Sockets, s.Sockets)
		p.MaxOutq, p.MaxQueued, p.MaxSndbuf, p.Over = max(p.MaxOutq, s.MaxOutq), max(p.MaxQueued, s.MaxQueued), max(p.MaxSndbuf, s.MaxSndbuf), max(p.Over, s.Over)
		p.TCPPages, p.Kicked = max(p.TCPPages, s.TCPPages), max(p.Kicked, s.Kicked)
		if s.Kicked > last {
			at := time.Unix(0, s.T).Sub(start).Seconds()
			if last == kicked0 {
				r.FirstKick = at
			}
			r.LastKick, last = at, s.Kicked
		}
	}
}

// fastKicked is the number of fast readers closed with 1008.
func (r *stalledRun) fastKicked() int64 { return int64(r.FastClosed[1008]) }

// fastClosed is the number of fast readers closed, whatever the code.
func (r *stalledRun) fastClosed() int {
	n := 0
	for _, k := range r.FastClosed {
		n += k
	}
	return n
}

// closedStr lists the fast readers' close codes ("none" if none).
func (r *stalledRun) closedStr() string {
	if len(r.FastClosed) == 0 {
		return "none"
	}
	codes := make([]int, 0, len(r.FastClosed))
	for code := range r.FastClosed {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	var parts []string
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d × %d", r.FastClosed[code], code))
	}
	return strings.Join(parts, ", ")
}

// complete says every fast reader got every message, in order, and none
// was closed.
func (r *stalledRun) complete() bool {
	return r.Delivered == r.Expected && r.OutOfOrder == 0 && r.Malformed == 0 && r.fastClosed() == 0
}

func (r *stalledRun) summary() string {
	kernel := "not sampled"
	if r.Peak.Queued >= 0 {
		kernel = fmt.Sprintf("peak %s in %d sockets (largest %s, sndbuf up to %s)", mib(r.Peak.Queued), r.Peak.Sockets, kib(r.Peak.MaxQueued), kib(r.Peak.MaxSndbuf))
	}
	s := fmt.Sprintf("fast readers got %d/%d (%.1f%%, fewest %d), out of order %d, closed %s; last delivery %.3fs after the first broadcast (loop %.3fs); "+
		"slow-consumer closes %d; peak heap %s, live heap %s, RSS %s; kernel send queues: %s, tcp mem %d pages; server CPU %.2fs; kernel drops %d",
		r.Delivered, r.Expected, 100*float64(r.Delivered)/float64(max(r.Expected, 1)), r.MinReader, r.OutOfOrder, r.closedStr(), r.FastSecs, r.LoopSecs,
		r.Kicked, mib(r.Peak.Heap), mib(r.Peak.Live), mib(r.Peak.RSS), kernel, r.Peak.TCPPages, r.ServerCPU, r.NetDrops)
	if r.Err != "" {
		s += " ERROR: " + r.Err
	}
	return s
}

func mib(b int64) string {
	if b < 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func kib(b int64) string {
	if b < 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
}

// stalledClients are connections that complete the handshake and never
// read again.
type stalledClients struct {
	mu    sync.Mutex
	conns []net.Conn
	bare  []int // descriptors outside any poller (-stalled-poll=false)
}

// dial opens connections first..first+n-1 (user "s<i>") with `parallel`
// concurrent dialers, each socket's SO_RCVBUF set to rcvbuf before
// connect. Unless poll, each is then held as a bare descriptor of its
// own, outside Go's poller, so that a delivery into it wakes nothing.
func (s *stalledClients) dial(addr string, sources, rcvbuf, first, n, parallel int, poll bool) error {
	return inParallel(first, n, parallel, func(i int) error {
		src := net.IPv4(127, 0, 0, byte(2+i%max(sources, 1)))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Control: setRcvBuf(rcvbuf), Timeout: 10 * time.Second}
		nc, err := d.Dial("tcp", addr)
		if err == nil {
			// A 256-byte reader takes the 101 answer and nothing else: the
			// server sends nothing more before the broadcasts. From here on
			// nothing is read.
			if _, _, err = upgrade(nc, addr, fmt.Sprintf("s%d", i), false, 256); err != nil {
				nc.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("stalled client %d from %s: %w", i, src, err)
		}
		if !poll {
			fd, err := sysstat.BareFD(nc.(*net.TCPConn))
			nc.Close() // takes Go's descriptor out of the poller; fd keeps the socket
			if err != nil {
				return fmt.Errorf("stalled client %d: %w", i, err)
			}
			s.mu.Lock()
			s.bare = append(s.bare, fd)
			s.mu.Unlock()
			return nil
		}
		s.mu.Lock()
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		return nil
	})
}

// close resets every connection (SO_LINGER 0: no FIN handshake to wait
// for, and no TIME_WAIT on the client's side).
func (s *stalledClients) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, nc := range s.conns {
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		nc.Close()
	}
	s.conns = nil
	for _, fd := range s.bare {
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		unix.Close(fd)
	}
	s.bare = nil
}

// stalledSection renders the scenario: both runs side by side and issue
// 11's targets.
func (rep *report) stalledSection() string {
	s := rep.stalled
	if s == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n### Stalled neighbours (issue 11)\n\n")
	held := "held in the load generator's Go poller, as any Go client's are: on loopback each delivery into one may wake that poller's thread on the other CPU, and the server's CPU pays for the wakeup"
	if !rep.cfg.stalledPoll {
		held = "held as bare descriptors outside any poller (-stalled-poll=false), so that deliveries into them wake nothing"
	}
	where := "in the one room of a wsroom server"
	if n := rep.cfg.stalledRooms; n > 1 {
		where = fmt.Sprintf("in one room of a wsroom server, every connection also in %d other rooms (-stalled-rooms %d: a quiet room they all share, then rooms of their own)", n-1, n)
	}
	fmt.Fprintf(&b, "%d connections that never read (client SO_RCVBUF %d bytes, set before connect; after the 101 nothing is read; %s) and %d fast readers "+
		"%s with default Options (fast reader j joins after j/%d of the stalled ones); the server broadcasts "+
		"%d binary messages of %d bytes back to back from inside its process, each carrying its index, which every fast reader checks. "+
		"Control: the %d fast readers alone, in a fresh server. Each server samples its heap and RSS every %v. The probe is the second run again "+
		"in a fresh server that also reads each socket's kernel send-side memory every %v: that costs the server a syscall pair per socket "+
		"(about 15 ms of its processor per sample for 2,000 sockets), which the control run would not pay, so the time ratio is taken from the "+
		"second run and the kernel figures from the probe.\n\n",
		s.Stalled, rep.cfg.stalledRcvbuf, held, s.Fast, where, s.Fast, s.Msgs, s.Size, s.Fast, rep.cfg.sampleEvery, rep.cfg.kernelEvery)
	if s.Failed != "" {
		fmt.Fprintf(&b, "**stalled scenario failed:** %s\n\n", s.Failed)
	}
	if len(s.Runs) > 0 {
		fmt.Fprintf(&b, "%s\n\n", s.pairsLine())
	}
	b.WriteString(s.floorLine())
	runs := s.runs()
	fmt.Fprintf(&b, "| metric | control: %d fast readers (median run) | %d stalled + %d fast readers (median run) | probe: the same, kernel sampled |\n|---|---:|---:|---:|\n", s.Fast, s.Stalled, s.Fast)
	row := func(name string, f func(r *stalledRun) string) {
		b.WriteString("| " + name + " |")
		for _, r := range runs {
			if r == nil {
				b.WriteString(" — |")
			} else {
				b.WriteString(" " + f(r) + " |")
			}
		}
		b.WriteString("\n")
	}
	secs := func(v float64) string {
		if v < 0 {
			return "—"
		}
		return fmt.Sprintf("%.3f s", v)
	}
	row("fast readers' messages delivered", func(r *stalledRun) string {
		return fmt.Sprintf("%d / %d (%.1f%%)", r.Delivered, r.Expected, 100*float64(r.Delivered)/float64(max(r.Expected, 1)))
	})
	row("fewest delivered to one fast reader", func(r *stalledRun) string { return fmt.Sprint(r.MinReader) })
	row("messages out of order / malformed", func(r *stalledRun) string { return fmt.Sprintf("%d / %d", r.OutOfOrder, r.Malformed) })
	row("fast readers closed by the server (count × code)", func(r *stalledRun) string { return r.closedStr() })
	row("first broadcast → last fast-reader delivery", func(r *stalledRun) string { return secs(r.FastSecs) })
	row("server's broadcast loop", func(r *stalledRun) string { return secs(r.LoopSecs) })
	row("slow-consumer closes (server counter)", func(r *stalledRun) string { return fmt.Sprint(r.Kicked) })
	row("… first / last seen after the first broadcast", func(r *stalledRun) string { return secs(r.FirstKick) + " / " + secs(r.LastKick) })
	row("server CPU (user+sys) over the run", func(r *stalledRun) string { return secs(r.ServerCPU) })
	row("peak Go heap (objects, live and unswept)", func(r *stalledRun) string { return mib(r.Peak.Heap) })
	row("peak live heap (marked by the last GC)", func(r *stalledRun) string { return mib(r.Peak.Live) })
	row("peak RSS", func(r *stalledRun) string { return mib(r.Peak.RSS) })
	row("peak kernel send-side memory of the server's sockets (Σ wmem_queued)", func(r *stalledRun) string { return mib(r.Peak.Queued) })
	row("… of which bytes not yet acknowledged (Σ SIOCOUTQ)", func(r *stalledRun) string { return mib(r.Peak.Outq) })
	row("largest one socket: wmem_queued / send buffer", func(r *stalledRun) string {
		return kib(r.Peak.MaxQueued) + " / " + kib(r.Peak.MaxSndbuf)
	})
	row("machine's TCP memory (sockstat): before → peak", func(r *stalledRun) string {
		return pages(r.Before.TCPPages) + " → " + pages(r.Peak.TCPPages)
	})
	if len(s.TCPMem) == 3 {
		fmt.Fprintf(&b, "\nnet.ipv4.tcp_mem is %s / %s / %s (low / pressure / high): above \"pressure\" the kernel throttles the send buffers of every TCP socket on the machine.\n",
			pages(s.TCPMem[0]), pages(s.TCPMem[1]), pages(s.TCPMem[2]))
	}
	b.WriteString("\nKernel memory: the server records every socket it accepts (a listener that passes the *net.TCPConn on unchanged) " +
		"and sums, for those still open, SK_MEMINFO_WMEM_QUEUED (getsockopt SO_MEMINFO: the write queue's memory with its buffer " +
		"overhead, `ss -m`'s \"w\") and SIOCOUTQ (payload bytes not yet acknowledged). That memory is outside the process's RSS. " +
		"The sockstat figure is machine-wide (every process's TCP sockets, both directions).\n")
	b.WriteString(stalledTargets(s))
	return b.String()
}

// pairsLine sums up the alternated pairs: first broadcast → last
// fast-reader delivery in each, and each pair's ratio.
func (s *stalledResult) pairsLine() string {
	secs := func(runs []*stalledRun) []float64 { // of the runs that delivered something
		var v []float64
		for _, r := range runs {
			if r.FastSecs >= 0 {
				v = append(v, r.FastSecs)
			}
		}
		return v
	}
	span := func(v []float64) string {
		if len(v) == 0 {
			return "—"
		}
		return fmt.Sprintf("%.3f–%.3f s", slices.Min(v), slices.Max(v))
	}
	var ratios []float64
	met := 0
	for i := range min(len(s.Controls), len(s.Runs)) {
		if c, r := s.Controls[i].FastSecs, s.Runs[i].FastSecs; c > 0 && r > 0 {
			ratios = append(ratios, r/c)
			if r <= 3*c {
				met++
			}
		}
	}
	pairs := "—"
	if len(ratios) > 0 {
		pairs = fmt.Sprintf("%.1f–%.1f×, within 3× in %d of %d", slices.Min(ratios), slices.Max(ratios), met, len(ratios))
	}
	return fmt.Sprintf("%d alternated pairs: control %s, with the stalled peers %s (first broadcast → last fast-reader delivery); pair by pair %s. The columns below are each side's median run.",
		len(s.Runs), span(secs(s.Controls)), span(secs(s.Runs)), pairs)
}

// floorLine reports the floor and the best ratio it leaves.
func (s *stalledResult) floorLine() string {
	if s.FloorErr != "" {
		return fmt.Sprintf("**Floor not measured:** %s\n\n", s.FloorErr)
	}
	f := s.Floor
	if f == nil {
		return ""
	}
	line := fmt.Sprintf("Floor: a gobwas-raw server took the same clients and wrote %d × %d KiB to each stalled socket, non-blocking, stopping at the first EAGAIN, "+
		"with wsroom's default SO_SNDBUF (%d KiB) and TCP_NOTSENT_LOWAT (%d KiB), as a wsroom writer's first flush does: %s. "+
		"On loopback the writer's CPU also runs the receiving side",
		floorWrites, floorWrite>>10, wsroom.DefaultSendBuffer>>10, wsroom.DefaultSendBufferUnsent>>10, f.summary())
	if f.Poll {
		line += ", and wakes the load generator's poller thread on the other CPU for the deliveries into its polled stalled sockets"
	}
	line += "."
	if s.Control != nil && s.Control.FastSecs > 0 {
		line += fmt.Sprintf(" Added to the control's median run (%.3f s), it alone makes %.1f×: no server can do better here.", s.Control.FastSecs, f.best(s.Control.FastSecs))
	}
	return line + "\n\n"
}

// stalledTargets checks issue 11's targets on the run with stalled
// connections.
func stalledTargets(s *stalledResult) string {
	r, c := s.Run, s.Control
	if r == nil || c == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n| target (issue 11) | measured | status |\n|---|---|---|\n")
	line := func(target, measured string, ok bool) {
		st := "**NOT met**"
		if ok {
			st = "met"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", target, measured, st)
	}
	// Delivery and closes are judged on every run with stalled peers (the
	// pairs' and the probe), shown for the median run and the probe.
	both := []*stalledRun{r}
	if s.Probe != nil {
		both = append(both, s.Probe)
	}
	for _, x := range s.Runs {
		if x.Delivered != x.Expected || x.OutOfOrder != 0 || x.Malformed != 0 || x.fastClosed() != 0 {
			both = append(both, x) // a failing pair shows too
		}
	}
	delivered, closed := make([]string, len(both)), make([]string, len(both))
	allIn, noneClosed := true, true
	for i, x := range both {
		delivered[i] = fmt.Sprintf("%.1f%% delivered, %d out of order", 100*float64(x.Delivered)/float64(max(x.Expected, 1)), x.OutOfOrder)
		closed[i] = x.closedStr()
		allIn = allIn && x.Delivered == x.Expected && x.OutOfOrder == 0 && x.Malformed == 0
		noneClosed = noneClosed && x.fastClosed() == 0
	}
	line(fmt.Sprintf("every fast reader receives all %d messages, in order", s.Msgs), strings.Join(delivered, "; probe: "), allIn)
	line("no fast reader is closed", strings.Join(closed, "; probe: "), noneClosed)
	ratio := "—"
	if c.FastSecs > 0 && r.FastSecs > 0 {
		ratio = fmt.Sprintf("%.1f× (%.3f s vs %.3f s, the medians of %d alternated pairs)", r.FastSecs/c.FastSecs, r.FastSecs, c.FastSecs, len(s.Runs))
	}
	controlsOK := true
	for _, x := range s.Controls {
		controlsOK = controlsOK && x.complete()
	}
	if s.Floor != nil && c.FastSecs > 0 {
		ratio += fmt.Sprintf("; the kernel's floor alone: %.1f×", s.Floor.best(c.FastSecs))
	}
	line("the fast readers finish within 3× of the control run", ratio, controlsOK && r.complete() && r.FastSecs <= 3*c.FastSecs)
	stalledKicked := r.Kicked - r.fastKicked()
	measured := fmt.Sprintf("%d of %d (server counter minus fast readers closed 1008)", stalledKicked, s.Stalled)
	if burst := int64(s.Msgs) * int64(s.Size); stalledKicked == 0 && burst < stalledFits {
		fmt.Fprintf(&b, "| the stalled connections are closed 1008 and counted | %s | n/a: the burst (%s per connection) fits in a stalled socket's kernel buffer and the default queue |\n",
			measured, mib(burst))
	} else {
		line("the stalled connections are closed 1008 and counted", measured, stalledKicked == int64(s.Stalled))
	}
	return b.String()
}

// stalledFits is what a stalled connection may hold without being closed
// with default Options: its queue (SendQueueBytes) and its kernel send
// buffer (Linux doubles SendBuffer, and a socket whose peer reads nothing
// never grows it).
const stalledFits = wsroom.DefaultSendQueueBytes + 2*wsroom.DefaultSendBuffer

// pages formats a count of memory pages as MiB.
func pages(n int64) string {
	if n < 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)*float64(os.Getpagesize())/(1<<20))
}

// setRcvBuf is a Dialer.Control function that binds without a port (see
// sysstat.BindNoPort) and sets SO_RCVBUF before connect, so that the
// receive window the client advertises from its first segment on stays
// small.
func setRcvBuf(size int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if err := sysstat.BindNoPort(network, address, c); err != nil {
			return err
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
