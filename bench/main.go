// Command bench compares wsroom with gorilla/websocket (its examples/chat
// hub), olahol/melody and a hand-written gobwas/ws server: idle memory
// and goroutines per connection, fan-out throughput and server CPU per
// delivery, publish-to-receive latency, targeted sends (SendTo) and
// handshakes per second, plus an idle soak. Each server runs in its own
// process (this binary re-executed) pinned to one CPU with GOMAXPROCS=1;
// the load generator runs in this process on another CPU. See README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wsroom/wsroom/internal/sysstat"
)

func main() {
	if name := os.Getenv(serveEnv); name != "" {
		cpu, _ := strconv.Atoi(os.Getenv("WSROOM_BENCH_CPU"))
		if err := serve(name, cpu); err != nil {
			log.Fatalf("server %s: %v", name, err)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, os.Args[1:]); err != nil {
		log.Fatal(err)
	}
}

// run parses the command line, runs the selected scenarios, prints the
// report and writes the requested files.
func run(ctx context.Context, args []string) (*report, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		all         = fs.Bool("all", false, "every scenario on every server, plus the soak (on -soak-servers)")
		quick       = fs.Bool("quick", false, "small sizes and short runs (sizes 200,1000,2000; 0.5 s runs; 5 s soak; 200 stalled, 1000 messages)")
		serveName   = fs.String("serve", "", "run only the named server (for manual use) and print its address")
		serverList  = fs.String("servers", "wsroom,gorilla,melody,gobwas-raw,gobwas-epoll,coder", "servers to run, comma-separated")
		scenList    = fs.String("scenarios", "idle,fanout,latency,sendto", "scenarios: idle,fanout,latency,sendto,soak,compress,stalled,resume (handshakes/s is measured with the 10k set; compress runs on -compress-servers; stalled on wsroom only; resume runs -resume-dir's TestResumeUnderCuts at full size, which needs node, redis-server and integration/node's packages: ./test.sh installs them)")
		sizes       = fs.String("sizes", "1000,10000,19500", "small,mid,large connection counts")
		dur         = fs.Duration("dur", 2*time.Second, "publishing time of each fan-out and SendTo run")
		latRate     = fs.Float64("lat-rate", 50000, "deliveries/s of the paced latency run")
		latDur      = fs.Duration("lat-dur", 4*time.Second, "length of the latency run")
		parallel    = fs.Int("parallel", 64, "concurrent dialers")
		sources     = fs.Int("sources", 16, "127.0.0.x source addresses for client connections (from 127.0.0.2)")
		serverCPU   = fs.Int("server-cpu", 0, "CPU the server process is pinned to (-1: no pinning)")
		clientCPU   = fs.Int("client-cpu", 1, "CPU the load generator is pinned to (-1: no pinning)")
		serverProcs = fs.Int("server-procs", 1, "GOMAXPROCS of the server process (0: Go's default)")
		clientProcs = fs.Int("client-procs", 1, "GOMAXPROCS of the load generator (0: Go's default)")
		soak        = fs.Duration("soak", 2*time.Minute, "idle time of the soak")
		soakServers = fs.String("soak-servers", "wsroom", "servers the soak runs on")
		soakConns   = fs.Int("soak-conns", 0, "connections of the soak (default: the large size)")
		stall       = fs.Duration("stall", 3*time.Second, "a run making no progress for this long has lost messages")
		svgPath     = fs.String("svg", "", "write an SVG chart here")
		mdPath      = fs.String("md", "", "also write the Markdown report here")
		jsonPath    = fs.String("json", "", "write raw results as JSON here")
		compList    = fs.String("compress-servers", "wsroom,wsroom-deflate,gorilla-prepared", "servers of the compress scenario: 4 KiB JSON fan-out at the small size, idle at the mid size")
		inflate     = fs.Int("inflate-every", 32, "compress scenario: clients inflate and check one message in this many per connection (1: every message)")
		settle      = fs.Duration("compress-settle", 2*time.Second, "compress and soak scenarios: rest after the burst before measuring idle memory again (wsroom's poller workers exit after 1 s without work)")
		stalled     = fs.Int("stalled", 2000, "stalled scenario: connections that never read")
		fast        = fs.Int("fast", 10, "stalled scenario: fast readers")
		stalledMsgs = fs.Int("stalled-msgs", 8000, "stalled scenario: messages broadcast back to back")
		stalledSize = fs.Int("stalled-size", 1024, "stalled scenario: message size in bytes (at least 16: publish time and sequence number)")
		rcvbuf      = fs.Int("stalled-rcvbuf", 4096, "stalled scenario: SO_RCVBUF of the stalled clients' sockets, set before connect")
		stalledPoll = fs.Bool("stalled-poll", true, "stalled scenario: keep the stalled clients' sockets in the load generator's Go poller, as any Go client's are (false: bare descriptors outside any poller, so that deliveries into them wake nothing: on loopback the server's CPU pays for those wakeups)")
		roomsEach   = fs.Int("stalled-rooms", 1, "stalled scenario: rooms every connection is in: the broadcasts' room, then a quiet room shared by all, then rooms of its own (a connection in several rooms parks in all of them)")
		stalledRuns = fs.Int("stalled-runs", 7, "stalled scenario: alternated pairs of control and stalled runs (the report takes each one's median run; 3.5 s a pair at full size)")
		sampleEvery = fs.Duration("sample", 10*time.Millisecond, "stalled scenario: the server samples its heap and RSS this often")
		skip        = fs.String("skip", "", "scenarios to leave out, comma-separated (with -all)")
		resumeDir   = fs.String("resume-dir", "../integration", "resume scenario: the integration module's directory")
		kernelEvery = fs.Duration("sample-kernel", 100*time.Millisecond, "stalled scenario: … and its sockets' kernel send-side memory this often (a syscall pair per socket)")
	)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *serveName != "" {
		return nil, serve(*serveName, *serverCPU)
	}
	c := &config{
		servers: split(*serverList), scenarios: map[string]bool{},
		dur: *dur, latRate: *latRate, latDur: *latDur, parallel: *parallel, sources: *sources,
		serverCPU: *serverCPU, clientCPU: *clientCPU, serverProcs: *serverProcs, soak: *soak,
		soakServers: split(*soakServers), stall: *stall,
		compressServers: split(*compList), inflateEvery: max(*inflate, 1), compressSettle: *settle,
		stalled: *stalled, fast: *fast, stalledMsgs: *stalledMsgs, stalledSize: *stalledSize, stalledRcvbuf: *rcvbuf, stalledPoll: *stalledPoll, stalledRuns: *stalledRuns,
		stalledRooms: max(*roomsEach, 1),
		sampleEvery:  *sampleEvery, kernelEvery: *kernelEvery,
	}
	for _, s := range split(*scenList) {
		c.scenarios[s] = true
	}
	if *all {
		for _, s := range []string{"idle", "fanout", "latency", "sendto", "soak", "compress", "stalled", "resume"} {
			c.scenarios[s] = true
		}
	}
	for _, s := range split(*skip) {
		delete(c.scenarios, s)
	}
	sz := split(*sizes)
	if *quick {
		// Quick defaults for every size and duration flag not given.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["sizes"] {
			sz = []string{"200", "1000", "2000"}
		}
		if !set["dur"] {
			c.dur = 500 * time.Millisecond
		}
		if !set["lat-dur"] {
			c.latDur = time.Second
		}
		if !set["soak"] {
			c.soak = 5 * time.Second
		}
		if !set["stalled"] {
			c.stalled = 200
		}
		if !set["stalled-msgs"] {
			c.stalledMsgs = 1000
		}
		if !set["stalled-runs"] {
			c.stalledRuns = 3
		}
	}
	if c.fast < 1 || c.stalled < 0 || c.stalledMsgs < 1 || c.stalledSize < seqOffset+8 || c.stalledRuns < 1 || c.sampleEvery <= 0 || c.kernelEvery < c.sampleEvery {
		return nil, fmt.Errorf("stalled scenario: want -fast ≥ 1, -stalled ≥ 0, -stalled-msgs ≥ 1, -stalled-size ≥ %d, -stalled-runs ≥ 1, -sample > 0 and -sample-kernel ≥ -sample", seqOffset+8)
	}
	if len(sz) != 3 {
		return nil, fmt.Errorf("-sizes wants small,mid,large")
	}
	for i, p := range []*int{&c.small, &c.mid, &c.large} {
		n, err := strconv.Atoi(sz[i])
		if err != nil || n < 2 {
			return nil, fmt.Errorf("bad size %q", sz[i])
		}
		*p = n
	}
	c.soakConns = *soakConns
	if c.soakConns == 0 {
		c.soakConns = c.large
	}
	for _, s := range c.servers {
		if !knownServer(s) {
			return nil, fmt.Errorf("unknown server %q", s)
		}
	}
	for _, s := range c.compressServers {
		if _, ok := compressServer(s); !ok {
			return nil, fmt.Errorf("unknown compress server %q", s)
		}
	}
	if _, err := sysstat.RaiseNoFile(); err != nil {
		return nil, err
	}
	if *clientProcs > 0 {
		runtime.GOMAXPROCS(*clientProcs)
	}
	if *clientCPU >= 0 {
		if err := sysstat.PinToCPU(*clientCPU); err != nil {
			return nil, err
		}
	}

	rep := &report{cfg: c, clientCPU: *clientCPU, clientProcs: runtime.GOMAXPROCS(0), started: time.Now(),
		load: sysstat.LoadAvg(), backlog: sysstat.NetdevMaxBacklog()}
	for _, s := range c.servers {
		if !c.any("idle", "fanout", "latency", "sendto", "soak") {
			break
		}
		r, err := runServer(ctx, c, s)
		if err != nil {
			log.Printf("%s: %v", s, err)
			r.Failed = err.Error()
		}
		rep.results = append(rep.results, r)
		if ctx.Err() != nil {
			break
		}
	}
	if c.scenarios["compress"] && ctx.Err() == nil {
		rep.compress = runCompress(ctx, c)
	}
	if c.scenarios["stalled"] && ctx.Err() == nil {
		rep.stalled = runStalled(ctx, c)
	}
	if c.scenarios["resume"] && ctx.Err() == nil { // last: it unpins the tool (see runResume)
		rep.resume = runResume(ctx, *resumeDir)
	}
	md := rep.markdown()
	fmt.Print(md)
	if *mdPath != "" {
		if err := writeFile(*mdPath, []byte(md)); err != nil {
			return rep, err
		}
	}
	if *svgPath != "" {
		if err := writeFile(*svgPath, []byte(rep.svg())); err != nil {
			return rep, err
		}
	}
	if *jsonPath != "" {
		b, _ := json.MarshalIndent(struct {
			Servers     []*result
			Compression []*compressResult `json:",omitempty"`
			Stalled     *stalledResult    `json:",omitempty"`
		}{rep.results, rep.compress, rep.stalled}, "", "  ")
		if err := writeFile(*jsonPath, b); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// writeFile writes b to path, creating its directory if needed.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func split(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
