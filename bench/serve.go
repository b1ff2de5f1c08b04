package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wsroom/wsroom/internal/sysstat"
)

// payloadSize is the size of every published message unless publish is
// given another; its first 8 bytes are the publish time (UnixNano, little
// endian) for latency.
const payloadSize = 64

// seqOffset is where a message published with seq=1 carries its sequence
// number (8 bytes, little endian: its index in the publish call).
const seqOffset = 8

// serveEnv names the server to run when the binary is re-executed as the
// server process (see startServer).
const serveEnv = "WSROOM_BENCH_SERVE"

// target is one server under test. Every server puts each connection in
// the single room and indexes it by the user named in the "u" query
// parameter of the handshake.
type target interface {
	// handler serves WebSocket handshakes on /ws.
	handler() http.Handler
	// broadcast sends p to every connection. p is never modified
	// afterwards (the compression scenario publishes the same slices again).
	broadcast(p []byte)
	// sendTo sends p to every connection of the given users.
	sendTo(p []byte, users []string)
	// conns is the number of registered connections.
	conns() int
	// counters reports what the server itself counts: connections it
	// kicked (closed for being slow), messages it dropped, and frames
	// that carried more than one message.
	counters() (kicked, dropped, merged int64)
}

// servers lists every server this tool can run, in table order.
// queue is the per-connection message bound beyond which the server kicks
// or drops (0: none); the publisher's window stays below ¾ of it.
var servers = []struct {
	name  string
	new   func() target
	queue int
	note  string
}{
	{"wsroom", newWsroom, 8192, "wsroom Hub, one room, default Options"},
	{"gorilla", newGorilla, 256, "gorilla/websocket examples/chat hub: 2 goroutines/conn, 256-slot send chan, hub goroutine; kicks a client whose chan is full; merges queued messages into one frame"},
	{"melody", newMelody, 256, "olahol/melody defaults: hub goroutine, 2 goroutines/conn, 256-slot buffer; drops messages when full; SendTo is BroadcastFilter (scans all sessions)"},
	{"gobwas-raw", newGobwasRaw, 0, "gobwas/ws via net/http: reader goroutine per conn, frame encoded once, publisher writes each conn directly (mutex), user map for SendTo"},
	{"gobwas-epoll", newGobwasEpoll, 0, "gobwas-raw with one epoll goroutine instead of a reader goroutine per conn (0 goroutines per idle conn): what an idle connection costs at the least"},
	{"coder", newCoder, coderBuffer, "coder/websocket internal/examples/chat: handler goroutine writes + CloseRead goroutine per conn, 16-message channel, kicks (1008) when full, no rate limiter; user map for SendTo; the publisher's window is 12 (¾ of 16) instead of 64/16/192"},
}

// compressServers are the servers of the compression scenario, in table
// order. Every client offers permessage-deflate; deflate says whether the
// server accepts it. They are run by the compression scenario only.
var compressServers = []struct {
	name    string
	new     func() target
	deflate bool
	note    string
}{
	{"wsroom", newWsroom, false, "wsroom with default Options: compression off, offers declined"},
	{"wsroom-deflate", newWsroomDeflate, true, "wsroom with Compression{Enabled: true} and its defaults (threshold 512 B, level 1, no context takeover both ways): a broadcast is compressed once and its frame shared"},
	{"gorilla-prepared", newGorillaPrepared, true, "gorilla's examples/chat hub with Upgrader{EnableCompression: true}, EnableWriteCompression(true) (level 1, no context takeover both ways) and one websocket.PreparedMessage per broadcast written with WritePreparedMessage (compressed once per message); no merging"},
}

// window caps a publisher window at ¾ of the server's queue bound.
func window(server string, w int) int {
	for _, s := range servers {
		if s.name == server && s.queue > 0 {
			return max(1, min(w, s.queue*3/4))
		}
	}
	return w
}

func knownServer(name string) bool {
	for _, s := range servers {
		if s.name == name {
			return true
		}
	}
	return false
}

func newTarget(name string) (target, error) {
	for _, s := range servers {
		if s.name == name {
			return s.new(), nil
		}
	}
	for _, s := range compressServers {
		if s.name == name {
			return s.new(), nil
		}
	}
	return nil, fmt.Errorf("unknown server %q", name)
}

// serverStats is what /ctl/stats reports.
type serverStats struct {
	RSSKiB     int64  `json:"rss_kib"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Goroutines int    `json:"goroutines"`
	CPUMicros  int64  `json:"cpu_us"`
	Conns      int    `json:"conns"`
	Kicked     int64  `json:"kicked"`
	Dropped    int64  `json:"dropped"`
	Merged     int64  `json:"merged"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Published  int64  `json:"published"`
}

// published counts the messages publish has handed to the server.
var published atomic.Int64

// serve runs the server process: it listens on 127.0.0.1:0, prints
// "LISTEN <addr>" on stdout, and serves until stdin closes (the parent
// exited or stopped it). The control endpoints live under /ctl/ on the
// same listener:
//
//	/ctl/stats?gc=1           runtime.GC + debug.FreeOSMemory first, then serverStats
//	/ctl/publish?n=&rate=&users=&json=&size=&seq=  publish n messages (rate per second, 0 = back to back)
//	                          to the room, or with users=k to k users via sendTo;
//	                          json=1 publishes the 4 KiB JSON messages (jsonMessage);
//	                          size=bytes (default 64) and seq=1 (a sequence number at seqOffset)
//	/ctl/sample?every=&kevery= start sampling memory (see sampler); ?stop=1 stops it and returns the samples
//	/ctl/fill?prefix=&size=&writes=&sndbuf=&lowat= the stalled scenario's floor (floor.go; gobwas-raw only)
//
// With socketsEnv set, the listener records every accepted TCP socket so
// that the sampler can read the kernel's send-side memory of each.
func serve(name string, cpu int) error {
	if _, err := sysstat.RaiseNoFile(); err != nil {
		return err
	}
	if cpu >= 0 {
		if err := sysstat.PinToCPU(cpu); err != nil {
			return err
		}
	}
	t, err := newTarget(name)
	if err != nil {
		return err
	}
	for i := range jsonMsgs {
		jsonMsgs[i] = jsonMessage(i)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var socks *sysstat.SocketList
	if os.Getenv(socketsEnv) == "1" {
		socks = &sysstat.SocketList{Listener: ln, OverOutq: overOutq}
		ln = socks
	}
	smp := &sampler{t: t, socks: socks}
	mux := http.NewServeMux()
	mux.Handle("/ws", t.handler())
	mux.HandleFunc("/ctl/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, collectStats(t, r.URL.Query().Get("gc") == "1"))
	})
	mux.HandleFunc("/ctl/publish", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		rate, _ := strconv.ParseFloat(q.Get("rate"), 64)
		size, _ := strconv.Atoi(q.Get("size"))
		var users []string
		if u := q.Get("users"); u != "" {
			users = strings.Split(u, ",")
		}
		start := time.Now()
		if q.Get("json") == "1" {
			publishJSON(t, n)
		} else {
			publish(t, n, rate, users, size, q.Get("seq") == "1")
		}
		writeJSON(w, map[string]int64{"ns": int64(time.Since(start)), "start": start.UnixNano()})
	})
	mux.HandleFunc("/ctl/fill", func(w http.ResponseWriter, r *http.Request) { serveFill(t, w, r) })
	mux.HandleFunc("/ctl/sample", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("stop") == "1" {
			writeJSON(w, smp.stop())
			return
		}
		every, err1 := time.ParseDuration(q.Get("every"))
		kevery, err2 := time.ParseDuration(q.Get("kevery"))
		if err1 != nil || err2 != nil || every <= 0 || (kevery != 0 && kevery < every) {
			http.Error(w, "want every > 0, and kevery 0 (off) or >= every", http.StatusBadRequest)
			return
		}
		smp.start(every, kevery)
		writeJSON(w, map[string]int64{})
	})
	go func() {
		var b [1]byte
		for {
			if _, err := os.Stdin.Read(b[:]); err != nil {
				os.Exit(0)
			}
		}
	}()
	fmt.Printf("LISTEN %s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// publish sends n messages from inside the server process, each a fresh
// slice of size bytes (payloadSize when 0) stamped with the wall clock
// and, with seq, its index at seqOffset, paced at rate per second when
// rate > 0.
func publish(t target, n int, rate float64, users []string, size int, seq bool) {
	if size <= 0 {
		size = payloadSize
	}
	if seq {
		size = max(size, seqOffset+8)
	}
	start := time.Now()
	for i := range n {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		p := make([]byte, size)
		binary.LittleEndian.PutUint64(p, uint64(time.Now().UnixNano()))
		if seq {
			binary.LittleEndian.PutUint64(p[seqOffset:], uint64(i))
		}
		if users != nil {
			t.sendTo(p, users)
		} else {
			t.broadcast(p)
		}
		published.Add(1)
	}
}

// jsonMsgs are the compression scenario's messages, made at start so that
// making them is not counted as server CPU.
var jsonMsgs [jsonVariants][]byte

// textTarget is a target that can broadcast text frames: the servers of
// the compression scenario.
type textTarget interface {
	broadcastText(p []byte)
}

// publishJSON broadcasts n of the 4 KiB JSON messages back to back, cycling
// through jsonMsgs, as text frames where the server can (binary otherwise).
// The servers never modify a published slice, so the same variant is
// handed over again every jsonVariants messages; each broadcast is still
// encoded and compressed anew.
func publishJSON(t target, n int) {
	send := t.broadcast
	if tt, ok := t.(textTarget); ok {
		send = tt.broadcastText
	}
	for range n {
		send(jsonMsgs[published.Load()%jsonVariants])
		published.Add(1)
	}
}

func collectStats(t target, gc bool) serverStats {
	if gc {
		runtime.GC()
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	k, d, m := t.counters()
	rss, _ := sysstat.RSS() // 0 if unknown
	return serverStats{
		RSSKiB:     int64(rss >> 10),
		HeapInuse:  ms.HeapInuse,
		StackInuse: ms.StackInuse,
		Goroutines: runtime.NumGoroutine(),
		CPUMicros:  sysstat.CPUMicros(),
		Conns:      t.conns(),
		Kicked:     k,
		Dropped:    d,
		Merged:     m,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Published:  published.Load(),
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
