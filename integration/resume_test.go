package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/resumetest"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// The AnyCable-style test (issue 12): clients in a room with history
// receive a steady stream of broadcasts while their connections are cut
// every 2 seconds; every client must receive every message exactly once,
// in order. The clients are client/wsroom.js in Node
// (node/resume-clients.mjs, with the ws package), so the test covers the
// JavaScript client's reconnect, resume and dedupe against the hub's
// history.
//
// CI size by default: 10 clients, 200 messages/s for 16 s, cuts every 2 s.
// WSROOM_RESUME_SIZE=full runs the size (1,000 messages/s for
// 60 s) with 10 clients; WSROOM_RESUME_CLIENTS, _RATE and _SECONDS
// override each.

// resumeLoad is one run's size.
type resumeLoad struct {
	clients  int
	rate     float64 // broadcasts per second
	duration time.Duration
	cutEvery time.Duration
}

func resumeLoadFromEnv(t *testing.T) resumeLoad {
	l := resumeLoad{clients: 10, rate: 200, duration: 16 * time.Second, cutEvery: 2 * time.Second}
	if os.Getenv("WSROOM_RESUME_SIZE") == "full" {
		l.rate, l.duration = 1000, 60*time.Second
	}
	for name, dst := range map[string]*float64{"WSROOM_RESUME_RATE": &l.rate} {
		if v := os.Getenv(name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s=%q: %v", name, v, err)
			}
			*dst = f
		}
	}
	if v := os.Getenv("WSROOM_RESUME_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("WSROOM_RESUME_CLIENTS=%q: %v", v, err)
		}
		l.clients = n
	}
	if v := os.Getenv("WSROOM_RESUME_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("WSROOM_RESUME_SECONDS=%q: %v", v, err)
		}
		l.duration = time.Duration(n) * time.Second
	}
	return l
}

// startResumeServer serves a resumetest.Server on loopback, and page, if
// not empty, at /.
func startResumeServer(t *testing.T, page string) (*resumetest.Server, *httptest.Server) {
	t.Helper()
	return startResumeServerWith(t, resumetest.Config{}, page)
}

// startResumeServerWith is startResumeServer with a configuration.
func startResumeServerWith(t *testing.T, cfg resumetest.Config, page string) (*resumetest.Server, *httptest.Server) {
	t.Helper()
	s := resumetest.New(cfg)
	var h http.Handler = s.Handler()
	if page != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(page))
		})
		mux.Handle("/", h)
		h = mux
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = s.ConnContext
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	return s, srv
}

// killProxy forwards TCP connections to a backend and can kill them all
// at once: each side is reset (SO_LINGER 0, then close), as a crashing
// middlebox or a NAT that forgets the connection would leave them.
type killProxy struct {
	ln      net.Listener
	backend string
	wg      sync.WaitGroup

	mu     sync.Mutex
	pairs  map[*proxyPair]struct{}
	kills  int  // connections killed
	held   bool // new connections are reset at once (see hold)
	closed bool // the test is over: every connection is reset
}

type proxyPair struct{ client, server net.Conn }

func startKillProxy(t *testing.T, backend string) *killProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &killProxy{ln: ln, backend: backend, pairs: map[*proxyPair]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.kill()
		p.wg.Wait()
	})
	return p
}

func (p *killProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held {
			resetConns(c)
			continue
		}
		p.wg.Go(func() { p.forward(c) })
	}
}

// forward connects c to the backend and copies both ways until either
// side ends (or kill resets both).
func (p *killProxy) forward(c net.Conn) {
	s, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	pair := &proxyPair{client: c, server: s}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		resetConns(c, s)
		return
	}
	p.pairs[pair] = struct{}{}
	p.mu.Unlock()
	var copies sync.WaitGroup
	for _, dir := range [][2]net.Conn{{c, s}, {s, c}} {
		copies.Go(func() {
			io.Copy(dir[1], dir[0])
			// One direction ended: end the whole pair.
			dir[0].Close()
			dir[1].Close()
		})
	}
	copies.Wait()
	p.mu.Lock()
	delete(p.pairs, pair)
	p.mu.Unlock()
}

// kill resets every connection going through the proxy.
func (p *killProxy) kill() int {
	p.mu.Lock()
	pairs := make([]*proxyPair, 0, len(p.pairs))
	for pair := range p.pairs {
		pairs = append(pairs, pair)
		delete(p.pairs, pair)
	}
	p.kills += len(pairs)
	p.mu.Unlock()
	for _, pair := range pairs {
		resetConns(pair.client, pair.server)
	}
	return len(pairs)
}

// resetConns closes connections with a TCP reset (SO_LINGER 0).
func resetConns(conns ...net.Conn) {
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// hold makes the proxy reset every new connection at once (on), or
// forward them again (off): a network that stays down for a while.
func (p *killProxy) hold(on bool) {
	p.mu.Lock()
	p.held = on
	p.mu.Unlock()
}

func (p *killProxy) url() string { return "ws://" + p.ln.Addr().String() + "/ws" }

// resumeReport is what node/resume-clients.mjs prints at the end.
type resumeReport struct {
	Clients []struct {
		Runs       [][2]uint64    `json:"runs"`
		Lost       []string       `json:"lost"`
		Recovered  int            `json:"recovered"`
		Reconnects int            `json:"reconnects"`
		Opens      int            `json:"opens"`
		CloseCodes map[string]int `json:"closeCodes"`
	} `json:"clients"`
	ResumeMs []float64 `json:"resumeMs"`
	OpenMs   []float64 `json:"openMs"`
}

// runResumeClients starts the Node clients on urls and returns a function
// that waits for their report, and a channel closed once they have all
// joined the room.
func runResumeClients(t *testing.T, urls []string, room string, n int, last uint64, timeout time.Duration) (ready <-chan struct{}, wait func() resumeReport) {
	t.Helper()
	node := requireNodeWS(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	cmd := exec.CommandContext(ctx, node, filepath.Join("node", "resume-clients.mjs"))
	in, _ := json.Marshal(map[string]any{
		"urls": urls, "clients": n, "room": room, "last": last,
		"timeoutMs": timeout.Milliseconds(),
		"reconnect": map[string]any{"min": 50, "max": 1000, "jitter": 0.5},
	})
	cmd.Stdin = strings.NewReader(string(in))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyc := make(chan struct{})
	lines := make(chan string, 2)
	var reader sync.WaitGroup
	var waitErr error
	waitOnce := sync.OnceFunc(func() {
		reader.Wait() // all output read before Wait closes the pipe
		waitErr = cmd.Wait()
	})
	t.Cleanup(func() {
		cancel() // kills the process if it still runs
		waitOnce()
	})
	reader.Go(func() { // ends with the process's output
		defer close(lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"ready"`) {
				close(readyc)
				continue
			}
			select {
			case lines <- sc.Text():
			default: // only the report is expected
			}
		}
	})
	return readyc, func() resumeReport {
		t.Helper()
		line, ok := <-lines
		waitOnce()
		if !ok || waitErr != nil {
			t.Fatalf("%s: %v\nstderr:\n%s", cmd, waitErr, stderr.String())
		}
		var rep resumeReport
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			t.Fatalf("unreadable report %.200q: %v", line, err)
		}
		return rep
	}
}

// TestResumeUnderCuts is the AnyCable-style test on one node, with the
// connections cut by the server (both directions of the TCP connection
// shut down, no close frame) and, separately, reset by a proxy between
// the clients and the server. Through the proxy each client has two URLs
// (two proxies in front of the one node) and switches on every reconnect,
// as it will between nodes.
func TestResumeUnderCuts(t *testing.T) {
	load := resumeLoadFromEnv(t)
	for _, mode := range []string{"server-cuts", "proxy-kills"} {
		t.Run(mode, func(t *testing.T) {
			s, srv := startResumeServer(t, "")
			direct := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
			urls := []string{direct}
			var proxies []*killProxy
			if mode == "proxy-kills" {
				backend := strings.TrimPrefix(srv.URL, "http://")
				proxies = []*killProxy{startKillProxy(t, backend), startKillProxy(t, backend)}
				urls = []string{proxies[0].url(), proxies[1].url()}
			}
			cut := func() int {
				if proxies == nil {
					return s.Cut("")
				}
				return proxies[0].kill() + proxies[1].kill()
			}
			runResumeLoad(t, s, urls, load, cut)
		})
	}
	t.Run("two-nodes-redis", func(t *testing.T) {
		// Two hubs with a redisbroker over one redis-server, which keeps
		// the room's history: every client has both nodes' URLs and
		// switches on each reconnect, so each resume happens on the
		// other node; cuts on both; the broadcasts come from node 0.
		addr := redistest.Start(t).Addr
		var nodes []*resumetest.Server
		var urls []string
		for range 2 {
			s, srv := startResumeServerWith(t, resumetest.Config{Broker: func() wsroom.Broker {
				return redisbroker.New(redisbroker.Options{Addrs: []string{addr}})
			}}, "")
			nodes = append(nodes, s)
			urls = append(urls, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws")
		}
		runResumeLoad(t, nodes[0], urls, load, func() int { return nodes[0].Cut("") + nodes[1].Cut("") })
	})
}

// runResumeLoad runs one AnyCable-style load on urls and judges it.
func runResumeLoad(t *testing.T, s *resumetest.Server, urls []string, load resumeLoad, cut func() int) {
	const room = "anycable"
	total := uint64(load.rate * load.duration.Seconds())
	ready, wait := runResumeClients(t, urls, room, load.clients, total, load.duration+60*time.Second)
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("the clients did not all join within 60 s")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cutter sync.WaitGroup
	cuts, cutConns := 0, 0
	cutter.Go(func() {
		tick := time.NewTicker(load.cutEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				cuts++
				cutConns += cut()
			}
		}
	})
	start := time.Now()
	first, last, err := s.Broadcast(ctx, room, int(total), load.rate, false)
	sent := time.Since(start)
	cancel()
	cutter.Wait()
	if err != nil {
		t.Fatalf("broadcast: %v (sent %d..%d)", err, first, last)
	}
	rep := wait()
	t.Logf("%d clients, %d messages at %.0f/s in %v; %d cuts of %d connections in all",
		load.clients, total, load.rate, sent.Round(time.Millisecond), cuts, cutConns)

	if len(rep.Clients) != load.clients {
		t.Fatalf("report of %d clients, want %d", len(rep.Clients), load.clients)
	}
	want := [][2]uint64{{1, total}}
	reconnects, recovered := 0, 0
	for i, c := range rep.Clients {
		reconnects += c.Reconnects
		recovered += c.Recovered
		if !slices.Equal(c.Runs, want) {
			t.Errorf("client %d received %s, want 1..%d once, in order", i, describeRuns(c.Runs), total)
		}
		if len(c.Lost) > 0 {
			t.Errorf("client %d was told lost: %v", i, c.Lost)
		}
	}
	if cuts == 0 || reconnects == 0 {
		t.Errorf("%d cuts, %d reconnects: the test cut nothing", cuts, reconnects)
	}
	t.Logf("reconnects %d (close codes of client 0: %v), resumes that recovered %d; resume latency (socket created → first missed message) over %d resumes: %s; of which socket created → hello: %s",
		reconnects, rep.Clients[0].CloseCodes, recovered, len(rep.ResumeMs), percentiles(rep.ResumeMs), percentiles(rep.OpenMs))
}

// describeRuns shows what a client received, for a failure message.
func describeRuns(runs [][2]uint64) string {
	var b strings.Builder
	for i, r := range runs {
		if i == 12 {
			fmt.Fprintf(&b, " … (%d runs)", len(runs))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d..%d", r[0], r[1])
	}
	if len(runs) == 0 {
		return "nothing"
	}
	return b.String()
}

func percentiles(ms []float64) string {
	if len(ms) == 0 {
		return "none"
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	at := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms", at(0.5), at(0.99), s[len(s)-1])
}
