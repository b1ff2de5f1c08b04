//go:build linux

// Command stalledmem measures what connections that never read cost a
// wsroom server after a burst of broadcasts (issue 11, finding 4): Go
// heap, RSS and the kernel's send-side memory, per stalled connection.
// docs/memory.md gives the bounds it measures; TestStalledMemory runs it
// and checks them.
//
//	go run ./internal/stalledmem                          # the case: 2,000 stalled, 8,000 × 1 KiB
//	go run ./internal/stalledmem -n 500 -msgs 2000
//	go run ./internal/stalledmem -mss 1400                # the clients' TCP_MAXSEG as on an Ethernet path
//	go run ./internal/stalledmem -size 0 -msgs 100000 -queue-bytes 262144   # empty messages: what a queued reference costs
//	go run ./internal/stalledmem -gc-every 100             # the live heap read at its peak (what TestStalledMemory checks)
//
// It starts itself again as the server (a subprocess, so the clients'
// memory and fds are not counted): a hub with one room that every
// connection joins, pings off (the clients never answer them),
// SendQueueBytes and SendQueueMessages from the flags and every other
// Option at its default. This process opens one connection, takes the
// baseline, then opens n more; every one has SO_RCVBUF -rcvbuf (4 KiB)
// set before connect and reads nothing after the 101, so the first is
// stalled too (it is counted among the slow-consumer closes, out of
// n+1). Then it asks the server to broadcast msgs messages of size bytes
// back to back. The server samples its heap and RSS every 10 ms during
// the burst (peaks) and measures again after it, once the writers have
// handed the kernel what it takes (the sum of the sockets' SIOCOUTQ
// stopped changing for 200 ms) and after a forced GC (live). Figures per
// connection are (after − before) / n.
//
// Kernel memory: the server's listener records every socket it accepts
// (the *net.TCPConn is passed on unchanged, so the hub polls it as usual)
// and sums SIOCOUTQ (bytes not yet acknowledged) and SK_MEMINFO_WMEM_QUEUED
// (the write queue's memory with its overhead, ss -m's "w"), for the
// sockets still open. It is outside the process's RSS and counts against
// the machine-wide net.ipv4.tcp_mem. With the default Options.SendBuffer
// (64 KiB, which Linux doubles) a socket whose peer reads nothing holds
// about 128 KiB whatever the MSS (TestStalledMemory allows 2 × SendBuffer
// and 4 KiB of slack): about 250 MiB for the default 2,000.
// Before SendBuffer, the kernel's autotuning let each grow towards
// tcp_wmem's 4 MiB, and this run pushed a machine with 24 GiB of RAM into
// TCP memory pressure for a few seconds.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/rawws"
	"github.com/wsroom/wsroom/internal/sysstat"
	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 2000, "stalled connections")
	msgs := flag.Int("msgs", 8000, "messages broadcast back to back")
	size := flag.Int("size", 1024, "message size in bytes")
	mss := flag.Int("mss", 0, "TCP_MAXSEG of the clients' sockets (0: loopback's)")
	rcvbuf := flag.Int("rcvbuf", 4096, "SO_RCVBUF of the clients' sockets, set before connect")
	queueBytes := flag.Int("queue-bytes", 0, "server: Options.SendQueueBytes (0: the default)")
	queueMsgs := flag.Int("queue-msgs", 0, "server: Options.SendQueueMessages (0: the default)")
	serve := flag.Bool("serve", false, "internal: run as the server")
	asJSON := flag.Bool("json", false, "print the figures as one JSON object (for TestStalledMemory)")
	gcEvery := flag.Int("gc-every", 0, "server: also force a collection after every this many broadcasts and record the live heap it finds (0: never; the burst is then back to back)")
	flag.Parse()
	sysstat.RaiseNoFile()
	if *serve {
		server(*queueBytes, *queueMsgs)
		return
	}
	r := client(*n, *msgs, *size, *mss, *rcvbuf, *queueBytes, *queueMsgs, *gcEvery)
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	r.print()
}

// Result is what a run measured.
type Result struct {
	N, Msgs, Size, Rcvbuf, MSS, QueueBytes, QueueMsgs int
	Burst                                             burstResult
	Before, Connected, After                          sample
	TCPMemBefore, TCPMemAfter                         int64 // pages
}

// sample is the server's state at one moment.
type sample struct {
	Heap       uint64 // HeapAlloc: live objects after a forced GC (in "measure"), or live + unswept (peaks)
	RSS        uint64
	Goroutines int
	Conns      int
	Kicked     uint64 // slow-consumer closes
	Sockets    int    // open sockets the listener recorded
	Outq       int64  // Σ SIOCOUTQ
	Queued     int64  // Σ SK_MEMINFO_WMEM_QUEUED
	MaxOutq    int64
	MaxQueued  int64
	MaxSndbuf  int64
}

// burstResult is the server's answer to "burst": how long the loop took
// and the peaks sampled meanwhile.
type burstResult struct {
	Took     time.Duration
	PeakHeap uint64
	PeakRSS  uint64
	PeakLive uint64 // /gc/heap/live:bytes, as the collections that ran meanwhile left it
	// PeakForced is the largest live heap found by the collections forced
	// every -gc-every broadcasts (0 without). A collection that runs while
	// the broadcasts go on counts what they allocate meanwhile as live
	// (floating garbage, several MiB here), so PeakLive varies from run to
	// run by more than the bound's margin; a forced one, with the
	// broadcaster waiting for it, counts what the hub holds.
	PeakForced uint64
	Settled    time.Duration
}

// server serves a hub on loopback, prints its address, then answers the
// commands it reads on stdin with one JSON line each: "measure" (GC, then
// a sample) and "burst <msgs> <size> <gc-every>".
func server(queueBytes, queueMsgs int) {
	hub := wsroom.New(wsroom.Options{
		OnConnect:         func(c *wsroom.Conn, _ *http.Request) error { return c.Join("r") },
		SendQueueBytes:    queueBytes,
		SendQueueMessages: queueMsgs,
		PingInterval:      -1, // the clients never answer pings
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	socks := &sysstat.SocketList{Listener: ln}
	go http.Serve(socks, hub)
	fmt.Println(ln.Addr())
	out := json.NewEncoder(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && f[0] == "measure":
			runtime.GC()
			runtime.GC()
			out.Encode(measure(hub, socks))
		case len(f) == 4 && f[0] == "burst":
			msgs, _ := strconv.Atoi(f[1])
			size, _ := strconv.Atoi(f[2])
			gcEvery, _ := strconv.Atoi(f[3])
			out.Encode(burst(hub, socks, msgs, size, gcEvery))
		default:
			log.Fatalf("unknown command %q", sc.Text())
		}
	}
}

// burst broadcasts msgs messages of size bytes back to back while a
// goroutine samples the heap and RSS every 10 ms, then waits until the
// sockets' send queues stop changing.
func burst(hub *wsroom.Hub, socks *sysstat.SocketList, msgs, size, gcEvery int) burstResult {
	var r burstResult
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		ms := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(ms)
			r.PeakHeap = max(r.PeakHeap, ms[0].Value.Uint64())
			r.PeakLive = max(r.PeakLive, ms[1].Value.Uint64())
			r.PeakRSS = max(r.PeakRSS, rss())
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	room := hub.Room("r")
	start := time.Now()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	for i := range msgs {
		room.Broadcast(wsroom.Binary(make([]byte, size)))
		if gcEvery > 0 && (i+1)%gcEvery == 0 {
			runtime.GC()
			metrics.Read(live)
			r.PeakForced = max(r.PeakForced, live[0].Value.Uint64())
		}
	}
	r.Took = time.Since(start)
	last, since := int64(-1), time.Now()
	for time.Since(since) < 200*time.Millisecond {
		if outq := socks.SendMem().Outq; outq != last {
			last, since = outq, time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Settled = time.Since(start) - r.Took
	close(quit)
	<-done
	return r
}

func measure(hub *wsroom.Hub, socks *sysstat.SocketList) sample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := hub.Stats()
	k := socks.SendMem()
	return sample{Heap: ms.HeapAlloc, RSS: rss(), Goroutines: runtime.NumGoroutine(), Conns: st.Connections, Kicked: st.SlowConsumerCloses,
		Sockets: k.Sockets, Outq: k.Outq, Queued: k.Queued, MaxOutq: k.MaxOutq, MaxQueued: k.MaxQueued, MaxSndbuf: k.MaxSndbuf}
}

// rss returns the server's VmRSS in bytes.
func rss() uint64 {
	n, err := sysstat.RSS()
	if err != nil {
		log.Fatal(err)
	}
	return n
}

func client(n, msgs, size, mss, rcvbuf, queueBytes, queueMsgs, gcEvery int) Result {
	cmd := exec.Command(os.Args[0], "-serve", "-queue-bytes", strconv.Itoa(queueBytes), "-queue-msgs", strconv.Itoa(queueMsgs))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	out := bufio.NewScanner(stdout)
	out.Buffer(nil, 1<<20)
	out.Scan()
	addr := out.Text()
	ask := func(cmd string, v any) {
		fmt.Fprintln(stdin, cmd)
		if !out.Scan() {
			log.Fatal("server gone")
		}
		if err := json.Unmarshal(out.Bytes(), v); err != nil {
			log.Fatalf("%s: %v", cmd, err)
		}
	}
	// One connection first, so the hub's poller exists in the baseline.
	first := dial(addr, mss, rcvbuf)
	time.Sleep(200 * time.Millisecond)
	var before, after sample
	ask("measure", &before)
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, dial(addr, mss, rcvbuf))
	}
	defer func() {
		for _, c := range append(conns, first) {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	var connected sample
	for start := time.Now(); connected.Conns != n+1; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			log.Fatalf("server has %d connections, want %d", connected.Conns, n+1)
		}
		ask("measure", &connected)
	}
	tcp0 := sysstat.TCPMemPages()
	var b burstResult
	ask(fmt.Sprintf("burst %d %d %d", msgs, size, gcEvery), &b)
	tcp1 := sysstat.TCPMemPages()
	ask("measure", &after)

	return Result{N: n, Msgs: msgs, Size: size, Rcvbuf: rcvbuf, MSS: mss, QueueBytes: queueBytes, QueueMsgs: queueMsgs,
		Burst: b, Before: before, Connected: connected, After: after, TCPMemBefore: tcp0, TCPMemAfter: tcp1}
}

// print writes r for people.
func (r Result) print() {
	n, rcvbuf, mss, msgs, size, queueBytes, queueMsgs := r.N, r.Rcvbuf, r.MSS, r.Msgs, r.Size, r.QueueBytes, r.QueueMsgs
	b, before, after, tcp0, tcp1 := r.Burst, r.Before, r.After, r.TCPMemBefore, r.TCPMemAfter
	perConn := func(a, b int64) float64 { return float64(a-b) / float64(n) }
	fmt.Printf("%d stalled connections (SO_RCVBUF %d, MSS %s), %d broadcasts of %d bytes back to back; SendQueueBytes %s, SendQueueMessages %s; %s/%s\n",
		n, rcvbuf, orDefault(mss, "loopback's"), msgs, size, orDefault(queueBytes, "default"), orDefault(queueMsgs, "default"), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("broadcast loop:   %v (then %v until the send queues settled)\n", b.Took.Round(time.Millisecond), b.Settled.Round(time.Millisecond))
	fmt.Printf("slow-consumer closes: %d of %d (the n stalled connections and the first one, which is stalled too)\n", after.Kicked-before.Kicked, n+1)
	fmt.Printf("heap (live, GC):  %8.0f B/conn  (%d -> %d)\n", perConn(int64(after.Heap), int64(before.Heap)), before.Heap, after.Heap)
	fmt.Printf("RSS:              %8.0f B/conn  (%d -> %d)\n", perConn(int64(after.RSS), int64(before.RSS)), before.RSS, after.RSS)
	fmt.Printf("peaks during the burst: heap %d MiB (live %d MiB), RSS %d MiB\n", b.PeakHeap>>20, b.PeakLive>>20, b.PeakRSS>>20)
	if b.PeakForced > 0 {
		fmt.Printf("largest live heap a forced collection found: %d MiB\n", b.PeakForced>>20)
	}
	fmt.Printf("kernel, send queues (SIOCOUTQ):    %8.0f B/conn  (Σ %d MiB, largest %d KiB)\n", perConn(after.Outq, before.Outq), after.Outq>>20, after.MaxOutq>>10)
	fmt.Printf("kernel, write memory (wmem_queued): %8.0f B/conn  (Σ %d MiB, largest %d KiB, send buffer up to %d KiB)\n",
		perConn(after.Queued, before.Queued), after.Queued>>20, after.MaxQueued>>10, after.MaxSndbuf>>10)
	fmt.Printf("machine TCP memory (/proc/net/sockstat): %d -> %d MiB; net.ipv4.tcp_mem %s pages\n",
		tcp0*int64(os.Getpagesize())>>20, tcp1*int64(os.Getpagesize())>>20, strings.TrimSpace(readFile("/proc/sys/net/ipv4/tcp_mem")))
	fmt.Printf("goroutines:       %d -> %d\n", before.Goroutines, after.Goroutines)
	fmt.Println("(closed connections are counted until their blocked writer gives up: WriteTimeout, 10 s by default)")
}

func orDefault(v int, def string) string {
	if v == 0 {
		return def
	}
	return strconv.Itoa(v)
}

// dial opens a WebSocket connection with a raw handshake on a socket whose
// SO_RCVBUF (and TCP_MAXSEG, if mss > 0) is set before connect, and reads
// nothing after the 101.
func dial(addr string, mss, rcvbuf int) net.Conn {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			if serr == nil && mss > 0 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	// A 256-byte reader takes the 101 and nothing more: the server sends
	// nothing else before the burst, and nothing is read after.
	if _, _, err := rawws.Upgrade(c, addr, "/", "", 256); err != nil {
		log.Fatal(err)
	}
	return c
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
