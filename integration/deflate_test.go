package integration

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// permessage-deflate (RFC 7692) against real clients: Chromium's WebSocket
// and Node's `ws` offer it by default. Two clients, A and B, join one room;
// A sends messages, which the server broadcasts to the room (A included).
// The tests check the negotiated extension as the clients report it (and
// as the server wrote it, where its connections are counted), that both
// clients receive exactly what A sent, and the bytes on the wire from the
// hub's Stats: a large compressible message takes far fewer bytes than its
// plain frame in both directions, and a message below the threshold goes
// out plain, byte for byte.

// deflateAnswer is wsroom's answer to a permessage-deflate offer (see
// docs/compression.md): no context takeover in either direction.
const deflateAnswer = "permessage-deflate;server_no_context_takeover;client_no_context_takeover"

// deflateVariant is one server setup.
type deflateVariant struct {
	name     string
	compress bool // Options.Compression.Enabled
	counted  bool // a countingListener: reader goroutines instead of the poller
}

var deflateVariants = []deflateVariant{
	{"poller", true, false},
	{"counted", true, true},
	{"disabled", false, true},
}

// deflateRoom is the server: every connection joins room "r" in OnConnect,
// and OnMessage broadcasts each message to "r". Connections are named by
// the "peer" query parameter. Pings are off, so that only the test's
// messages cross the wire between two Stats snapshots.
type deflateRoom struct {
	deflateVariant
	hub      *wsroom.Hub
	srv      *httptest.Server
	counter  *countingListener // nil unless counted
	inflight atomic.Int32      // ServeHTTP calls that have not returned

	mu     sync.Mutex
	offers map[string]string // each peer's Sec-WebSocket-Extensions offer
}

func newDeflateRoom(t *testing.T, v deflateVariant, page string) *deflateRoom {
	t.Helper()
	d := &deflateRoom{deflateVariant: v, offers: map[string]string{}}
	logs := new(syncBuffer)
	d.hub = wsroom.New(wsroom.Options{
		ReadLimit:    1 << 20,
		PingInterval: -1,
		Compression:  wsroom.CompressionOptions{Enabled: v.compress},
		Identify: func(r *http.Request) (string, error) {
			return r.URL.Query().Get("peer"), nil
		},
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			d.mu.Lock()
			d.offers[c.UserID()] = strings.Join(r.Header.Values("Sec-WebSocket-Extensions"), ", ")
			d.mu.Unlock()
			return c.Join("r")
		},
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			if err := d.hub.Room("r").Broadcast(m); err != nil {
				logs.Write([]byte("Broadcast: " + err.Error() + "\n"))
			}
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		d.inflight.Add(1)
		defer d.inflight.Add(-1)
		d.hub.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(page))
	})
	var wrap func(net.Listener) net.Listener
	if v.counted {
		wrap = func(l net.Listener) net.Listener {
			d.counter = &countingListener{Listener: l}
			return d.counter
		}
	}
	d.srv = serveOn(t, &testHub{Hub: d.hub, logs: logs}, mux, wrap)
	return d
}

// url is the room endpoint for the named peer.
func (d *deflateRoom) url(peer string) string { return wsURL(d.srv, peer) }

// negotiated is what a client says was negotiated.
type negotiated struct {
	Peer       string `json:"peer"`
	Extensions string `json:"extensions"` // the client API's view (WebSocket.extensions)
	Header     string `json:"header"`     // Sec-WebSocket-Extensions of the 101 response it received
}

// roomClients drives the two clients of a test, A and B.
type roomClients interface {
	// send makes A send m and returns the next message A and B received.
	send(t *testing.T, m wsroom.Message) (a, b peerMessage)
	// close closes both with 1000 and returns the codes of the server's
	// close frames.
	close(t *testing.T) [2]int
}

// deflateMessages returns what A sends: about 64 KiB of JSON records
// (text that compresses well, and above the 16-bit frame length) and a
// short text below the compression threshold, both with 4-byte UTF-8.
func deflateMessages() []wsroom.Message {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < 64<<10; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"user":"user-%d","room":"r","text":"grüße from the deflate test 😀","ts":%d}`,
			i, i%37, 1763726400000+i*1379)
	}
	b.WriteByte(']')
	return []wsroom.Message{
		wsroom.Text(b.String()),
		wsroom.Text(`{"user":"a","text":"short: grüße 😀"}`),
	}
}

// frameLen is the size of an unfragmented, uncompressed frame.
func frameLen(payload int, masked bool) uint64 {
	n := 2 + payload
	switch {
	case payload > 0xffff:
		n += 8
	case payload > 125:
		n += 2
	}
	if masked {
		n += 4
	}
	return uint64(n)
}

// checkNegotiation checks what each client and the server say was
// negotiated, and which read path the server's connections took.
// wantExt is the clients' WebSocket.extensions when compression is on.
func (d *deflateRoom) checkNegotiation(t *testing.T, clients []negotiated, wantExt string) {
	t.Helper()
	wantHeader := ""
	if d.compress {
		wantHeader = deflateAnswer
	} else {
		wantExt = ""
	}
	for _, c := range clients {
		if c.Header != wantHeader {
			t.Errorf("%s received Sec-WebSocket-Extensions %q, want %q", c.Peer, c.Header, wantHeader)
		}
		if c.Extensions != wantExt {
			t.Errorf("%s: WebSocket.extensions is %q, want %q", c.Peer, c.Extensions, wantExt)
		}
		d.mu.Lock()
		offer := d.offers[c.Peer]
		d.mu.Unlock()
		if !strings.Contains(offer, "permessage-deflate") {
			t.Errorf("%s offered %q, want a permessage-deflate offer", c.Peer, offer)
		}
		t.Logf("%s offered %q; answer %q; extensions %q", c.Peer, offer, c.Header, c.Extensions)
	}

	if d.counted {
		answers, err := d.counter.answers()
		if err != nil {
			t.Fatalf("reading the server's 101 responses: %v", err)
		}
		if len(answers) != len(clients) {
			t.Errorf("the server upgraded %d connections, want %d", len(answers), len(clients))
		}
		for _, a := range answers {
			if a != wantHeader {
				t.Errorf("the server answered Sec-WebSocket-Extensions %q, want %q", a, wantHeader)
			}
		}
	}

	// A polled connection's ServeHTTP returns once it is handed to the
	// poller (Linux, plain *net.TCPConn); otherwise it runs until the end.
	want := int32(len(clients))
	if !d.counted && runtime.GOOS == "linux" {
		want = 0
	}
	wstest.WaitFor(t, fmt.Sprintf("%d ServeHTTP calls in flight", want), func() bool { return d.inflight.Load() == want })
}

// wire is a snapshot of the hub's counters (and the counting listener's).
type wire struct {
	stats   wsroom.Stats
	in, out uint64 // countingListener; 0 when not counted
}

func (d *deflateRoom) snapshot() wire {
	w := wire{stats: d.hub.Stats()}
	if d.counted {
		w.in, w.out = d.counter.traffic()
	}
	return w
}

// exchange has A send each message and checks that A and B receive it
// exactly, and its bytes on the wire.
func (d *deflateRoom) exchange(t *testing.T, clients roomClients) {
	t.Helper()
	threshold := wsroom.DefaultCompressionThreshold
	for _, m := range deflateMessages() {
		before := d.snapshot()
		a, b := clients.send(t, m)
		compare(t, "A got back", []wsroom.Message{m}, []peerMessage{a})
		compare(t, "B got", []wsroom.Message{m}, []peerMessage{b})
		// Stats counts a write after it returns: wait for both.
		wstest.WaitFor(t, "the broadcast to be counted", func() bool {
			s := d.hub.Stats()
			return s.MessagesIn-before.stats.MessagesIn == 1 && s.MessagesOut-before.stats.MessagesOut == 2
		})
		after := d.snapshot()
		in := after.stats.BytesIn - before.stats.BytesIn
		out := after.stats.BytesOut - before.stats.BytesOut
		if d.counted && (after.in-before.in != in || after.out-before.out != out) {
			t.Errorf("the listener counted %d bytes in and %d out, Stats %d and %d",
				after.in-before.in, after.out-before.out, in, out)
		}

		n := len(m.Data)
		plainIn, plainOut := frameLen(n, true), 2*frameLen(n, false)
		t.Logf("%d-byte text: %d bytes in (%.1f%% of the plain frame), %d bytes out to 2 recipients (%.1f%%)",
			n, in, 100*float64(in)/float64(plainIn), out, 100*float64(out)/float64(plainOut))
		switch {
		case !d.compress:
			if in != plainIn || out != plainOut {
				t.Errorf("%d-byte text without compression: %d bytes in, %d out; want plain frames, %d and %d",
					n, in, out, plainIn, plainOut)
			}
		case n < threshold:
			if out != plainOut {
				t.Errorf("%d-byte text below the threshold went out as %d bytes, want plain frames, %d", n, out, plainOut)
			}
		default:
			// Repeated JSON compresses about tenfold; a quarter of the
			// payload is far from either way.
			if in >= uint64(n/4) {
				t.Errorf("A's compressed %d-byte text took %d bytes on the wire, want < %d", n, in, n/4)
			}
			if out >= uint64(2*n/4) {
				t.Errorf("the compressed broadcast of %d bytes to 2 recipients took %d bytes, want < %d", n, out, 2*n/4)
			}
		}
	}
}

// finish closes the clients and waits for the hub to let them go.
func (d *deflateRoom) finish(t *testing.T, clients roomClients) {
	t.Helper()
	for i, code := range clients.close(t) {
		if code != int(wsroom.StatusNormalClosure) {
			t.Errorf("client %c: the server answered its close with %d, want 1000", 'A'+i, code)
		}
	}
	wstest.WaitFor(t, "no connections left", func() bool { return d.hub.Stats().Connections == 0 })
}

// waitMembers waits until n clients are in the room.
func (d *deflateRoom) waitMembers(t *testing.T, n int) {
	t.Helper()
	wstest.WaitFor(t, fmt.Sprintf("%d members in the room", n), func() bool { return d.hub.Room("r").Len() == n })
}

// TestDeflateChromium runs the room with two tabs of headless Chromium.
func TestDeflateChromium(t *testing.T) {
	browser := startBrowser(t)
	for _, v := range deflateVariants {
		t.Run(v.name, func(t *testing.T) {
			d := newDeflateRoom(t, v, deflatePage)
			clients, neg := openChromiumPair(t, browser, d)
			d.waitMembers(t, 2)
			// Chromium's WebSocket.extensions is the header it accepted.
			d.checkNegotiation(t, neg, deflateAnswer)
			d.exchange(t, clients)
			d.finish(t, clients)
		})
	}
}

// TestDeflateNodeWS runs the room with two clients of Node's `ws` package
// in one process (node/deflate-peer.mjs).
func TestDeflateNodeWS(t *testing.T) {
	node := requireNodeWS(t)
	for _, v := range deflateVariants {
		t.Run(v.name, func(t *testing.T) {
			d := newDeflateRoom(t, v, "")
			clients, neg := startNodePair(t, node, d)
			d.waitMembers(t, 2)
			// ws's extensions property lists the names only.
			d.checkNegotiation(t, neg, "permessage-deflate")
			d.exchange(t, clients)
			d.finish(t, clients)
		})
	}
}
