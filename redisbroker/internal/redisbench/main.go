//go:build linux

// Command redisbench measures the Redis broker against local redis-server
// processes it starts (and kills) on free loopback ports, beside
// redis-benchmark's own PUBLISH ceiling measured in the same run, and
// prints a Markdown report:
//
//	cd redisbroker && go run ./internal/redisbench            # about 2 minutes
//	go run ./internal/redisbench -pin=false -n 200000         # unpinned, shorter
//
// With -pin (the default, if taskset is installed) the measured Redis runs
// on CPU 0 and this process and redis-benchmark on CPU 1 (the shards and
// cluster parts leave every process unpinned: they measure what the whole
// machine can do). Every message is 64 bytes on one room topic (many
// topics where shards are compared); "room messages/s" counts messages
// delivered to a second broker (another node) subscribed to the topics,
// after every publish was acknowledged.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsroom/wsroom/internal/sysstat"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/internal/benchenv"
	"github.com/wsroom/wsroom/redisbroker/redistest"
	"golang.org/x/sys/unix"
)

var (
	flagN      = flag.Int("n", 1000000, "messages per throughput measurement")
	flagSyncN  = flag.Int("sync-n", 20000, "messages for the synchronous sender and the idle latency")
	flagWindow = flag.Int("window", 4096, "publishes outstanding for the windowed sender")
	flagPin    = flag.Bool("pin", true, "pin the measured Redis to CPU 0 and this process and redis-benchmark to CPU 1 (needs taskset)")
	flagSubs   = flag.Int("resubscribe", 100000, "topics for the resubscription measurement")
	flagShards = flag.Int("shards", 4, "servers for the scaling measurement")
	flagParts  = flag.String("parts", "one,resubscribe,shards,cluster", "what to measure: one Redis, resubscription, shards, cluster")
)

func main() {
	flag.Parse()
	env := &benchenv.Env{}
	defer env.Close()
	log.SetFlags(0)
	r := &benchenv.Report{}
	r.Line("# redisbroker measurements\n")
	r.Line("%s, Go %s, %s, GOMAXPROCS %d, %s", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), benchenv.RedisVersion(), runtime.GOMAXPROCS(0), benchenv.CPUModel())
	r.Line("load average at the start: %s\n", sysstat.LoadAvg())
	r.Line("command: `%s`\n", strings.Join(os.Args, " "))

	var serverWrap, clientWrap []string
	if *flagPin {
		if _, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() >= 2 {
			serverWrap, clientWrap = []string{"taskset", "-c", "0"}, []string{"taskset", "-c", "1"}
			pinSelf("1")
			r.Line("Pinned: the measured redis-server on CPU 0, this process and redis-benchmark on CPU 1.\n")
		}
	}

	parts := strings.Split(*flagParts, ",")
	srv := redistest.StartWith(env, serverWrap)
	if slices.Contains(parts, "one") {
		one(r, srv, clientWrap)
	}
	if slices.Contains(parts, "resubscribe") {
		resubscribe(r, srv)
	}
	srv.Stop()
	if slices.Contains(parts, "shards") {
		shards(r)
	}
	if slices.Contains(parts, "cluster") {
		cluster(r)
	}
	r.Line("load average at the end: %s", sysstat.LoadAvg())
	fmt.Print(r.String())
}

// one measures one Redis: its ceiling, the broker's throughput and latency.
func one(r *benchenv.Report, srv *redistest.Server, clientWrap []string) {
	r.Line("## One Redis\n")
	r.Line("| what | result |")
	r.Line("|---|---|")
	ceiling := redisBenchmark(r, srv.Addr, clientWrap)
	ackedRate := acked(r, srv.Addr, *flagN)
	sync1 := throughput(r, []string{srv.Addr}, false, 1, 1, *flagSyncN, 1, "one sequential sender, synchronous (Publish, wait, next)")
	win := throughput(r, []string{srv.Addr}, false, 1, *flagWindow, *flagN, 1, fmt.Sprintf("one sequential sender, windowed (%d outstanding, waits in order)", *flagWindow))
	throughput(r, []string{srv.Addr}, false, 64, 1, *flagN/2, 1, "64 concurrent senders, each synchronous")
	hop(r, srv.Addr)
	r.Line("")
	target := min(300000, 0.7*ceiling)
	r.Line("The ceiling is the better of the two redis-benchmark runs: %.1fk/s.\n", ceiling/1000)
	r.Line("Target: ≥ 300k/s from one node or ≥ 70%% of the ceiling, whichever is lower (%.0fk/s). The windowed sender: %.0fk/s acknowledged with the ceiling's subscriber (%.0f%% of the ceiling): **%s**; %.0fk/s delivered to a second broker in this process (%.0f%%): **%s**. Synchronous sender: %.1fk/s.\n",
		target/1000, ackedRate/1000, 100*ackedRate/ceiling, benchenv.Met(ackedRate >= target), win/1000, 100*win/ceiling, benchenv.Met(win >= target), sync1/1000)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// pair is a publishing broker and a subscribing one (two nodes).
type pair struct {
	pub, sub *redisbroker.Broker
	got      atomic.Int64
	lat      []time.Duration // publish → deliver, when stamping
	stamp    bool
	mu       sync.Mutex
}

func newPair(addrs []string, clusterMode bool, topics []string, stamp bool) *pair {
	opts := redisbroker.Options{Addrs: addrs, Cluster: clusterMode, Logger: quiet()}
	p := &pair{pub: redisbroker.New(opts), sub: redisbroker.New(opts), stamp: stamp}
	p.pub.Start(func(string, []byte) {})
	p.sub.Start(func(_ string, b []byte) {
		if p.stamp && len(b) >= 8 {
			d := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(b)))
			p.mu.Lock()
			p.lat = append(p.lat, d)
			p.mu.Unlock()
		}
		p.got.Add(1)
	})
	p.sub.Subscribe(topics...)
	deadline := time.Now().Add(30 * time.Second)
	for p.sub.Stats().Subscriptions != int64(len(topics)) {
		if time.Now().After(deadline) {
			log.Fatalf("subscriptions: %+v", p.sub.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	// Wait until a publish on each shard goes through.
	for _, t := range topics[:min(len(topics), 64)] {
		for p.pub.Publish(make([]byte, 64), t)() != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	p.waitGot(int64(min(len(topics), 64)))
	p.got.Store(0)
	return p
}

func (p *pair) close() { p.pub.Close(); p.sub.Close() }

func (p *pair) waitGot(n int64) {
	deadline := time.Now().Add(60 * time.Second)
	for p.got.Load() < n {
		if time.Now().After(deadline) {
			log.Fatalf("delivered %d of %d", p.got.Load(), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// send publishes n messages from senders goroutines, each with up to
// window publishes outstanding (waits called in order), spreading them
// over topics; it returns when all are acknowledged and delivered.
func (p *pair) send(senders, window, n int, topics []string) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failures atomic.Int64
	start := time.Now()
	for range senders {
		wg.Go(func() {
			ring := make([]func() error, window)
			head, k := 0, 0
			payload := make([]byte, 64)
			for {
				i := next.Add(1)
				if i > int64(n) {
					break
				}
				if k == window {
					if ring[head]() != nil {
						failures.Add(1)
					}
					head, k = (head+1)%window, k-1
				}
				if p.stamp {
					binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
				}
				ring[(head+k)%window] = p.pub.Publish(payload, topics[int(i)%len(topics)])
				k++
			}
			for ; k > 0; k-- {
				if ring[head]() != nil {
					failures.Add(1)
				}
				head = (head + 1) % window
			}
		})
	}
	wg.Wait()
	if f := failures.Load(); f > 0 {
		log.Fatalf("%d publishes failed", f)
	}
	if p.sub != nil {
		p.waitGot(int64(n))
	}
	return time.Since(start)
}

func roomTopics(n int) []string {
	t := make([]string, n)
	for i := range t {
		t[i] = "room:bench-" + strconv.Itoa(i)
	}
	return t
}

// throughput measures room messages/s and adds a row.
func throughput(r *benchenv.Report, addrs []string, clusterMode bool, senders, window, n, ntopics int, what string) float64 {
	topics := roomTopics(ntopics)
	p := newPair(addrs, clusterMode, topics, false)
	defer p.close()
	runtime.GC()
	d := p.send(senders, window, n, topics)
	rate := float64(n) / d.Seconds()
	r.Line("| room messages/s delivered to a second broker, %s | %.1fk/s (%d messages in %v) |", what, rate/1000, n, d.Round(time.Millisecond))
	return rate
}

// acked measures the windowed sender's acknowledged publishes per second
// with a plain connection subscribed to the topic, as for the ceiling:
// the publishing node alone.
func acked(r *benchenv.Report, addr string, n int) float64 {
	stop := rawSubscriber(addr, redisbroker.DefaultPrefix+"room:ceiling")
	defer stop()
	b := redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: quiet()})
	b.Start(func(string, []byte) {})
	defer b.Close()
	for b.Publish(nil, "room:ceiling")() != nil {
		time.Sleep(10 * time.Millisecond)
	}
	p := &pair{pub: b}
	runtime.GC()
	d := p.send(1, *flagWindow, n, []string{"room:ceiling"})
	rate := float64(n) / d.Seconds()
	r.Line("| **publishes/s acknowledged, one sequential sender, windowed** (%d outstanding), the ceiling's subscriber | %.1fk/s (%d messages in %v) |", *flagWindow, rate/1000, n, d.Round(time.Millisecond))
	return rate
}

// hop measures publish → deliver on the other node: idle (one message at
// a time) and while the windowed sender runs at full rate.
func hop(r *benchenv.Report, addr string) {
	topics := roomTopics(1)
	p := newPair([]string{addr}, false, topics, true)
	defer p.close()
	payload := make([]byte, 64)
	for i := range *flagSyncN {
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		if err := p.pub.Publish(payload, topics[0])(); err != nil {
			log.Fatal(err)
		}
		p.waitGot(int64(i + 1))
	}
	p50, p99 := percentiles(p.lat)
	r.Line("| cross-node added latency (publish → other node's deliver), one message at a time | p50 %s, p99 %s (target p50 ≤ 1 ms: **%s**) |", us(p50), us(p99), benchenv.Met(p50 <= time.Millisecond))
	p.lat, p.got = p.lat[:0], atomic.Int64{}
	d := p.send(1, *flagWindow, *flagN/2, topics)
	p50, p99 = percentiles(p.lat)
	r.Line("| same, during the windowed run (%.0fk/s, queueing included) | p50 %s, p99 %s |", float64(*flagN/2)/d.Seconds()/1000, us(p50), us(p99))
}

func percentiles(l []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(l)
	return l[len(l)/2], l[len(l)*99/100]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

// redisBenchmark measures redis-benchmark's PUBLISH ceiling with one
// subscriber connected (as in the broker's measurements: every message
// goes to one subscribed node), with 50 pipelining clients and with one,
// and returns the better of the two.
func redisBenchmark(r *benchenv.Report, addr string, wrap []string) float64 {
	_, port, _ := net.SplitHostPort(addr)
	stop := rawSubscriber(addr, "wsroom:room:ceiling")
	defer stop()
	payload := strings.Repeat("x", 64)
	var best float64
	for _, c := range []struct {
		clients, pipeline, n int
	}{{50, 64, 2 * *flagN}, {1, 64, *flagN}} {
		args := append(append([]string(nil), wrap...), "redis-benchmark", "-p", port, "-n", strconv.Itoa(c.n),
			"-c", strconv.Itoa(c.clients), "-P", strconv.Itoa(c.pipeline), "-q", "PUBLISH", "wsroom:room:ceiling", payload)
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			log.Fatalf("redis-benchmark: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`([0-9.]+) requests per second`).FindAllSubmatch(out, -1)
		if m == nil {
			log.Fatalf("redis-benchmark said %s", out)
		}
		rps, _ := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
		best = max(best, rps)
		r.Line("| redis-benchmark PUBLISH ceiling, 64 B, one subscriber, `-c %d -P %d -n %d` | %.1fk/s |", c.clients, c.pipeline, c.n, rps/1000)
	}
	return best
}

// rawSubscriber subscribes a plain connection to channel and discards
// what it reads.
func rawSubscriber(addr, channel string) (stop func()) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(c, "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", len(channel), channel)
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, c); close(done) }()
	for {
		if n, _ := redistest.Command(addr, "PUBSUB", "NUMSUB", channel); n != "" {
			break
		}
	}
	time.Sleep(50 * time.Millisecond)
	return func() { c.Close(); <-done }
}

// resubscribe measures how long the broker takes to subscribe again to
// flagSubs topics after redis-server restarts.
func resubscribe(r *benchenv.Report, srv *redistest.Server) {
	n := *flagSubs
	b := redisbroker.New(redisbroker.Options{Addrs: []string{srv.Addr}, Logger: quiet()})
	b.Start(func(string, []byte) {})
	defer b.Close()
	b.Subscribe(roomTopics(n)...)
	start := time.Now()
	waitSubs(b, n)
	first := time.Since(start)
	srv.Stop()
	for b.Stats().Connected {
		time.Sleep(time.Millisecond)
	}
	srv.Restart() // returns once it answers PING
	start = time.Now()
	self0, srv0 := cpu([]int{srv.PID()})
	waitSubs(b, n)
	again := time.Since(start)
	self1, srv1 := cpu([]int{srv.PID()})
	r.Line("\n## Resubscription\n")
	r.Line("%d topics: first subscription confirmed in %v; after redis-server was killed and restarted, all %d confirmed again %v after it answered PING (target ≤ 1 s: **%s**), %v of it from the broker's reconnection (the rest is its reconnection backoff); CPU meanwhile: this process %v, redis-server %v.\n",
		n, first.Round(time.Millisecond), n, again.Round(time.Millisecond), benchenv.Met(again <= time.Second), b.Stats().Resubscribe.Round(time.Millisecond),
		(self1 - self0).Round(time.Millisecond), (srv1 - srv0).Round(time.Millisecond))
}

func waitSubs(b *redisbroker.Broker, n int) {
	deadline := time.Now().Add(60 * time.Second)
	for s := b.Stats(); !s.Connected || s.Subscriptions != int64(n); s = b.Stats() {
		if time.Now().After(deadline) {
			log.Fatalf("subscriptions: %+v, want %d", s, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// cpu is CPU time used so far by this process and by the given PIDs.
func cpu(pids []int) (self, servers time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, pid := range pids {
		servers += benchenv.ProcCPU(pid)
	}
	return self, servers
}

// shards compares one Redis with flagShards of them, unpinned, on 1024
// room topics, and accounts for the CPU time each message costs.
func shards(r *benchenv.Report) {
	pinSelf("") // every CPU
	r.Line("## Shards (unpinned)\n")
	r.Line("Windowed senders (%d outstanding each) over 1024 room topics; CPU time of this process (both brokers) and of the redis-servers per message.\n", *flagWindow)
	r.Line("| servers | senders | room messages/s | CPU µs/msg (brokers + servers) | cores busy with it | CPU-bound rate on %d cores |", runtime.NumCPU())
	r.Line("|---:|---:|---:|---:|---:|---:|")
	var base float64
	for _, n := range []int{1, *flagShards} {
		env := &benchenv.Env{}
		var addrs []string
		var pids []int
		for range n {
			s := redistest.StartWith(env, nil)
			addrs = append(addrs, s.Addr)
			pids = append(pids, s.PID())
		}
		for _, senders := range []int{1, 4} {
			topics := roomTopics(1024)
			p := newPair(addrs, false, topics, false)
			runtime.GC()
			s0, v0 := cpu(pids)
			d := p.send(senders, *flagWindow, *flagN, topics)
			s1, v1 := cpu(pids)
			p.close()
			rate := float64(*flagN) / d.Seconds()
			self, srv := float64(s1-s0)/1e3/float64(*flagN), float64(v1-v0)/1e3/float64(*flagN)
			bound := float64(runtime.NumCPU()) * 1e6 / (self + srv)
			ratio := ""
			if n == 1 && senders == 4 {
				base = rate
			} else if n > 1 && senders == 4 && base > 0 {
				ratio = fmt.Sprintf(" (%.2f× one server)", rate/base)
			}
			r.Line("| %d | %d | %.1fk/s%s | %.2f + %.2f | %.2f | %.0fk/s |", n, senders, rate/1000, ratio, self, srv, rate*(self+srv)/1e6, bound/1000)
		}
		env.Close()
	}
	r.Line("\nCores busy with it: the brokers' and servers' CPU time over the run's duration (the rest of the %d cores went to other processes). The CPU-bound rate is what the machine's cores could do at the measured CPU cost per message if nothing else ran; more servers cannot raise throughput above it.\n", runtime.NumCPU())
}

// cluster measures a three-master cluster on sharded pub/sub: throughput,
// and the recovery of one master's topics after it is killed and
// restarted.
func cluster(r *benchenv.Report) {
	env := &benchenv.Env{}
	defer env.Close()
	c := redistest.StartCluster(env, 3)
	r.Line("## Redis Cluster, three masters, sharded pub/sub (unpinned)\n")
	r.Line("| what | result |")
	r.Line("|---|---|")
	throughput(r, c.Addrs(), true, 4, *flagWindow, *flagN, 1024, fmt.Sprintf("4 windowed senders (%d outstanding each), 1024 room topics", *flagWindow))
	topics := roomTopics(1024)
	p := newPair(c.Addrs()[:1], true, topics, false)
	defer p.close()
	dead := c.Nodes[0]
	var on, off []string // topics on the dead master, and on the others
	for _, t := range topics {
		if p.pub.ShardOf(t) == dead.Addr {
			on = append(on, t)
		} else {
			off = append(off, t)
		}
	}
	dead.Stop()
	failed, flowed := 0, 0
	for i := range 100 {
		if p.pub.Publish(make([]byte, 64), on[i%len(on)])() != nil {
			failed++
		}
		if p.pub.Publish(make([]byte, 64), off[i%len(off)])() == nil {
			flowed++
		}
	}
	dead.Restart()
	restarted := time.Now()
	got := p.got.Load()
	for {
		if p.pub.Publish(make([]byte, 64), on[0])() == nil {
			deadline := time.Now().Add(50 * time.Millisecond)
			for p.got.Load() == got && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
			if p.got.Load() > got {
				break
			}
		}
		if time.Since(restarted) > 30*time.Second {
			log.Fatal("the restarted master's topics did not recover")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec := time.Since(restarted)
	r.Line("| one master killed: publishes to its topics that failed / to the others' that succeeded | %d of 100 / %d of 100 |", failed, flowed)
	r.Line("| its topics delivered again after its restart (from when it answers PING) | %v (target < 2 s: **%s**) |", rec.Round(time.Millisecond), benchenv.Met(rec < 2*time.Second))

	// Resubscription, batched per slot, after every master restarts.
	n := *flagSubs
	b := redisbroker.New(redisbroker.Options{Addrs: c.Addrs()[:1], Cluster: true, Logger: quiet()})
	b.Start(func(string, []byte) {})
	defer b.Close()
	b.Subscribe(roomTopics(n)...)
	waitSubs(b, n)
	for _, node := range c.Nodes {
		node.Stop()
	}
	for b.Stats().Connected {
		time.Sleep(time.Millisecond)
	}
	for _, node := range c.Nodes {
		node.Restart()
	}
	start := time.Now()
	waitSubs(b, n)
	again := time.Since(start)
	r.Line("| %d topics (SSUBSCRIBE batched per slot) confirmed again after all three masters were killed and restarted, from when the last answers PING | %v (target ≤ 1 s: **%s**); %v from the slowest master's reconnection |", n, again.Round(time.Millisecond), benchenv.Met(again <= time.Second), b.Stats().Resubscribe.Round(time.Millisecond))
	r.Line("")
}

// pinSelf sets the CPU affinity of every thread of this process to the
// CPUs in list ("1"; "" for all of them). Threads made later inherit it.
func pinSelf(list string) {
	var set unix.CPUSet
	if list == "" {
		for i := range runtime.NumCPU() {
			set.Set(i)
		}
	} else {
		for _, c := range strings.Split(list, ",") {
			i, err := strconv.Atoi(c)
			if err != nil {
				log.Fatalf("bad CPU %q", c)
			}
			set.Set(i)
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		log.Printf("cannot pin: %v", err)
		return
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			unix.SchedSetaffinity(tid, &set)
		}
	}
}
