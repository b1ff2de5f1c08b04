//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
)

// A child is one node: a Hub with a Redis broker and cluster presence,
// served on a unix socket, with its clients in the same process (they
// dial the socket: no TCP port is used). It reads commands, one JSON
// object per line, on stdin and answers each with one JSON line on
// stdout.

type command struct {
	Op      string `json:"op"`
	Room    string `json:"room,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	N       int    `json:"n,omitempty"`
	K       int    `json:"k,omitempty"`
	Users   int    `json:"users,omitempty"`
	Rooms   int    `json:"rooms,omitempty"`
	Workers int    `json:"workers,omitempty"`
	Seed    uint64 `json:"seed,omitempty"`
	Churn   bool   `json:"churn,omitempty"`  // presence: change the room before each query
	Append  bool   `json:"append,omitempty"` // presence: Room.AppendPresence into one reused slice, not Room.Presence
}

type answer struct {
	Err     string           `json:"err,omitempty"`
	Lat     []int64          `json:"lat,omitempty"`    // latencies, ns
	Users   int              `json:"users,omitempty"`  // what a query returned
	Counts  []int            `json:"counts,omitempty"` // what each Disconnect closed
	Open    map[string]int   `json:"open,omitempty"`   // "room|user" → connections open here
	Events  map[string][]int `json:"events,omitempty"` // "room|user" → [joins, leaves] reported here
	Elapsed int64            `json:"elapsed,omitempty"`
}

type childNode struct {
	hub     *wsroom.Hub
	sock    string
	redis   string
	churn   *redisbroker.Broker // another node's broker, to change rooms (presence with Churn)
	presBuf []wsroom.Presence   // AppendPresence's slice, reused from query to query

	evMu   sync.Mutex
	events map[string][]int

	mu    sync.Mutex
	conns map[string][]*clientConn // by key of the group that opened them
}

type clientConn struct {
	nc    net.Conn
	user  string
	rooms []string
	done  chan struct{} // closed when its reader returns
}

func runChild(redisAddr, sock string, ttl time.Duration) error {
	n := &childNode{sock: sock, redis: redisAddr, events: map[string][]int{}, conns: map[string][]*clientConn{}}
	b := redisbroker.New(redisbroker.Options{Addrs: []string{redisAddr}, Logger: slog.New(slog.DiscardHandler)})
	n.hub = wsroom.New(wsroom.Options{
		Broker:          b,
		Presence:        true,
		PresenceTimeout: ttl,
		Logger:          slog.New(slog.DiscardHandler),
		Identify:        func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			for _, room := range r.URL.Query()["room"] {
				if err := c.Join(room); err != nil {
					return err
				}
			}
			return nil
		},
		OnPresence: func(e wsroom.PresenceEvent) {
			k := e.Room + "|" + e.UserID
			n.evMu.Lock()
			c := n.events[k]
			if c == nil {
				c = make([]int, 2)
				n.events[k] = c
			}
			if e.Joined {
				c[0]++
			} else {
				c[1]++
			}
			n.evMu.Unlock()
		},
	})
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: n.hub}
	go srv.Serve(ln)
	defer func() {
		if n.churn != nil {
			n.churn.Close()
		}
		n.closeAll()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.hub.Shutdown(ctx)
		srv.Close()
		os.Remove(sock)
	}()

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	out.Encode(answer{}) // ready
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			return err
		}
		if cmd.Op == "quit" {
			return out.Encode(answer{})
		}
		a := n.do(cmd)
		if err := out.Encode(a); err != nil {
			return err
		}
	}
	return in.Err()
}

func (n *childNode) do(cmd command) (a answer) {
	defer func() {
		if v := recover(); v != nil {
			a = answer{Err: fmt.Sprint(v)}
		}
	}()
	ctx := context.Background()
	switch cmd.Op {
	case "members": // n connections of users prefix0… in room
		var rooms []string
		if cmd.Room != "" {
			rooms = []string{cmd.Room}
		}
		for i := range cmd.N {
			n.open(cmd.Prefix, cmd.Prefix+strconv.Itoa(i), rooms)
		}
		if cmd.Room != "" {
			n.waitLocal(cmd.Room, cmd.N)
		}
	case "presence": // k Room.Presence (or AppendPresence) queries, one after the other
		if cmd.Churn && n.churn == nil {
			n.churn = redisbroker.New(redisbroker.Options{Addrs: []string{n.redis}, Logger: slog.New(slog.DiscardHandler)})
			n.churn.Start(func(string, []byte) {})
			n.churn.StartPresence("churn-"+n.sock, time.Minute, nil)
		}
		for i := range cmd.K {
			if cmd.Churn { // a user comes or goes: the kept answer is stale
				if _, err := n.churn.SetPresence(ctx, cmd.Room, "~churn", i%2, nil); err != nil {
					return answer{Err: err.Error()}
				}
			}
			t0 := time.Now()
			var p []wsroom.Presence
			var err error
			if cmd.Append {
				n.presBuf, err = n.hub.Room(cmd.Room).AppendPresence(ctx, n.presBuf[:0])
				p = n.presBuf
			} else {
				p, err = n.hub.Room(cmd.Room).Presence(ctx)
			}
			a.Lat = append(a.Lat, int64(time.Since(t0)))
			if err != nil {
				return answer{Err: err.Error()}
			}
			a.Users = len(p)
		}
	case "disconnect": // Disconnect users prefix0…prefixN-1 across the cluster
		for i := range cmd.N {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			t0 := time.Now()
			k, err := n.hub.Disconnect(ctx, cmd.Prefix+strconv.Itoa(i), 4000, "bench")
			a.Lat = append(a.Lat, int64(time.Since(t0)))
			cancel()
			if err != nil {
				return answer{Err: err.Error()}
			}
			a.Counts = append(a.Counts, k)
		}
	case "online": // how many connections user prefix has in the cluster
		k, err := n.hub.Online(ctx, cmd.Prefix)
		if err != nil {
			return answer{Err: err.Error()}
		}
		a.Users = k
	case "cycles": // n random connects and disconnects by workers
		t0 := time.Now()
		n.cycles(cmd)
		a.Elapsed = int64(time.Since(t0))
		a.Open = n.openCounts("cycle")
	case "events":
		n.evMu.Lock()
		a.Events = make(map[string][]int, len(n.events))
		for k, v := range n.events {
			a.Events[k] = append([]int(nil), v...)
		}
		n.evMu.Unlock()
	case "roompresence": // the room's presence as "user:conns" lines
		p, err := n.hub.Room(cmd.Room).Presence(ctx)
		if err != nil {
			return answer{Err: err.Error()}
		}
		a.Open = make(map[string]int, len(p))
		for _, e := range p {
			a.Open[cmd.Room+"|"+e.UserID] = e.Conns
		}
	default:
		return answer{Err: "unknown op " + cmd.Op}
	}
	return a
}

// open dials one client connection of user joining rooms, in group.
func (n *childNode) open(group, user string, rooms []string) *clientConn {
	q := "?user=" + user
	for _, r := range rooms {
		q += "&room=" + r
	}
	d := ws.Dialer{NetDial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "unix", n.sock)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := d.Dial(ctx, "ws://node/ws"+q)
	if err != nil {
		panic(fmt.Sprintf("dial: %v", err))
	}
	c := &clientConn{nc: nc, user: user, rooms: rooms, done: make(chan struct{})}
	var r io.Reader = nc
	if br != nil {
		r = br
	}
	go func() { // answers pings and the close handshake
		defer close(c.done)
		rw := struct {
			io.Reader
			io.Writer
		}{r, nc}
		for {
			if _, _, err := wsutil.ReadServerData(rw); err != nil {
				nc.Close()
				return
			}
		}
	}()
	n.mu.Lock()
	n.conns[group] = append(n.conns[group], c)
	n.mu.Unlock()
	return c
}

// waitLocal waits until room has want members on this hub.
func (n *childNode) waitLocal(room string, want int) {
	deadline := time.Now().Add(60 * time.Second)
	for n.hub.Room(room).Len() < want {
		if time.Now().After(deadline) {
			panic(fmt.Sprintf("room %s: %d members here, want %d", room, n.hub.Room(room).Len(), want))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cycles runs cmd.N random steps over cmd.Workers workers: each step
// opens a connection of a random user joining some random rooms, or closes
// one of the worker's open connections, at random: each worker first
// opens cyclePool connections, then keeps between 1 and 2 × cyclePool
// open, so that a connection lives for tens of steps.
func (n *childNode) cycles(cmd command) {
	var wg sync.WaitGroup
	per := cmd.N / max(cmd.Workers, 1)
	for w := range max(cmd.Workers, 1) {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(cmd.Seed, uint64(w)))
			var mine []*clientConn
			for range per {
				if len(mine) >= 2*cyclePool || (len(mine) > cyclePool/2 && r.IntN(2) == 0) {
					i := r.IntN(len(mine))
					c := mine[i]
					mine[i] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
					c.nc.Close()
					<-c.done
					n.forget("cycle", c)
					continue
				}
				user := cmd.Prefix + strconv.Itoa(r.IntN(cmd.Users))
				var rooms []string
				for k := range cmd.Rooms {
					if r.IntN(3) == 0 {
						rooms = append(rooms, cmd.Room+strconv.Itoa(k))
					}
				}
				mine = append(mine, n.open("cycle", user, rooms))
			}
		})
	}
	wg.Wait()
}

// cyclePool is about how many connections each cycles worker keeps open.
const cyclePool = 20

func (n *childNode) forget(group string, c *clientConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cs := n.conns[group]
	for i, x := range cs {
		if x == c {
			cs[i] = cs[len(cs)-1]
			n.conns[group] = cs[:len(cs)-1]
			return
		}
	}
}

// openCounts returns, for group's open connections, "room|user" → count
// (room "" for the user's connections).
func (n *childNode) openCounts(group string) map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]int{}
	for _, c := range n.conns[group] {
		out["|"+c.user]++
		for _, r := range c.rooms {
			out[r+"|"+c.user]++
		}
	}
	return out
}

func (n *childNode) closeAll() {
	n.mu.Lock()
	var all []*clientConn
	for _, cs := range n.conns {
		all = append(all, cs...)
	}
	n.mu.Unlock()
	for _, c := range all {
		c.nc.Close()
		<-c.done
	}
}

// percentiles returns p50, p99 and max of ns latencies, in ms.
func percentiles(ns []int64) (p50, p99, mx float64) {
	if len(ns) == 0 {
		return
	}
	s := append([]int64(nil), ns...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 { return float64(s[min(int(q*float64(len(s))), len(s)-1)]) / 1e6 }
	return at(0.50), at(0.99), float64(s[len(s)-1]) / 1e6
}
