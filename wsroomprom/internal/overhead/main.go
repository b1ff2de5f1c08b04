// Command overhead measures what the Prometheus exporter costs a busy
// server: server CPU per delivery while the room of -subs subscribers
// gets a steady stream of broadcasts, in phases without and with
// /metrics being scraped every -scrape (1 s by default, far more often
// than Prometheus' usual 15–60 s, to exaggerate), alternated A B A B …
// in one run so that the machine's noise falls on both alike.
//
//	cd wsroomprom && go run ./internal/overhead                 # 10k subscribers, A B A B, 5 s phases
//	go run ./internal/overhead -subs 2000 -phase 2s -rounds 3
//	go run ./internal/overhead -pattern ABBA                    # cancels a drift that is linear in time
//	go run ./internal/overhead -pattern AA                      # a control: the spread of unscraped phases
//
// The server runs in a child process (this binary, re-executed with
// OVERHEAD_SERVE=1): a wsroom.Hub with default Options but no pings, every
// connection in room "r", the wsroomprom Collector registered and
// /metrics served beside the WebSocket endpoint. The collector is
// installed in every phase; without scrapes it runs no code at all, so
// phase A is also the cost of a server with no exporter. The parent opens
// the subscribers (raw sockets, one goroutine each, counting every
// message), asks the server to broadcast 64-byte messages in chunks while
// every subscriber is at most -window messages behind, and scrapes. Server
// CPU is the child's getrusage (user + system) over the phase; each phase
// ends when every message it published has been read, and its deliveries
// are the messages the subscribers read (checked against the hub's
// MessagesOut).
//
// Like bench/, the server is pinned to CPU 0 and the load generator to
// CPU 1, each with GOMAXPROCS=1 (-server-cpu/-client-cpu -1 to leave them
// free). Each phase also reports the server's garbage collections and
// allocation. CPU per delivery falls as throughput rises (more messages
// per write), so on a busy machine phases of the same kind differ by more
// than the exporter costs: the report gives the spread of each kind, and
// -pattern AA measures it alone. After the phases the tool measures one
// scrape directly, the server's CPU over -scrapes back-to-back scrapes
// with no traffic, and what that costs per delivery at the run's rate.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/rawws"
	"github.com/wsroom/wsroom/internal/sysstat"
	"github.com/wsroom/wsroom/wsroomprom"
)

const serveEnv = "OVERHEAD_SERVE"

func main() {
	if os.Getenv(serveEnv) != "" {
		if err := serve(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "overhead server:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := run(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

// config is the run's settings (see parseFlags).
type config struct {
	subs, rounds, size, window, scrapes int
	pattern                             string // A: no scrapes, B: scraped; repeated rounds times
	phase, scrapeEvery                  time.Duration
	serverCPU, clientCPU, sources       int
	exe                                 string // the server binary: this one
	env                                 []string
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("overhead", flag.ContinueOnError)
	c := config{}
	fs.IntVar(&c.subs, "subs", 10000, "subscribers (connections in the room)")
	fs.IntVar(&c.rounds, "rounds", 2, "how many times the phases of -pattern run")
	fs.StringVar(&c.pattern, "pattern", "AB", "phases of a round: A (no scrapes) and B (scraped), e.g. AB, ABBA, AA")
	fs.DurationVar(&c.phase, "phase", 5*time.Second, "publishing time of each phase")
	fs.DurationVar(&c.scrapeEvery, "scrape", time.Second, "scrape interval in B phases")
	fs.IntVar(&c.size, "size", 64, "message payload bytes")
	fs.IntVar(&c.window, "window", 16, "most messages a subscriber may be behind")
	fs.IntVar(&c.scrapes, "scrapes", 20, "back-to-back scrapes with no traffic for the per-scrape cost")
	fs.IntVar(&c.serverCPU, "server-cpu", 0, "CPU the server is pinned to (-1: not pinned)")
	fs.IntVar(&c.clientCPU, "client-cpu", 1, "CPU the load generator is pinned to (-1: not pinned)")
	fs.IntVar(&c.sources, "sources", 4, "source addresses 127.0.0.2… the subscribers connect from")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.subs < 1 || c.rounds < 1 || c.window < 2 || c.size < 1 || c.sources < 1 || c.sources > 200 {
		return c, errors.New("overhead: -subs, -rounds, -size, -sources must be positive (sources ≤ 200), -window at least 2")
	}
	if c.pattern == "" || strings.Trim(c.pattern, "AB") != "" {
		return c, errors.New("overhead: -pattern is a string of A (no scrapes) and B (scraped)")
	}
	exe, err := os.Executable()
	if err != nil {
		return c, err
	}
	c.exe, c.env = exe, os.Environ()
	return c, nil
}

// ---- the server (child process) ----

// serve runs the hub, the exporter and the control endpoints on a
// loopback port it prints as "addr HOST:PORT", until /ctl/quit.
func serve(out io.Writer) error {
	if _, err := sysstat.RaiseNoFile(); err != nil {
		return err
	}
	if cpu, _ := strconv.Atoi(os.Getenv("OVERHEAD_CPU")); os.Getenv("OVERHEAD_CPU") != "" && cpu >= 0 {
		if err := sysstat.PinToCPU(cpu); err != nil {
			return err
		}
	}
	size, _ := strconv.Atoi(os.Getenv("OVERHEAD_SIZE"))
	hub := wsroom.New(wsroom.Options{
		OnConnect:    func(c *wsroom.Conn, _ *http.Request) error { return c.Join("r") },
		PingInterval: -1,
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(wsroomprom.NewCollector(hub, wsroomprom.Options{}))
	quit := make(chan struct{})
	var quitOnce sync.Once
	payload := make([]byte, max(size, 1))
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /ctl/publish", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		room := hub.Room("r")
		for range n {
			if err := room.Broadcast(wsroom.Binary(payload)); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
	})
	mux.HandleFunc("GET /ctl/stats", func(w http.ResponseWriter, r *http.Request) {
		st := hub.Stats()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		json.NewEncoder(w).Encode(serverStats{CPUMicros: sysstat.CPUMicros(), Connections: st.Connections, MessagesOut: st.MessagesOut, SlowConsumers: st.SlowConsumerCloses,
			GCs: ms.NumGC, Alloc: ms.TotalAlloc, HeapLive: ms.HeapAlloc})
	})
	mux.HandleFunc("POST /ctl/quit", func(w http.ResponseWriter, r *http.Request) {
		quitOnce.Do(func() { close(quit) })
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintln(out, "addr", ln.Addr())
	select {
	case <-quit:
	case err := <-served:
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	hub.Shutdown(ctx)
	return srv.Shutdown(ctx)
}

// serverStats is the answer of /ctl/stats.
type serverStats struct {
	CPUMicros     int64  `json:"cpu_us"`
	Connections   int    `json:"connections"`
	MessagesOut   uint64 `json:"messages_out"`
	SlowConsumers uint64 `json:"slow_consumers"`
	GCs           uint32 `json:"gcs"`       // garbage collections so far
	Alloc         uint64 `json:"alloc"`     // bytes allocated so far
	HeapLive      uint64 `json:"heap_live"` // bytes of live heap (and garbage not yet collected)
}

// ---- the load generator (parent) ----

// phase is one measured phase.
type phase struct {
	scraped    bool
	wall       time.Duration
	deliveries uint64 // read by the subscribers
	sent       uint64 // the hub's MessagesOut over the phase
	cpuMicros  int64  // the server's
	scrapes    int
	gcs        uint32 // the server's garbage collections
	alloc      uint64 // bytes the server allocated
}

func (p phase) perDelivery() float64 { return float64(p.cpuMicros) / float64(p.deliveries) }

func run(c config, out io.Writer) error {
	if _, err := sysstat.RaiseNoFile(); err != nil {
		return err
	}
	if c.clientCPU >= 0 {
		runtime.GOMAXPROCS(1)
		if err := sysstat.PinToCPU(c.clientCPU); err != nil {
			return err
		}
	}
	srv, err := startServer(c)
	if err != nil {
		return err
	}
	defer srv.stop()

	fmt.Fprintf(out, "load average before: %s\n", sysstat.LoadAvg())
	subs := &subscribers{}
	defer subs.close()
	start := time.Now()
	if err := subs.open(c, srv.addr); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d subscribers connected in %v\n", c.subs, time.Since(start).Round(time.Millisecond))
	if st, err := srv.stats(); err != nil || st.Connections != c.subs {
		return fmt.Errorf("server has %d connections (%v), want %d", st.Connections, err, c.subs)
	}

	var phases []phase
	fmt.Fprintf(out, "\n%-6s %-8s %12s %14s %10s %12s %5s %10s %6s\n", "phase", "scrapes", "deliveries", "deliveries/s", "server µs", "µs/delivery", "GCs", "alloc MB", "load")
	seen := map[byte]int{}
	for range c.rounds {
		for _, kind := range []byte(c.pattern) {
			p, err := measure(c, srv, subs, kind == 'B')
			if err != nil {
				return err
			}
			phases = append(phases, p)
			seen[kind]++
			fmt.Fprintf(out, "%-6s %-8d %12d %14.0f %10d %12.4f %5d %10.1f %6s\n", string(kind)+strconv.Itoa(seen[kind]), p.scrapes, p.deliveries,
				float64(p.deliveries)/p.wall.Seconds(), p.cpuMicros, p.perDelivery(), p.gcs, float64(p.alloc)/1e6, strings.Fields(sysstat.LoadAvg())[0])
		}
	}

	var a, b phase
	spread := map[bool][2]float64{} // min and max µs/delivery of A (false) and B (true) phases
	for _, p := range phases {
		sum := &a
		if p.scraped {
			sum = &b
		}
		sum.deliveries += p.deliveries
		sum.cpuMicros += p.cpuMicros
		sum.scrapes += p.scrapes
		sum.wall += p.wall
		mm, ok := spread[p.scraped]
		if !ok {
			mm = [2]float64{p.perDelivery(), p.perDelivery()}
		}
		spread[p.scraped] = [2]float64{min(mm[0], p.perDelivery()), max(mm[1], p.perDelivery())}
	}
	fmt.Fprintln(out)
	for _, s := range []struct {
		name string
		sum  phase
		mm   [2]float64
	}{{"A", a, spread[false]}, {"B", b, spread[true]}} {
		if s.sum.deliveries > 0 {
			fmt.Fprintf(out, "all %s: %.4f µs/delivery (phases from %.4f to %.4f: %.1f%% apart)\n", s.name, s.sum.perDelivery(), s.mm[0], s.mm[1], 100*(s.mm[1]/s.mm[0]-1))
		}
	}
	if a.deliveries > 0 && b.deliveries > 0 {
		fmt.Fprintf(out, "B/A = %.4f (%+.2f%%)\n", b.perDelivery()/a.perDelivery(), 100*(b.perDelivery()/a.perDelivery()-1))
	}

	// One scrape's cost, measured alone.
	per, alloc, err := scrapeCost(srv, c.scrapes)
	if err != nil {
		return err
	}
	all := a
	all.deliveries += b.deliveries
	all.cpuMicros += b.cpuMicros
	all.wall += b.wall
	rate := float64(all.deliveries) / all.wall.Seconds()
	fmt.Fprintf(out, "one scrape at %d connections: %.0f µs of server CPU, %.0f KB allocated (%d back-to-back scrapes, no traffic)\n", c.subs, per, alloc/1e3, c.scrapes)
	fmt.Fprintf(out, "so at %.0f deliveries/s, a scrape every %v adds %.4f µs/delivery (%.3f%% of the measured cost)\n",
		rate, c.scrapeEvery, per/c.scrapeEvery.Seconds()/rate, 100*per/c.scrapeEvery.Seconds()/rate/all.perDelivery())
	fmt.Fprintf(out, "load average after: %s\n", sysstat.LoadAvg())
	return nil
}

// measure runs one phase: broadcasts for c.phase, scraped every
// c.scrapeEvery if scraped, then waits for every message to be read.
func measure(c config, srv *server, subs *subscribers, scraped bool) (phase, error) {
	p := phase{scraped: scraped}
	before, err := srv.stats()
	if err != nil {
		return p, err
	}
	delivered0 := subs.delivered.Load()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var scrapeErr error
	if scraped {
		wg.Go(func() {
			t := time.NewTicker(c.scrapeEvery)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				if err := srv.scrape(); err != nil {
					scrapeErr = err
					return
				}
				p.scrapes++
			}
		})
	}
	start := time.Now()
	chunk := c.window / 2
	var published uint64
	for time.Since(start) < c.phase {
		behind := published*uint64(c.subs) - (subs.delivered.Load() - delivered0)
		if behind > uint64(chunk*c.subs) {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		if err := srv.publish(chunk); err != nil {
			close(stop)
			wg.Wait()
			return p, err
		}
		published += uint64(chunk)
	}
	want := published * uint64(c.subs)
	deadline := time.Now().Add(30 * time.Second)
	for subs.delivered.Load()-delivered0 < want {
		if time.Now().After(deadline) || subs.failed.Load() > 0 {
			close(stop)
			wg.Wait()
			return p, fmt.Errorf("phase: %d of %d deliveries read, %d subscribers failed", subs.delivered.Load()-delivered0, want, subs.failed.Load())
		}
		time.Sleep(100 * time.Microsecond)
	}
	p.wall = time.Since(start)
	close(stop)
	wg.Wait()
	if scrapeErr != nil {
		return p, scrapeErr
	}
	after, err := srv.stats()
	if err != nil {
		return p, err
	}
	p.deliveries = subs.delivered.Load() - delivered0
	p.sent = after.MessagesOut - before.MessagesOut
	p.cpuMicros = after.CPUMicros - before.CPUMicros
	p.gcs = after.GCs - before.GCs
	p.alloc = after.Alloc - before.Alloc
	if p.sent != p.deliveries || after.SlowConsumers != 0 || after.Connections != c.subs {
		return p, fmt.Errorf("server sent %d, subscribers read %d, %d slow consumers, %d connections", p.sent, p.deliveries, after.SlowConsumers, after.Connections)
	}
	return p, nil
}

// scrapeCost returns the server's CPU per scrape, in µs, and its
// allocation per scrape, in bytes, over n back-to-back scrapes with no
// traffic.
func scrapeCost(srv *server, n int) (float64, float64, error) {
	before, err := srv.stats()
	if err != nil {
		return 0, 0, err
	}
	for range n {
		if err := srv.scrape(); err != nil {
			return 0, 0, err
		}
	}
	after, err := srv.stats()
	if err != nil {
		return 0, 0, err
	}
	return float64(after.CPUMicros-before.CPUMicros) / float64(n), float64(after.Alloc-before.Alloc) / float64(n), nil
}

// server is the child process.
type server struct {
	cmd    *exec.Cmd
	addr   string
	client *http.Client
}

func startServer(c config) (*server, error) {
	cmd := exec.Command(c.exe, os.Args[1:]...)
	env := append([]string(nil), c.env...)
	env = append(env, serveEnv+"=1", "OVERHEAD_CPU="+strconv.Itoa(c.serverCPU), "OVERHEAD_SIZE="+strconv.Itoa(c.size))
	if c.serverCPU >= 0 {
		env = append(env, "GOMAXPROCS=1")
	}
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr ")
	if err != nil || !ok {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("server did not start: %q %v", line, err)
	}
	return &server{cmd: cmd, addr: addr, client: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

func (s *server) publish(n int) error {
	resp, err := s.client.Post(s.url("/ctl/publish?n="+strconv.Itoa(n)), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: %s", resp.Status)
	}
	return nil
}

func (s *server) stats() (serverStats, error) {
	var st serverStats
	resp, err := s.client.Get(s.url("/ctl/stats"))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// scrape fetches /metrics as Prometheus would and checks it is whole.
func (s *server) scrape() error {
	resp, err := s.client.Get(s.url("/metrics"))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "\nwsroom_connections ") {
		return fmt.Errorf("scrape: %s, %d bytes, %v", resp.Status, len(b), err)
	}
	return nil
}

// stop ends the server and waits for it.
func (s *server) stop() {
	if resp, err := s.client.Post(s.url("/ctl/quit"), "", nil); err == nil {
		resp.Body.Close()
	}
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// subscribers are the room's members, each a raw socket read by its own
// goroutine.
type subscribers struct {
	delivered atomic.Uint64 // data messages read, all subscribers together
	failed    atomic.Int64  // readers that stopped on an error
	conns     []net.Conn
	wg        sync.WaitGroup
}

// open connects c.subs subscribers, 64 handshakes at a time.
func (s *subscribers) open(c config, addr string) error {
	conns := make([]net.Conn, c.subs)
	errs := make(chan error, 64)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range c.subs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			nc, br, err := subscribe(addr, fmt.Sprintf("127.0.0.%d", 2+i%c.sources))
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			conns[i] = nc
			s.wg.Go(func() { s.read(nc, br) })
		})
	}
	wg.Wait()
	for _, nc := range conns {
		if nc != nil {
			s.conns = append(s.conns, nc)
		}
	}
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// subscribe opens one WebSocket connection from source.
func subscribe(addr, source string) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Control: sysstat.BindNoPort}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	br, _, err := rawws.Upgrade(nc, addr, "/ws", "", 2048)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, br, nil
}

// read counts the data messages of one connection until it ends. Server
// frames are never masked or fragmented here.
func (s *subscribers) read(nc net.Conn, br *bufio.Reader) {
	var h [10]byte
	for {
		if _, err := io.ReadFull(br, h[:2]); err != nil {
			s.ended(err)
			return
		}
		n := int64(h[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, h[2:4]); err != nil {
				s.ended(err)
				return
			}
			n = int64(h[2])<<8 | int64(h[3])
		case 127:
			s.ended(errors.New("unexpected 64-bit frame length"))
			return
		}
		if _, err := br.Discard(int(n)); err != nil {
			s.ended(err)
			return
		}
		switch h[0] & 0x0f {
		case 0x1, 0x2:
			s.delivered.Add(1)
		case 0x8:
			s.ended(errors.New("closed by the server"))
			return
		}
	}
}

// ended records a reader's end: an error unless the parent closed the
// connection.
func (s *subscribers) ended(err error) {
	if !errors.Is(err, net.ErrClosed) {
		s.failed.Add(1)
	}
}

// close closes every subscriber and joins the readers.
func (s *subscribers) close() {
	for _, nc := range s.conns {
		nc.Close()
	}
	s.wg.Wait()
}
