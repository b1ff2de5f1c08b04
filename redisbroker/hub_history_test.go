package redisbroker_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// v1Msg is a wsroom.v1 frame: its header and data.
type v1Msg struct {
	header map[string]any
	raw    string // the header as sent
	data   string
}

func (m v1Msg) str(k string) string { s, _ := m.header[k].(string); return s }

func (m v1Msg) num(k string) uint64 { f, _ := m.header[k].(float64); return uint64(f) }

// v1Client is a wsroom.v1 client connection, bound to its test.
type v1Client struct {
	*wstest.Conn
	t    testing.TB
	name string
}

// dialV1 connects with the wsroom.v1 subprotocol; resume, if not nil,
// goes in the wsroom_resume parameter (see docs/protocol.md).
func dialV1(t testing.TB, base string, resume map[string]any) *v1Client {
	t.Helper()
	u := base
	if resume != nil {
		b, _ := json.Marshal(resume)
		u += "&" + wsroom.ResumeParam + "=" + url.QueryEscape(base64.RawURLEncoding.EncodeToString(b))
	}
	c := wstest.Dial(t, u, http.Header{"Sec-WebSocket-Protocol": {wsroom.ProtocolV1}})
	if p := c.Resp.Header.Get("Sec-WebSocket-Protocol"); p != wsroom.ProtocolV1 {
		t.Fatalf("subprotocol %q, want %s", p, wsroom.ProtocolV1)
	}
	return &v1Client{Conn: c, t: t, name: u}
}

// next reads the next wsroom.v1 frame.
func (c *v1Client) next() v1Msg {
	c.t.Helper()
	_, b, err := c.ReadWithin(10 * time.Second)
	if err != nil {
		c.t.Fatalf("%s: want a wsroom.v1 frame: %v", c.name, err)
	}
	h, d, ok := strings.Cut(string(b), "\n")
	if !ok {
		c.t.Fatalf("frame %q has no header line", b)
	}
	m := v1Msg{raw: h, data: d}
	if err := json.Unmarshal([]byte(h), &m.header); err != nil {
		c.t.Fatalf("header %q: %v", h, err)
	}
	return m
}

// expectV1 reads the next frame and checks its header (exactly) and data.
func (c *v1Client) expectV1(header, data string) {
	c.t.Helper()
	if m := c.next(); m.raw != header || m.data != data {
		c.t.Fatalf("got %s %q, want %s %q", m.raw, m.data, header, data)
	}
}

// historyHub starts a hub on the broker options bo whose rooms named h…
// keep history.
func historyHub(t *testing.T, bo redisbroker.Options) *node {
	return newNodeWith(t, &bo, func(o *wsroom.Options) {
		o.History = func(room string) wsroom.History {
			if strings.HasPrefix(room, "h") {
				return wsroom.History{Messages: 100}
			}
			return wsroom.History{}
		}
	})
}

// TestResumeAcrossNodes: a wsroom.v1 client gets positions on node A,
// goes away while both nodes broadcast, resumes on node B and gets exactly
// what it missed, then live messages; when Redis loses the history, the
// next broadcast starts a new epoch and a resume from the old one is told
// so. On one Redis and on a three-master cluster.
func TestResumeAcrossNodes(t *testing.T) {
	t.Run("OneRedis", func(t *testing.T) {
		srv := redistest.Start(t)
		resumeAcrossNodes(t, redisbroker.Options{Addrs: []string{srv.Addr}}, func() { flushAll(t, srv.Addr) })
	})
	t.Run("Cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3)
		resumeAcrossNodes(t, redisbroker.Options{Addrs: c.Addrs()[:1], Cluster: true}, func() {
			for _, a := range c.Addrs() {
				flushAll(t, a)
			}
		})
	})
}

func flushAll(t *testing.T, addr string) {
	t.Helper()
	if _, err := redistest.Command(addr, "FLUSHALL"); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
}

func resumeAcrossNodes(t *testing.T, bo redisbroker.Options, loseHistory func()) {
	a, b := historyHub(t, bo), historyHub(t, bo)
	c := dialV1(t, a.url+"?user=u&room=hist", nil)
	if m := c.next(); m.str("t") != "hello" {
		t.Fatalf("first frame %s, want hello", m.raw)
	}
	joined := c.next()
	epoch := joined.str("e")
	if joined.str("t") != "joined" || epoch == "" || joined.num("o") != 0 {
		t.Fatalf("joined: %s; want an epoch at offset 0", joined.raw)
	}
	wantMembers(t, a, "hist", 1)
	waitSubscribers(t, a, bo, "room:hist", 1)
	// Broadcasts from B, which has no member.
	for i := 1; i <= 3; i++ {
		if err := b.hub.Room("hist").Broadcast(wsroom.Text("m" + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		c.expectV1(fmt.Sprintf(`{"r":"hist","e":%q,"o":%d}`, epoch, i), "m"+strconv.Itoa(i))
	}
	c.Close()
	waitUntil(t, "u gone from A", func() bool { return !a.hub.Connected("u") })

	for i, n := range []*node{a, b, a} { // while it is away, from both nodes
		if err := n.hub.Room("hist").Broadcast(wsroom.Text("away" + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	c = dialV1(t, b.url+"?user=u&room=hist", map[string]any{"r": map[string]any{"hist": []any{epoch, 3}}})
	c.next() // hello
	for i := range 3 {
		c.expectV1(fmt.Sprintf(`{"r":"hist","e":%q,"o":%d}`, epoch, 4+i), "away"+strconv.Itoa(i))
	}
	c.expectV1(fmt.Sprintf(`{"t":"joined","r":"hist","e":%q,"o":6,"resumed":3}`, epoch), "")
	waitSubscribers(t, b, bo, "room:hist", 1)
	a.hub.Room("hist").Broadcast(wsroom.Text("live"))
	c.expectV1(fmt.Sprintf(`{"r":"hist","e":%q,"o":7}`, epoch), "live")
	expectNothing(t, c.Conn)

	// Redis loses the history: the next broadcast starts a new epoch.
	loseHistory()
	a.hub.Room("hist").Broadcast(wsroom.Text("after"))
	m := c.next()
	if m.str("e") == epoch || m.str("e") == "" || m.num("o") != 1 || m.data != "after" {
		t.Fatalf("after the history was lost: %s %q; want a new epoch at offset 1", m.raw, m.data)
	}
	// Resuming from the lost epoch, on either node: what Redis keeps of
	// the new one, then joined with lost.
	for _, n := range []*node{a, b} {
		d := dialV1(t, n.url+"?user=v&room=hist", map[string]any{"r": map[string]any{"hist": []any{epoch, 7}}})
		d.next() // hello
		d.expectV1(fmt.Sprintf(`{"r":"hist","e":%q,"o":1}`, m.str("e")), "after")
		if m := d.next(); m.str("t") != "joined" || m.str("lost") != "epoch" {
			t.Fatalf("resuming from the lost epoch: %s, want joined with lost epoch", m.raw)
		}
	}
}

// waitSubscribers waits until want connections subscribe to topic's
// channel, on every server of bo (sharded subscriptions in Cluster mode).
func waitSubscribers(t testing.TB, n *node, bo redisbroker.Options, topic string, want int64) {
	t.Helper()
	channel := n.broker.ChannelOf(topic)
	cmd := "NUMSUB"
	if bo.Cluster {
		cmd = "SHARDNUMSUB"
	}
	waitUntil(t, "subscribers of "+topic, func() bool {
		var total int64
		for _, addr := range serverAddrs(t, bo) {
			k, err := redistest.PubsubCount(addr, cmd, channel)
			if err != nil {
				t.Fatalf("PUBSUB %s: %v", cmd, err)
			}
			total += k
		}
		return total == want
	})
}

// serverAddrs returns the addresses of bo's servers (a cluster's masters).
func serverAddrs(t testing.TB, bo redisbroker.Options) []string {
	if !bo.Cluster {
		return bo.Addrs
	}
	nodes, err := redistest.Command(bo.Addrs[0], "CLUSTER", "NODES")
	if err != nil {
		t.Fatalf("CLUSTER NODES: %v", err)
	}
	var addrs []string
	for _, l := range strings.Split(nodes, "\n") {
		if f := strings.Fields(l); len(f) > 2 && strings.Contains(f[2], "master") {
			addrs = append(addrs, strings.SplitN(f[1], "@", 2)[0])
		}
	}
	return addrs
}

// patience is how long this package's presence, history and health
// tests wait for a condition, longer than wstest.Patience's 10 s.
const patience = 15 * time.Second

// poll is wstest.Poll every 5 ms for patience: it reports whether cond
// came true, for callers whose failure message shows the last state.
func poll(cond func() bool) bool { return wstest.Poll(5*time.Millisecond, patience, cond) }

// waitUntil is wstest.WaitFor with this package's patience.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !poll(cond) {
		t.Fatalf("timed out after %v waiting for %s", patience, what)
	}
}
