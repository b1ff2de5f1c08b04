//go:build linux

// Command presencebench measures cluster presence and room history on
// Redis: three nodes (three processes, each a Hub with a Redis broker and
// Options.Presence, its clients in the same process over a unix socket:
// real WebSocket connections, no TCP port used) over one redis-server it
// starts (and kills) on a free loopback port. It prints a Markdown report:
//
//	cd redisbroker && go run ./internal/presencebench               # about 2 minutes
//	go run ./internal/presencebench -cycles 20000 -parts presence   # shorter
//
// Parts: presence (members in one room, Room.Presence latency from each
// node), disconnect (users with a connection on each node, Hub.Disconnect
// from one node), cycles (random connects and disconnects on the three
// nodes, then convergence and event counts), setpresence (SetPresence
// from three brokers in this process, many goroutines each), history (PublishHistory
// against Publish on one broker, and ReadHistory latency).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsroom/wsroom/internal/sysstat"
	"github.com/wsroom/wsroom/redisbroker/internal/benchenv"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

var (
	flagMembers = flag.Int("members", 10000, "members of the big room, over the three nodes")
	flagQueries = flag.Int("queries", 300, "Room.Presence queries per node")
	flagDisc    = flag.Int("disconnects", 200, "users disconnected across the three nodes")
	flagCycles  = flag.Int("cycles", 100000, "connects and disconnects, over the three nodes")
	flagWorkers = flag.Int("workers", 8, "goroutines making connects and disconnects, per node")
	flagUsers   = flag.Int("users", 1000, "users the cycles pick from")
	flagRooms   = flag.Int("rooms", 10, "rooms the cycles pick from (each connection joins each with probability 1/3)")
	flagHistN   = flag.Int("history-n", 200000, "publishes per history throughput measurement")
	flagParts   = flag.String("parts", "presence,disconnect,cycles,setpresence,history", "what to measure")
	flagTTL     = flag.Duration("ttl", 10*time.Second, "the nodes' PresenceTimeout")
	flagGOGC    = flag.String("node-gogc", "", "GOGC of the node processes (default: the Go default, 100)")

	flagChild = flag.String("child", "", "internal: run as a node serving this unix socket")
	flagRedis = flag.String("redis", "", "internal: the node's Redis")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *flagChild != "" {
		if err := runChild(*flagRedis, *flagChild, *flagTTL); err != nil {
			log.Fatal(err)
		}
		return
	}
	env := &benchenv.Env{}
	defer env.Close()
	r := &benchenv.Report{}
	r.Line("# presencebench\n")
	r.Line("%s, Go %s, %s, GOMAXPROCS %d, %s", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), benchenv.RedisVersion(), runtime.GOMAXPROCS(0), benchenv.CPUModel())
	r.Line("load average at the start: %s\n", sysstat.LoadAvg())
	r.Line("command: `%s`\n", strings.Join(os.Args, " "))
	srv := redistest.Start(env)
	parts := strings.Split(*flagParts, ",")
	var nodes []*proc
	if slices.ContainsFunc(parts, func(p string) bool { return p != "history" && p != "setpresence" }) {
		dir := env.TempDir()
		for i := range 3 {
			nodes = append(nodes, startProc(env, filepath.Join(dir, "node"+strconv.Itoa(i)+".sock"), srv.Addr))
		}
	}
	if slices.Contains(parts, "presence") {
		presencePart(r, nodes)
	}
	if slices.Contains(parts, "disconnect") {
		disconnectPart(r, nodes)
	}
	if slices.Contains(parts, "cycles") {
		cyclesPart(r, nodes, srv)
	}
	for _, n := range nodes {
		n.quit()
	}
	if slices.Contains(parts, "setpresence") {
		setPresencePart(r, srv)
	}
	if slices.Contains(parts, "history") {
		historyPart(r, srv)
	}
	r.Line("\nload average at the end: %s", sysstat.LoadAvg())
	fmt.Print(r.String())
}

// proc is a node process.
type proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *json.Decoder
	mu  sync.Mutex
}

func startProc(env *benchenv.Env, sock, redisAddr string) *proc {
	cmd := exec.Command(os.Args[0], "-child", sock, "-redis", redisAddr, "-ttl", flagTTL.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	if *flagGOGC != "" {
		cmd.Env = append(os.Environ(), "GOGC="+*flagGOGC)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	p := &proc{cmd: cmd, in: in, out: json.NewDecoder(out)}
	env.Cleanup(func() {
		if cmd.ProcessState != nil {
			return // quit
		}
		p.in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	var ready answer
	if err := p.out.Decode(&ready); err != nil {
		log.Fatalf("node did not start: %v", err)
	}
	return p
}

// do sends a command and returns the node's answer; an error answer ends
// the program.
func (p *proc) do(c command) answer {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := json.NewEncoder(p.in).Encode(c); err != nil {
		log.Fatalf("node: %v", err)
	}
	var a answer
	if err := p.out.Decode(&a); err != nil {
		log.Fatalf("node: %v", err)
	}
	if a.Err != "" {
		log.Fatalf("node: %s: %s", c.Op, a.Err)
	}
	return a
}

// quit stops the node and waits until its process has exited.
func (p *proc) quit() {
	p.do(command{Op: "quit"})
	p.in.Close()
	p.cmd.Wait()
}

// onAll runs f for each node at once and returns their answers.
func onAll(nodes []*proc, f func(i int, p *proc) answer) []answer {
	out := make([]answer, len(nodes))
	var wg sync.WaitGroup
	for i, p := range nodes {
		wg.Go(func() { out[i] = f(i, p) })
	}
	wg.Wait()
	return out
}

// waitFor polls cond until it holds or limit passes, and returns how long
// it took.
func waitFor(what string, limit time.Duration, cond func() bool) time.Duration {
	t0 := time.Now()
	for !cond() {
		if time.Since(t0) > limit {
			log.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(t0)
}

func presencePart(r *benchenv.Report, nodes []*proc) {
	total := *flagMembers
	r.Line("## Room.Presence, %d members in one room over 3 nodes\n", total)
	t0 := time.Now()
	onAll(nodes, func(i int, p *proc) answer {
		n := total / 3
		if i == 0 {
			n += total % 3
		}
		return p.do(command{Op: "members", Room: "big", Prefix: "m" + strconv.Itoa(i) + "-", N: n})
	})
	took := waitFor("presence of the big room", time.Minute, func() bool {
		return nodes[0].do(command{Op: "presence", Room: "big", K: 1}).Users == total
	})
	r.Line("%d WebSocket connections opened, each its own user, and seen in presence from node 1 in %v (%v after the last one opened).\n",
		total, time.Since(t0).Round(time.Millisecond), took.Round(time.Millisecond))
	r.Line("Each node's broker keeps the answer for a room of at least 1000 users (PresenceCacheMin) and asks Redis for the room's version and its changes since the kept one (one script): \"unchanged\" queries find the room as it was; \"changed\" ones follow a change made by another broker (untimed), which they apply to the kept answer. `Room.Presence` returns a new slice each time (about 480 KB for 10,000 users), `Room.AppendPresence` appends into the slice of the node's previous answer.\n")
	r.Line("| API | queries | room | from | p50 | p99 | max | users returned |")
	r.Line("|---|---|---|---|---:|---:|---:|---:|")
	met := map[bool]bool{false: true, true: true}
	for _, appendAPI := range []bool{false, true} {
		api := "Presence"
		if appendAPI {
			api = "AppendPresence"
		}
		for _, churn := range []bool{false, true} {
			what := "unchanged"
			if churn {
				what = "changed"
			}
			var all []int64
			for i, p := range nodes {
				a := p.do(command{Op: "presence", Room: "big", K: *flagQueries, Churn: churn, Append: appendAPI})
				p50, p99, mx := percentiles(a.Lat)
				r.Line("| %s | %d one after the other | %s | node %d | %.2f ms | %.2f ms | %.2f ms | %d |", api, len(a.Lat), what, i+1, p50, p99, mx, a.Users)
				all = append(all, a.Lat...)
			}
			p50, p99, mx := percentiles(all)
			r.Line("| %s | all of the above | %s | | %.2f ms | **%.2f ms** | %.2f ms | |", api, what, p50, p99, mx)
			met[appendAPI] = met[appendAPI] && percentileOK(all, 5)
			var conc []int64
			for _, a := range onAll(nodes, func(_ int, p *proc) answer {
				return p.do(command{Op: "presence", Room: "big", K: *flagQueries, Churn: churn, Append: appendAPI})
			}) {
				conc = append(conc, a.Lat...)
			}
			p50, p99, mx = percentiles(conc)
			r.Line("| %s | %d, the 3 nodes at once | %s | | %.2f ms | %.2f ms | %.2f ms | |", api, len(conc), what, p50, p99, mx)
		}
	}
	r.Line("\nTarget p99 < 5 ms (one query at a time): Room.Presence **%s**, Room.AppendPresence **%s**.\n", benchenv.Met(met[false]), benchenv.Met(met[true]))
}

func disconnectPart(r *benchenv.Report, nodes []*proc) {
	n := *flagDisc
	r.Line("## Hub.Disconnect of a user with a connection on each of the 3 nodes\n")
	onAll(nodes, func(_ int, p *proc) answer { return p.do(command{Op: "members", Prefix: "d", N: n}) })
	waitFor("users online on the 3 nodes", time.Minute, func() bool {
		return nodes[0].do(command{Op: "online", Prefix: "d0"}).Users == 3 && nodes[0].do(command{Op: "online", Prefix: "d" + strconv.Itoa(n-1)}).Users == 3
	})
	a := nodes[0].do(command{Op: "disconnect", Prefix: "d", N: n})
	bad := 0
	for _, k := range a.Counts {
		if k != 3 {
			bad++
		}
	}
	p50, p99, mx := percentiles(a.Lat)
	r.Line("%d users, Disconnect from node 1 one after the other (the call returns once every node reported; 10,000 idle members stay connected): p50 %.2f ms, **p99 %.2f ms**, max %.2f ms; %d of %d closed 3 connections.\n",
		n, p50, p99, mx, n-bad, n)
	r.Line("Target p99 < 100 ms: **%s**.\n", benchenv.Met(percentileOK(a.Lat, 100) && bad == 0))
}

func cyclesPart(r *benchenv.Report, nodes []*proc, srv *redistest.Server) {
	n := *flagCycles
	r.Line("## %d connects and disconnects over 3 nodes\n", n)
	cpu0 := benchenv.ProcCPU(srv.PID())
	scripts0 := scriptCalls(srv.Addr)
	t0 := time.Now()
	answers := onAll(nodes, func(i int, p *proc) answer {
		return p.do(command{Op: "cycles", N: n / 3, Workers: *flagWorkers, Users: *flagUsers, Rooms: *flagRooms, Prefix: "cu", Room: "cr", Seed: uint64(i + 1)})
	})
	elapsed := time.Since(t0)
	truth := map[string]int{}
	for _, a := range answers {
		for k, v := range a.Open {
			truth[k] += v
		}
	}
	// Presence converges to the truth: every room, as node 1 sees it.
	conv := waitFor("presence equal to the truth", time.Minute, func() bool {
		for k := range *flagRooms {
			room := "cr" + strconv.Itoa(k)
			got := nodes[0].do(command{Op: "roompresence", Room: room}).Open
			for key, v := range truth {
				if strings.HasPrefix(key, room+"|") && got[key] != v {
					return false
				}
			}
			for key, v := range got {
				if truth[key] != v {
					return false
				}
			}
		}
		return true
	})
	// Events: per room and user, joins minus leaves over the 3 nodes is 1
	// if present at the end, else 0.
	var joins, leaves, mismatched int
	evConv := waitFor("events matching the end state", time.Minute, func() bool {
		sum := map[string][2]int{}
		for _, a := range onAll(nodes, func(_ int, p *proc) answer { return p.do(command{Op: "events"}) }) {
			for k, v := range a.Events {
				if !strings.HasPrefix(k, "cr") {
					continue
				}
				s := sum[k]
				s[0] += v[0]
				s[1] += v[1]
				sum[k] = s
			}
		}
		joins, leaves, mismatched = 0, 0, 0
		for k, s := range sum {
			joins += s[0]
			leaves += s[1]
			want := 0
			if truth[k] > 0 {
				want = 1
			}
			if s[0]-s[1] != want {
				mismatched++
			}
		}
		for k, v := range truth {
			if _, ok := sum[k]; !ok && v > 0 && !strings.HasPrefix(k, "|") {
				mismatched++
			}
		}
		return mismatched == 0
	})
	cpu := benchenv.ProcCPU(srv.PID()) - cpu0
	scripts := scriptCalls(srv.Addr) - scripts0
	open := 0
	for k, v := range truth {
		if strings.HasPrefix(k, "|") {
			open += v
		}
	}
	r.Line("%d workers per node, %d users, %d rooms (each connection joins each with probability 1/3): %d connects and disconnects in %v (%.0f/s over the 3 nodes), %d connections open at the end.\n",
		*flagWorkers, *flagUsers, *flagRooms, n/3*3, elapsed.Round(time.Millisecond), float64(n/3*3)/elapsed.Seconds(), open)
	r.Line("- presence equal to the truth in every room %v after the last step (as node 1 sees it)", conv.Round(time.Millisecond))
	r.Line("- events: %d joins and %d leaves over the 3 nodes; per room and user, joins − leaves = 1 if present at the end, else 0: %d mismatches (settled %v after the last step)", joins, leaves, mismatched, evConv.Round(time.Millisecond))
	r.Line("- scripts Redis ran (presence updates, beats, queries of this tool) from the first step until both settled: %d (%.0f/s over the cycles and the settling)", scripts, float64(scripts)/(elapsed+conv+evConv).Seconds())
	r.Line("- redis-server CPU meanwhile: %v (%.1f µs per connect or disconnect)\n", cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(n/3*3))
}

func percentileOK(ns []int64, ms float64) bool {
	_, p99, _ := percentiles(ns)
	return p99 < ms
}

// scriptCalls returns how many scripts (EVAL and EVALSHA) Redis has run.
func scriptCalls(addr string) int64 {
	info, err := redistest.Command(addr, "INFO", "commandstats")
	if err != nil {
		log.Fatal(err)
	}
	var total int64
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "cmdstat_eval:") || strings.HasPrefix(l, "cmdstat_evalsha:") {
			if _, rest, ok := strings.Cut(l, "calls="); ok {
				k, _, _ := strings.Cut(rest, ",")
				n, _ := strconv.ParseInt(k, 10, 64)
				total += n
			}
		}
	}
	return total
}
