package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/wsroom/wsroom/internal/sysstat"
)

// config selects servers, scenarios and sizes.
type config struct {
	servers     []string
	scenarios   map[string]bool // idle, fanout, latency, sendto, soak, compress
	small       int             // fan-out and SendTo at 1k
	mid         int             // idle, fan-out, latency, SendTo, handshakes at 10k
	large       int             // idle and SendTo at 19.5k
	dur         time.Duration   // publishing time of each fan-out and SendTo run
	latRate     float64         // deliveries/s of the latency run
	latDur      time.Duration
	parallel    int // concurrent dialers
	sources     int // 127.0.0.x source addresses
	serverCPU   int // -1 = unpinned
	clientCPU   int // -1 = unpinned
	serverProcs int
	soak        time.Duration
	soakServers []string
	soakConns   int
	stall       time.Duration // a run with no progress for this long has lost messages

	compressServers []string      // servers of the compression scenario (compressServers)
	inflateEvery    int           // clients check one JSON message in this many per connection
	compressSettle  time.Duration // rest after a burst before measuring idle memory again (compress and soak)

	stalled       int           // stalled scenario: connections that never read
	fast          int           // … fast readers
	stalledMsgs   int           // … messages broadcast back to back
	stalledSize   int           // … their size
	stalledRcvbuf int           // … SO_RCVBUF of the stalled sockets
	stalledPoll   bool          // … the stalled sockets stay in the load generator's poller
	stalledRooms  int           // … rooms every connection is in (roomsEnv)
	stalledRuns   int           // … alternated pairs of control and stalled runs
	sampleEvery   time.Duration // … the server samples heap and RSS this often
	kernelEvery   time.Duration // … and its sockets' kernel memory this often
}

// loadResult is one fan-out or SendTo run.
type loadResult struct {
	Messages   int     // messages published (broadcasts or SendTo calls)
	Expected   int64   // deliveries expected
	Deliveries int64   // deliveries received
	Secs       float64 // first publish to last receipt
	PerSec     float64 // deliveries/s (fan-out) or messages/s (SendTo)
	CPUMicros  float64 // server CPU per delivery, µs
	Kicked     int64   // connections the server closed (client-observed)
	Dropped    int64   // messages the server dropped (melody's full buffer)
	Merged     int64   // frames carrying several messages
	NetDrops   int64   // packets the kernel dropped machine-wide during the run (softnet backlog)
	ServerUtil float64 // server CPU time / wall time over the run
	ClientUtil float64 // load generator CPU time / wall time over the run
	Foreign    float64 // CPU time used on the measured CPUs outside the two processes / wall time

	WirePerDelivery float64 // bytes of data frames (headers included) received per delivery
	Compressed      int64   `json:",omitempty"` // deliveries received compressed (RSV1)
	Verified        int64   `json:",omitempty"` // JSON deliveries checked (length and CRC-32, inflated if compressed)
	Err             string  `json:",omitempty"`
}

type idleResult struct {
	Conns           int
	RSSKiBPerConn   float64
	HeapPerConn     float64 // bytes
	GoroutinePerCon float64
}

type soakResult struct {
	Conns   int
	Idle    time.Duration
	Samples []soakSample // start, each quarter of the idle time, after the burst
	Burst   loadResult
}

type soakSample struct {
	When  string
	Stats serverStats
}

// result collects every measurement of one server.
type result struct {
	Server     string
	Idle       []idleResult
	Fanout     map[int]loadResult
	SendTo     map[int]loadResult
	P50, P99   time.Duration
	LatMax     time.Duration
	LatSamples int64
	LatErr     string  `json:",omitempty"`
	Handshakes float64 // per second, while opening the mid-size set
	HSDrops    int64   // softnet drops while opening it
	LatDrops   int64   // softnet drops during the latency run
	LatKicked  int64   // connections closed by the server during the latency run
	Soak       *soakResult
	Failed     string `json:",omitempty"`
}

// busyMicros is the busy time of the CPUs the server and the client run
// on (the whole machine unless both are pinned).
func (c *config) busyMicros() int64 {
	if c.serverCPU < 0 || c.clientCPU < 0 {
		return sysstat.CPUBusyMicros(-1)
	}
	if c.serverCPU == c.clientCPU {
		return sysstat.CPUBusyMicros(c.serverCPU)
	}
	return sysstat.CPUBusyMicros(c.serverCPU) + sysstat.CPUBusyMicros(c.clientCPU)
}

func (c *config) any(names ...string) bool {
	for _, n := range names {
		if c.scenarios[n] {
			return true
		}
	}
	return false
}

// runServer runs every selected scenario against one server, each size
// in a fresh server process.
func runServer(ctx context.Context, c *config, name string) (*result, error) {
	r := &result{Server: name, Fanout: map[int]loadResult{}, SendTo: map[int]loadResult{}}
	if c.any("fanout", "sendto") {
		err := withServer(ctx, c, name, c.small, loadOpts{}, func(p *phase) error {
			p.fanoutStep(c, r, 16, 64)
			p.sendToStep(c, r)
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	if c.any("idle", "fanout", "latency", "sendto") {
		err := withServer(ctx, c, name, c.mid, loadOpts{}, func(p *phase) error {
			r.Handshakes, r.HSDrops = float64(c.mid)/p.connectTime.Seconds(), p.connectDrops
			log.Printf("%s: %d handshakes in %v: %.0f/s (kernel drops %d)", name, c.mid, p.connectTime.Round(time.Millisecond), r.Handshakes, r.HSDrops)
			if err := p.idleStep(c, r); err != nil {
				return err
			}
			p.fanoutStep(c, r, 4, 16)
			if c.scenarios["latency"] {
				p.latency(c, r)
				log.Printf("%s: latency at %d subs, %.0f deliveries/s: p50 %v p99 %v max %v (%d samples, kernel drops %d) %s",
					name, c.mid, c.latRate, r.P50, r.P99, r.LatMax, r.LatSamples, r.LatDrops, r.LatErr)
			}
			p.sendToStep(c, r)
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	if c.any("idle", "sendto") {
		err := withServer(ctx, c, name, c.large, loadOpts{}, func(p *phase) error {
			if err := p.idleStep(c, r); err != nil {
				return err
			}
			p.sendToStep(c, r)
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	if c.scenarios["soak"] && contains(c.soakServers, name) {
		err := withServer(ctx, c, name, c.soakConns, loadOpts{}, func(p *phase) error {
			s, err := p.soak(c)
			r.Soak = s
			return err
		})
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

// idleStep records idle memory and goroutines if the idle scenario is on.
func (p *phase) idleStep(c *config, r *result) error {
	if !c.scenarios["idle"] {
		return nil
	}
	ir, err := p.idle()
	if err != nil {
		return err
	}
	r.Idle = append(r.Idle, ir)
	log.Printf("%s: idle at %d: %.2f KiB/conn, %.2f goroutines/conn", r.Server, ir.Conns, ir.RSSKiBPerConn, ir.GoroutinePerCon)
	return nil
}

// fanoutStep runs the fan-out if that scenario is on.
func (p *phase) fanoutStep(c *config, r *result, chunk, window int) {
	if c.scenarios["fanout"] {
		r.Fanout[p.n] = p.fanout(c, chunk, window)
		log.Printf("%s: fan-out %d subs: %s", r.Server, p.n, fmtLoad(r.Fanout[p.n]))
	}
}

// sendToStep runs SendTo if that scenario is on.
func (p *phase) sendToStep(c *config, r *result) {
	if c.scenarios["sendto"] {
		r.SendTo[p.n] = p.sendTo(c)
		log.Printf("%s: SendTo among %d: %s", r.Server, p.n, fmtLoad(r.SendTo[p.n]))
	}
}

// phase is one server process with n connected, registered clients.
type phase struct {
	ctx          context.Context
	srv          *serverProc
	l            *loader
	n            int
	base         serverStats // before any connection, after GC
	connectTime  time.Duration
	connectDrops int64
}

// withServer starts the named server, connects n clients with the given
// options and runs f.
func withServer(ctx context.Context, c *config, name string, n int, opts loadOpts, f func(*phase) error) error {
	srv, err := startServer(name, c.serverCPU, c.serverProcs)
	if err != nil {
		return err
	}
	defer srv.stop()
	p := &phase{ctx: ctx, srv: srv, n: n, l: newLoader(srv.addr, c.sources, opts)}
	defer p.l.close()
	if p.base, err = srv.ctl.stats(ctx, true); err != nil {
		return err
	}
	drops0 := sysstat.SoftnetDrops()
	p.connectTime, err = p.l.connect(0, n, c.parallel)
	p.connectDrops = sysstat.SoftnetDrops() - drops0
	if err != nil {
		return fmt.Errorf("%s: connect %d: %w", name, n, err)
	}
	if err := waitServer(ctx, srv.ctl, n); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return f(p)
}

// idle measures memory and goroutines per connection against the
// baseline taken before the first connection, both after GC and
// FreeOSMemory.
func (p *phase) idle() (idleResult, error) {
	time.Sleep(500 * time.Millisecond) // let handshake garbage become collectable
	st, err := p.srv.ctl.stats(p.ctx, true)
	if err != nil {
		return idleResult{}, err
	}
	n := float64(p.n)
	return idleResult{
		Conns:           p.n,
		RSSKiBPerConn:   float64(st.RSSKiB-p.base.RSSKiB) / n,
		HeapPerConn:     (float64(st.HeapInuse+st.StackInuse) - float64(p.base.HeapInuse+p.base.StackInuse)) / n,
		GoroutinePerCon: float64(st.Goroutines-p.base.Goroutines) / n,
	}, nil
}

// fanout publishes to the room for c.dur in chunks of `chunk` broadcasts,
// keeping at most `window` broadcasts in flight (not yet received by every
// client), below the 256-message buffers of gorilla and melody.
func (p *phase) fanout(c *config, chunk, window int) loadResult {
	return p.load(c, nil, nil, chunk, window)
}

// sendTo sends to 10 users (20 connections) spread over the connection set.
func (p *phase) sendTo(c *config) loadResult {
	users := make([]string, 0, 10)
	seen := map[string]bool{}
	for j := range 10 {
		u := userOf(2 * (j * (p.n / 2) / 10))
		if !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	}
	var idx []int
	for i := range p.n {
		if seen[userOf(i)] {
			idx = append(idx, i)
		}
	}
	per := len(idx)
	r := p.load(c, idx, users, 96, 192)
	if r.Secs > 0 {
		r.PerSec = float64(r.Deliveries) / float64(per) / r.Secs // messages (SendTo calls) per second
	}
	return r
}

// load publishes for c.dur in chunks of `chunk` messages to the room, or
// to users, and waits before each chunk until every receiving connection
// (idx; nil = all) is at most `window` messages behind once it is sent:
// a window on totals would let one slow connection fall arbitrarily far
// behind.
func (p *phase) load(c *config, idx []int, users []string, chunk, win int) loadResult {
	l, ctl := p.l, p.srv.ctl
	win = window(p.srv.name, win)
	chunk = min(chunk, win)
	per := p.n
	if idx != nil {
		per = len(idx)
	}
	each := l.snapshot(idx)
	var r loadResult
	before, err := ctl.stats(p.ctx, false)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	base, closed0, merged0 := l.recv.Load(), l.closed.Load(), l.merged.Load()
	wire0, z0, verified0 := l.wire.Load(), l.compressed.Load(), l.verified.Load()
	start, selfCPU, drops0 := time.Now(), sysstat.CPUMicros(), sysstat.SoftnetDrops()
	busy0 := c.busyMicros()
	for r.Messages == 0 || time.Since(start) < c.dur {
		if need := int64(r.Messages + chunk - win); need > 0 {
			if err := l.waitEach(idx, each, need, c.stall); err != nil {
				r.Err = err.Error()
				break
			}
		}
		if err := ctl.publish(p.ctx, chunk, 0, users, l.opts.json); err != nil {
			r.Err = err.Error()
			break
		}
		r.Messages += chunk
	}
	r.Expected = int64(r.Messages) * int64(per)
	end, err := l.waitRecv(base+r.Expected, c.stall)
	if err != nil && r.Err == "" {
		r.Err = err.Error()
	}
	after, err := ctl.stats(p.ctx, false)
	if err != nil && r.Err == "" {
		r.Err = err.Error()
	}
	r.NetDrops = sysstat.SoftnetDrops() - drops0
	wall := float64(time.Since(start).Microseconds())
	r.ServerUtil = float64(after.CPUMicros-before.CPUMicros) / wall
	r.ClientUtil = float64(sysstat.CPUMicros()-selfCPU) / wall
	r.Foreign = max(0, float64(c.busyMicros()-busy0-(after.CPUMicros-before.CPUMicros)-(sysstat.CPUMicros()-selfCPU))/wall)
	r.Deliveries = l.recv.Load() - base
	r.Secs = end.Sub(start).Seconds()
	if r.Secs > 0 {
		r.PerSec = float64(r.Deliveries) / r.Secs
	}
	if r.Deliveries > 0 {
		r.CPUMicros = float64(after.CPUMicros-before.CPUMicros) / float64(r.Deliveries)
	}
	if r.Err != "" {
		r.Err += fmt.Sprintf(" (server: %d conns, %d published, %d kicked, %d dropped; client: %d frames, %d malformed)",
			after.Conns, after.Published, after.Kicked, after.Dropped, l.frames.Load(), l.bad.Load())
	}
	r.Kicked = l.closed.Load() - closed0
	r.Dropped = after.Dropped - before.Dropped
	r.Merged = l.merged.Load() - merged0
	r.Compressed, r.Verified = l.compressed.Load()-z0, l.verified.Load()-verified0
	if r.Deliveries > 0 {
		r.WirePerDelivery = float64(l.wire.Load()-wire0) / float64(r.Deliveries)
	}
	return r
}

// latency publishes to the room at c.latRate deliveries per second for
// c.latDur and records publish-to-receive time of every delivery.
func (p *phase) latency(c *config, r *result) {
	l := p.l
	rate := c.latRate / float64(p.n) // broadcasts per second
	n := max(int(rate*c.latDur.Seconds()), 2)
	l.lat.reset()
	l.latOn.Store(true)
	drops0, closed0 := sysstat.SoftnetDrops(), l.closed.Load()
	defer func() { r.LatDrops, r.LatKicked = sysstat.SoftnetDrops()-drops0, l.closed.Load()-closed0 }()
	base := l.recv.Load()
	err := p.srv.ctl.publish(p.ctx, n, rate, nil, false)
	if err == nil {
		_, err = l.waitRecv(base+int64(n)*int64(p.n), c.stall)
	}
	l.latOn.Store(false)
	if err != nil {
		r.LatErr = err.Error()
	}
	r.P50, r.P99, r.LatMax = l.lat.quantile(0.5), l.lat.quantile(0.99), l.lat.quantile(1)
	r.LatSamples = l.lat.total()
}

// soak holds the connections idle for c.soak, sampling server stats
// (after GC) at the start and every quarter of it, then publishes a burst
// of 20 broadcasts and samples again.
func (p *phase) soak(c *config) (*soakResult, error) {
	s := &soakResult{Conns: p.n, Idle: c.soak}
	sample := func(when string) error {
		st, err := p.srv.ctl.stats(p.ctx, true)
		s.Samples = append(s.Samples, soakSample{When: when, Stats: st})
		return err
	}
	if err := sample("start"); err != nil {
		return s, err
	}
	log.Printf("%s: soak: %d connections idle for %v", p.srv.name, p.n, c.soak)
	for q := 1; q <= 4; q++ {
		select {
		case <-time.After(c.soak / 4):
		case <-p.ctx.Done():
			return s, p.ctx.Err()
		}
		if err := sample(fmt.Sprintf("idle %v", c.soak*time.Duration(q)/4)); err != nil {
			return s, err
		}
	}
	burst := *c
	burst.dur = 0
	s.Burst = p.load(&burst, nil, nil, 20, 20)
	// Let idle workers exit (wsroom's poller keeps a worker for 1 s after
	// its last task) before judging what the burst left behind: after the
	// settle time, sample again every 100 ms while the server has more
	// goroutines than at the start, for up to workerLinger more. A leak
	// stays; a worker winding down does not.
	burstEnd := time.Now()
	time.Sleep(c.compressSettle)
	settled := time.Now().Add(workerLinger)
	for {
		st, err := p.srv.ctl.stats(p.ctx, true)
		if err != nil {
			return s, err
		}
		if st.Goroutines <= s.Samples[0].Stats.Goroutines || time.Now().After(settled) {
			s.Samples = append(s.Samples, soakSample{When: fmt.Sprintf("after burst (+%v)", time.Since(burstEnd).Round(10*time.Millisecond)), Stats: st})
			break
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-p.ctx.Done():
			return s, p.ctx.Err()
		}
	}
	log.Printf("%s: soak: %s; burst %s", p.srv.name, s.verdict(), fmtLoad(s.Burst))
	return s, nil
}

// workerLinger bounds the soak's wait, after its settle time, for the
// server's goroutines to come back to their number at the start: wsroom's
// poller keeps an idle worker for 1 s.
const workerLinger = 3 * time.Second

// verdict says whether anything grew: goroutines and connections must be
// what they were at the start, and RSS at the end of the idle time within
// 10% of RSS halfway through (after the first heartbeat rounds, which
// every connection's first ping and pong warm up).
func (s *soakResult) verdict() string {
	if len(s.Samples) < 6 {
		return "incomplete"
	}
	first, half, idleEnd, last := s.Samples[0].Stats, s.Samples[2].Stats, s.Samples[4].Stats, s.Samples[5].Stats
	grew := last.Goroutines != first.Goroutines || last.Conns != first.Conns ||
		float64(idleEnd.RSSKiB) > 1.1*float64(half.RSSKiB)
	v := fmt.Sprintf("goroutines %d→%d, connections %d→%d, RSS %d→%d KiB halfway→end of idle (%+.0f%% from the start)",
		first.Goroutines, last.Goroutines, first.Conns, last.Conns, half.RSSKiB, idleEnd.RSSKiB,
		100*(float64(idleEnd.RSSKiB)/float64(first.RSSKiB)-1))
	if grew {
		return "**something grew or connections were lost**: " + v
	}
	return "nothing grew: " + v
}

func fmtLoad(r loadResult) string {
	s := fmt.Sprintf("%d msgs, %d/%d deliveries in %.2fs: %.0f/s, %.2f µs CPU/delivery, kicked %d, dropped %d, merged frames %d, CPU use server %.0f%% client %.0f%% others %.0f%%, kernel drops %d",
		r.Messages, r.Deliveries, r.Expected, r.Secs, r.PerSec, r.CPUMicros, r.Kicked, r.Dropped, r.Merged,
		100*r.ServerUtil, 100*r.ClientUtil, 100*r.Foreign, r.NetDrops)
	if r.Compressed > 0 || r.Verified > 0 {
		s += fmt.Sprintf(", %.0f wire bytes/delivery, %d compressed, %d checked", r.WirePerDelivery, r.Compressed, r.Verified)
	}
	if r.Err != "" {
		s += " ERROR: " + r.Err
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
