// Command idlemem measures what an idle WebSocket connection costs a
// wsroom server: heap bytes, RSS and goroutines per connection.
//
//	go run ./internal/idlemem -n 10000
//	go run ./internal/idlemem -n 19500
//	go run ./internal/idlemem -n 10000 -fallback   # reader goroutine per conn
//
// It starts itself again as the server (a subprocess, so the clients'
// memory and fds are not counted), opens n connections from this process
// with raw handshakes, leaves them idle, and asks the server to measure
// after a forced GC and returning free memory to the OS. The figures are
// (with n connections − with none) / n. The hub is set up like a typical
// app's (and like bench/'s): the user ID comes from the URL, every user has
// two connections, and every connection joins one room.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/rawws"
	"github.com/wsroom/wsroom/internal/sysstat"
)

var heapProfile string

func main() {
	n := flag.Int("n", 10000, "idle connections")
	fallback := flag.Bool("fallback", false, "wrap the listener so connections use a reader goroutine")
	serve := flag.Bool("serve", false, "internal: run as the server")
	flag.StringVar(&heapProfile, "heapprofile", "", "server: write a heap profile (every allocation sampled) here at the last measurement")
	flag.Parse()
	if *serve {
		if heapProfile != "" {
			runtime.MemProfileRate = 1
		}
		server(*fallback)
		return
	}
	client(*n, *fallback)
}

// sample is one measurement of the server.
type sample struct {
	heap, rss, stacks uint64
	inuse, other      uint64 // heap spans in use; runtime memory outside the heap (incl. poll descriptors)
	goroutines        int
}

func measure() sample {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := sysstat.RSS()
	if err != nil {
		log.Fatal(err)
	}
	return sample{heap: ms.HeapAlloc, rss: rss, stacks: ms.StackInuse, goroutines: runtime.NumGoroutine(),
		inuse: ms.HeapInuse, other: ms.OtherSys + ms.GCSys + ms.MSpanInuse}
}

// server serves a hub on loopback, prints its address, then answers each
// "measure" line on stdin with a sample.
func server(fallback bool) {
	hub := wsroom.New(wsroom.Options{
		Identify:  func(r *http.Request) (string, error) { return r.URL.Query().Get("u"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Join("r") },
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if fallback {
		ln = wrappedListener{ln}
	}
	go http.Serve(ln, hub)
	fmt.Println(ln.Addr())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		s := measure()
		if heapProfile != "" {
			f, err := os.Create(heapProfile)
			if err != nil {
				log.Fatal(err)
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		fmt.Println(s.heap, s.rss, s.stacks, s.goroutines, s.inuse, s.other, hub.Stats().Connections)
	}
}

type wrappedListener struct{ net.Listener }

type wrappedConn struct{ net.Conn }

func (l wrappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c}, nil
}

func client(n int, fallback bool) {
	args := []string{"-serve", "-heapprofile=" + heapProfile}
	if fallback {
		args = append(args, "-fallback")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewScanner(stdout)
	out.Scan()
	addr := out.Text()
	ask := func() (s sample, conns int) {
		fmt.Fprintln(stdin, "measure")
		if !out.Scan() {
			log.Fatal("server gone")
		}
		fmt.Sscan(out.Text(), &s.heap, &s.rss, &s.stacks, &s.goroutines, &s.inuse, &s.other, &conns)
		return s, conns
	}
	// One connection first, so the hub's heartbeat and poller exist in
	// the baseline and the deltas are per connection.
	first := dial(addr, "first")
	time.Sleep(200 * time.Millisecond)
	base, _ := ask()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		conns = append(conns, dial(addr, "u"+strconv.Itoa(i/2)))
	}
	time.Sleep(time.Second)
	s, open := ask()
	if open != n+1 {
		log.Fatalf("server has %d connections, want %d", open, n+1)
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	mode := "poller"
	if fallback {
		mode = "fallback (reader goroutine)"
	}
	fmt.Printf("%d idle connections, %s, %s/%s\n", n, mode, runtime.GOOS, runtime.GOARCH)
	fmt.Printf("heap:       %8.0f B/conn  (%d -> %d)\n", per(s.heap, base.heap), base.heap, s.heap)
	fmt.Printf("RSS:        %8.0f B/conn  (%d -> %d)\n", per(s.rss, base.rss), base.rss, s.rss)
	fmt.Printf("heap spans: %8.0f B/conn  (in use, incl. free slots)\n", per(s.inuse, base.inuse))
	fmt.Printf("runtime:    %8.0f B/conn  (GC metadata, spans, poll descriptors, ...)\n", per(s.other, base.other))
	fmt.Printf("stacks:     %8.0f B/conn\n", per(s.stacks, base.stacks))
	fmt.Printf("goroutines: %8.3f /conn   (%d -> %d)\n", float64(s.goroutines-base.goroutines)/float64(n), base.goroutines, s.goroutines)
	for _, c := range conns {
		c.Close()
	}
	first.Close()
}

// dial opens a WebSocket connection with a raw handshake.
func dial(addr, user string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := rawws.Upgrade(c, addr, "/?u="+user, "", 4096); err != nil {
		log.Fatal(err)
	}
	return c
}
