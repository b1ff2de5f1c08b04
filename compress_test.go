package wsroom_test

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/wsroom/wsroom"
)

const answerDefault = "permessage-deflate;server_no_context_takeover;client_no_context_takeover"

// echoOpts returns Options for a hub that echoes every message back with
// Conn.Send, with compression enabled.
func echoOpts() wsroom.Options {
	return wsroom.Options{
		Compression: wsroom.CompressionOptions{Enabled: true},
		OnMessage:   func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
	}
}

// offer is a handshake header offering extensions.
func offer(v ...string) http.Header { return http.Header{"Sec-WebSocket-Extensions": v} }

// deflate compresses p as a permessage-deflate payload (tail stripped).
func deflate(t testing.TB, p []byte, level int) []byte {
	t.Helper()
	var b bytes.Buffer
	fw, err := flate.NewWriter(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(p)
	fw.Flush()
	out := b.Bytes()
	if !bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}) {
		t.Fatalf("flush did not end with the sync tail: % x", out[max(0, len(out)-8):])
	}
	return out[:len(out)-4]
}

// inflate decompresses a permessage-deflate payload.
func inflate(t testing.TB, p []byte) []byte {
	t.Helper()
	fr := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(fr)
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// jsonDoc returns a JSON-ish document of about n bytes, compressible like
// real chat traffic.
func jsonDoc(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"type":"update","items":[`)
	for i := 0; b.Len() < n-40; i++ {
		fmt.Fprintf(&b, `{"id":%d,"user":"user-%d","text":"hello from room %d"},`, i, i%17, i%5)
	}
	s := strings.TrimSuffix(b.String(), ",") + `]}`
	for len(s) < n {
		s += " "
	}
	return []byte(s[:n])
}

// sendCompressed sends one compressed, masked message in a single frame.
func (c *client) sendCompressed(op byte, payload []byte) {
	c.t.Helper()
	if err := c.writeRaw(encodeFrame(true, 0x40, op, true, payload)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// expectFrame reads the next data frame and checks its RSV bits, opcode
// and (inflated if compressed) payload.
func (c *client) expectFrame(compressed bool, op byte, want []byte) frame {
	c.t.Helper()
	f, err := c.readFrame(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if f.op == 0x8 {
		c.t.Fatalf("got close %v, want a data frame", (&closeFrameError{f.payload}).Error())
	}
	wantRSV := byte(0)
	if compressed {
		wantRSV = 0x40
	}
	if f.rsv != wantRSV || f.op != op || !f.fin {
		c.t.Fatalf("frame rsv %#x op %d fin %v, want rsv %#x op %d fin", f.rsv, f.op, f.fin, wantRSV, op)
	}
	got := f.payload
	if compressed {
		got = inflate(c.t, got)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("payload %d bytes %.40q, want %d bytes %.40q", len(got), got, len(want), want)
	}
	return f
}

func TestDeflateNegotiation(t *testing.T) {
	t.Parallel()
	on := newServer(t, echoOpts())
	off := newServer(t, wsroom.Options{})
	cases := []struct {
		name   string
		srv    *server
		offers []string
		want   string
	}{
		{"disabled", off, []string{"permessage-deflate"}, ""},
		{"disabled with parameters", off, []string{"permessage-deflate; client_max_window_bits"}, ""},
		{"no offer", on, nil, ""},
		{"plain offer", on, []string{"permessage-deflate"}, answerDefault},
		{"chromium", on, []string{"permessage-deflate; client_max_window_bits"}, answerDefault},
		{"client_max_window_bits value", on, []string{"permessage-deflate; client_max_window_bits=10"}, answerDefault},
		{"server_no_context_takeover", on, []string{"permessage-deflate; server_no_context_takeover"}, answerDefault},
		{"client_no_context_takeover", on, []string{"permessage-deflate; client_no_context_takeover"}, answerDefault},
		{"server_max_window_bits", on, []string{"permessage-deflate; server_max_window_bits=10"}, answerDefault + ";server_max_window_bits=10"},
		{"server_max_window_bits 8", on, []string{"permessage-deflate; server_max_window_bits=8"}, answerDefault + ";server_max_window_bits=8"},
		{"server_max_window_bits quoted", on, []string{`permessage-deflate; server_max_window_bits="9"`}, answerDefault + ";server_max_window_bits=9"},
		{"every parameter", on, []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11"},
			answerDefault + ";server_max_window_bits=12"},
		{"name case", on, []string{"Permessage-Deflate"}, answerDefault},
		{"other extension first", on, []string{"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"}, answerDefault},
		{"first acceptable of several", on, []string{"permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=11, permessage-deflate"},
			answerDefault + ";server_max_window_bits=11"},
		{"first of two acceptable", on, []string{"permessage-deflate; server_max_window_bits=10, permessage-deflate"}, answerDefault + ";server_max_window_bits=10"},
		{"offers on two lines", on, []string{"foo", "permessage-deflate; server_max_window_bits=13"}, answerDefault + ";server_max_window_bits=13"},
		{"declined then plain", on, []string{"permessage-deflate; foo, permessage-deflate"}, answerDefault},
		// Malformed or unsupported offers are declined (RFC 7692 §5.1):
		// the handshake succeeds without the extension.
		{"unknown parameter", on, []string{"permessage-deflate; foo=1"}, ""},
		{"duplicate parameter", on, []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, ""},
		{"duplicate client_max_window_bits", on, []string{"permessage-deflate; client_max_window_bits; client_max_window_bits"}, ""},
		{"duplicate server_max_window_bits", on, []string{"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"}, ""},
		{"server_max_window_bits without value", on, []string{"permessage-deflate; server_max_window_bits"}, ""},
		{"server_max_window_bits 7", on, []string{"permessage-deflate; server_max_window_bits=7"}, ""},
		{"server_max_window_bits 16", on, []string{"permessage-deflate; server_max_window_bits=16"}, ""},
		{"server_max_window_bits word", on, []string{"permessage-deflate; server_max_window_bits=ten"}, ""},
		{"client_max_window_bits 16", on, []string{"permessage-deflate; client_max_window_bits=16"}, ""},
		{"leading zero", on, []string{"permessage-deflate; server_max_window_bits=010"}, ""},
		{"leading zero, then a valid offer", on, []string{"permessage-deflate; client_max_window_bits=09, permessage-deflate"}, answerDefault},
		{"no_context_takeover with value", on, []string{"permessage-deflate; server_no_context_takeover=1"}, ""},
		{"bad syntax", on, []string{"permessage-deflate;;=,"}, ""},
		{"bad syntax on another line", on, []string{"permessage-deflate", "=;"}, ""},
		{"other extension only", on, []string{"x-webkit-deflate-frame"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, tc.srv.url, offer(tc.offers...))
			got := c.resp.Header.Values("Sec-WebSocket-Extensions")
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("answered %q, want no extension", got)
				}
				// Without the extension RSV1 is a protocol error.
				c.sendCompressed(0x1, deflate(t, []byte("hello"), 1))
				c.expectClose(1002)
				return
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("answered %q, want %q", got, tc.want)
			}
			// The agreed parameters parse as a valid response.
			opts, ok := httphead.ParseOptions([]byte(got[0]), nil)
			var p wsflate.Parameters
			if !ok || len(opts) != 1 || p.Parse(opts[0]) != nil || !p.ServerNoContextTakeover || !p.ClientNoContextTakeover {
				t.Fatalf("answer %q does not parse as no-context-takeover parameters", got[0])
			}
			msg := jsonDoc(2000)
			c.sendCompressed(0x1, deflate(t, msg, 9))
			c.expectFrame(true, 0x1, msg)
			c.closeHandshake(1000)
		})
	}
}

// gobwasClient is a deflate-capable client built on gobwas/ws and wsflate.
type gobwasClient struct {
	t  testing.TB
	nc net.Conn
	r  io.Reader
}

func dialGobwas(t testing.TB, url string, offer httphead.Option) (*gobwasClient, ws.Handshake) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := ws.Dialer{Extensions: []httphead.Option{offer}}
	nc, br, hs, err := d.Dial(ctx, "ws"+strings.TrimPrefix(url, "http"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	return &gobwasClient{t: t, nc: nc, r: r}, hs
}

// send writes m as one masked frame, compressed with wsflate if asked.
func (g *gobwasClient) send(op ws.OpCode, p []byte, compress bool) {
	g.t.Helper()
	f := ws.NewFrame(op, true, p)
	if compress {
		var err error
		if f, err = wsflate.CompressFrame(f); err != nil {
			g.t.Fatal(err)
		}
	}
	f = ws.MaskFrameInPlace(f)
	g.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteFrame(g.nc, f); err != nil {
		g.t.Fatalf("write: %v", err)
	}
}

// recv reads one frame and returns its opcode, whether it was compressed
// and its (decompressed) payload.
func (g *gobwasClient) recv() (ws.OpCode, bool, []byte) {
	g.t.Helper()
	g.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(g.r)
	if err != nil || h.Length > 1<<20 {
		g.t.Fatalf("read header: %+v %v", h, err)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(g.r, f.Payload); err != nil {
		g.t.Fatalf("read payload: %v", err)
	}
	compressed, err := wsflate.IsCompressed(f.Header)
	if err != nil {
		g.t.Fatal(err)
	}
	if compressed {
		if f, err = wsflate.DecompressFrame(f); err != nil {
			g.t.Fatalf("decompress: %v", err)
		}
	}
	return f.Header.OpCode, compressed, f.Payload
}

func TestDeflateRoundTripGobwas(t *testing.T) {
	t.Parallel()
	s := newServer(t, echoOpts())
	offers := map[string]httphead.Option{
		"wsflate defaults": wsflate.DefaultParameters.Option(),
		"context takeover": (wsflate.Parameters{ClientMaxWindowBits: 1}).Option(), // as browsers offer
	}
	for name, o := range offers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, hs := dialGobwas(t, s.url, o)
			if len(hs.Extensions) != 1 || string(hs.Extensions[0].Name) != wsflate.ExtensionName {
				t.Fatalf("extensions %v, want permessage-deflate", hs.Extensions)
			}
			for i, n := range []int{4096, 100, 600, 64 << 10, 0} {
				msg := jsonDoc(n)
				op := ws.OpText
				if i%2 == 1 {
					op = ws.OpBinary
				}
				g.send(op, msg, true)
				gotOp, compressed, got := g.recv()
				if gotOp != op || !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes: op %v, %d bytes", n, gotOp, len(got))
				}
				if want := n >= wsroom.DefaultCompressionThreshold; compressed != want {
					t.Fatalf("echo of %d bytes: compressed %v, want %v", n, compressed, want)
				}
			}
			// Uncompressed messages stay legal on a compressing connection.
			g.send(ws.OpText, []byte("plain"), false)
			if _, compressed, got := g.recv(); compressed || string(got) != "plain" {
				t.Fatalf("plain echo: compressed %v %q", compressed, got)
			}
		})
	}
}

func TestDeflateFragmented(t *testing.T) {
	t.Parallel()
	s := newServer(t, echoOpts())
	c := dial(t, s.url, offer("permessage-deflate"))
	msg := jsonDoc(3000)
	z := deflate(t, msg, 6)
	third := len(z) / 3
	c.writeRaw(encodeFrame(false, 0x40, 0x1, true, z[:third]))
	c.writeFrame(true, 0x9, []byte("between"))
	c.writeRaw(encodeFrame(false, 0, 0x0, true, z[third:2*third]))
	c.writeRaw(encodeFrame(true, 0, 0x0, true, z[2*third:]))
	f, err := c.readFrame(5 * time.Second)
	if err != nil || f.op != 0xA || string(f.payload) != "between" {
		t.Fatalf("pong: %+v %v", f, err)
	}
	c.expectFrame(true, 0x1, msg)

	// Binary, byte by byte, with an empty final fragment.
	bin := jsonDoc(1500)
	raw := append(encodeFrame(false, 0x40, 0x2, true, deflate(t, bin, 1)), encodeFrame(true, 0, 0x0, true, nil)...)
	for i := range raw {
		c.writeRaw(raw[i : i+1])
	}
	c.expectFrame(true, 0x2, bin)

	// An uncompressed fragmented text message after compressed ones is
	// UTF-8-checked as usual.
	c.writeFrame(false, 0x1, []byte("plain "))
	c.writeFrame(true, 0x0, []byte("fragments"))
	c.expectText("plain fragments")
	c.closeHandshake(1000)
}

func TestDeflateProtocolErrors(t *testing.T) {
	t.Parallel()
	on := newServer(t, echoOpts())
	off := newServer(t, wsroom.Options{})
	z := deflate(t, []byte("hello, hello, hello"), 1)
	cases := []struct {
		name  string
		srv   *server
		offer http.Header
		raw   []byte
		code  int
	}{
		{"rsv1 on continuation", on, offer("permessage-deflate"),
			append(encodeFrame(false, 0x40, 0x1, true, z[:4]), encodeFrame(true, 0x40, 0x0, true, z[4:])...), 1002},
		{"rsv1 on continuation of plain message", on, offer("permessage-deflate"),
			append(encodeFrame(false, 0, 0x1, true, []byte("ab")), encodeFrame(true, 0x40, 0x0, true, []byte("c"))...), 1002},
		{"rsv1 on ping", on, offer("permessage-deflate"), encodeFrame(true, 0x40, 0x9, true, nil), 1002},
		{"rsv1 on close", on, offer("permessage-deflate"), encodeFrame(true, 0x40, 0x8, true, []byte{3, 0xe8}), 1002},
		{"rsv2", on, offer("permessage-deflate"), encodeFrame(true, 0x20, 0x1, true, []byte("x")), 1002},
		{"rsv1 and rsv3", on, offer("permessage-deflate"), encodeFrame(true, 0x50, 0x1, true, z), 1002},
		{"rsv1 without offer", on, nil, encodeFrame(true, 0x40, 0x1, true, z), 1002},
		{"rsv1 with compression disabled", off, offer("permessage-deflate"), encodeFrame(true, 0x40, 0x1, true, z), 1002},
		{"invalid compressed data", on, offer("permessage-deflate"), encodeFrame(true, 0x40, 0x2, true, []byte{0xff, 0xff, 0xff, 0xff, 0xff}), 1007},
		{"reserved block type", on, offer("permessage-deflate"), encodeFrame(true, 0x40, 0x1, true, []byte{0x07, 0x00}), 1007},
		{"compressed invalid utf-8", on, offer("permessage-deflate"), encodeFrame(true, 0x40, 0x1, true, deflate(t, []byte("ok \xc3\x28 bad"), 1)), 1007},
		{"compressed truncated utf-8", on, offer("permessage-deflate"), encodeFrame(true, 0x40, 0x1, true, deflate(t, []byte("ok \xe2\x82"), 1)), 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, tc.srv.url, tc.offer)
			c.writeRaw(tc.raw)
			c.expectClose(tc.code)
		})
	}
	t.Run("compressed invalid utf-8 as binary", func(t *testing.T) {
		t.Parallel()
		c := dial(t, on.url, offer("permessage-deflate"))
		c.sendCompressed(0x2, deflate(t, []byte("\xc3\x28"), 1))
		c.expectFrame(false, 0x2, []byte("\xc3\x28")) // under the threshold: sent plain
		c.closeHandshake(1000)
	})
}

func TestDeflateReadLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	opts := echoOpts()
	opts.ReadLimit = limit
	s := newServer(t, opts)

	t.Run("exactly the limit", func(t *testing.T) {
		msg := bytes.Repeat([]byte("a"), limit)
		c := dial(t, s.url, offer("permessage-deflate"))
		c.sendCompressed(0x1, deflate(t, msg, 9))
		c.expectFrame(true, 0x1, msg)
		c.closeHandshake(1000)
	})
	t.Run("one byte over", func(t *testing.T) {
		c := dial(t, s.url, offer("permessage-deflate"))
		c.sendCompressed(0x1, deflate(t, bytes.Repeat([]byte("a"), limit+1), 9))
		c.expectClose(1009)
	})
	t.Run("incompressible message at the limit", func(t *testing.T) {
		// Stored blocks make the wire form larger than the limit; the
		// message itself is within it.
		msg := make([]byte, limit)
		for i := range msg {
			msg[i] = byte(rand.Uint32())
		}
		z := deflate(t, msg, 9)
		if len(z) <= limit {
			t.Fatalf("compressed form %d bytes, want more than %d", len(z), limit)
		}
		c := dial(t, s.url, offer("permessage-deflate"))
		c.sendCompressed(0x2, z)
		c.expectFrame(false, 0x2, msg) // would not shrink: echoed plain
		c.closeHandshake(1000)
	})

	// A decompression bomb: 64 MiB of zeros deflate to about 64 KB: within the wire allowance,
	// a thousand times the limit once inflated. Sync-flushed segments from
	// fresh compressors concatenate into one valid stream.
	segment := deflate(t, make([]byte, 1<<20), flate.BestCompression)
	segment = append(segment, 0, 0, 0xff, 0xff)
	bomb := bytes.Repeat(segment, 64)
	bomb = bomb[:len(bomb)-4]
	if len(bomb) > limit+limit/8 {
		t.Fatalf("bomb of %d bytes does not fit the wire allowance", len(bomb))
	}
	for _, name := range []string{"bomb in one frame", "bomb in fragments"} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, s.url, offer("permessage-deflate"))
			before := wsroom.InflatedBytes(s.hub)
			if name == "bomb in one frame" {
				c.sendCompressed(0x2, bomb)
			} else {
				// Refused on its first half: the final frame is never sent.
				c.writeRaw(encodeFrame(false, 0x40, 0x2, true, bomb[:len(bomb)/2]))
			}
			c.expectClose(1009)
			// It inflated up to the limit and one byte more, never further.
			if got := wsroom.InflatedBytes(s.hub) - before; got != limit+1 {
				t.Fatalf("inflated %d bytes, want the limit + 1 (%d)", got, limit+1)
			}
		})
	}
}

func TestDeflateThreshold(t *testing.T) {
	t.Parallel()
	opts := echoOpts()
	opts.Compression.Threshold = 100
	s := newServer(t, opts)
	c := dial(t, s.url, offer("permessage-deflate"))

	below := jsonDoc(99)
	c.sendText(string(below))
	c.expectFrame(false, 0x1, below) // below the threshold: plain, no RSV1

	at := jsonDoc(100)
	c.sendText(string(at))
	f := c.expectFrame(true, 0x1, at)
	if len(f.payload) >= len(at) {
		t.Fatalf("compressed %d bytes into %d", len(at), len(f.payload))
	}

	random := make([]byte, 2000)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	c.writeFrame(true, 0x2, random)
	c.expectFrame(false, 0x2, random) // would not shrink: plain

	// A client that did not negotiate gets plain frames of any size.
	p := dial(t, s.url, nil)
	big := jsonDoc(5000)
	p.sendText(string(big))
	p.expectFrame(false, 0x1, big)

	// Threshold -1 compresses every non-empty message that shrinks.
	opts.Compression.Threshold = -1
	all := newServer(t, opts)
	c = dial(t, all.url, offer("permessage-deflate"))
	c.sendText("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	c.expectFrame(true, 0x1, []byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	c.sendText("")
	c.expectFrame(false, 0x1, []byte{})
}

func TestDeflateBroadcastMix(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		Compression: wsroom.CompressionOptions{Enabled: true},
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			c.Join(r.URL.Query().Get("room"))
			return c.Send(wsroom.Text("ready"))
		},
	})
	type member struct {
		c    *client
		kind string // "full", "window9", "plain"
	}
	var members []member
	join := func(room, kind string, h http.Header) *client {
		c := dial(t, s.url+"?room="+room, h)
		c.expectText("ready")
		members = append(members, member{c, kind})
		return c
	}
	for range 3 {
		join("mix", "full", offer("permessage-deflate; client_max_window_bits"))
		join("mix", "window9", offer("permessage-deflate; server_max_window_bits=9"))
		join("mix", "plain", nil)
	}
	plainOnly := join("plain", "plain", nil)
	members = members[:len(members)-1]
	room := s.hub.Room("mix")

	msg := jsonDoc(4096)
	before := wsroom.Compressions(s.hub)
	if err := room.Broadcast(wsroom.Text(string(msg))); err != nil {
		t.Fatal(err)
	}
	frames := map[string][][]byte{}
	for _, m := range members {
		f := m.c.expectFrame(m.kind != "plain", 0x1, msg)
		frames[m.kind] = append(frames[m.kind], f.payload)
	}
	// One compression per distinct setting: the full-window form and the
	// HuffmanOnly form for the 512-byte window.
	if got := wsroom.Compressions(s.hub) - before; got != 2 {
		t.Fatalf("%d compressions for one broadcast, want 2", got)
	}
	for kind, fs := range frames {
		for _, f := range fs[1:] {
			if !bytes.Equal(f, fs[0]) {
				t.Fatalf("%s members got different frames", kind)
			}
		}
	}
	if bytes.Equal(frames["full"][0], frames["window9"][0]) {
		t.Fatal("the window-limited members got the full-window form")
	}

	// Under the threshold: plain for everyone, nothing compressed.
	before = wsroom.Compressions(s.hub)
	small := jsonDoc(200)
	room.Broadcast(wsroom.Text(string(small)))
	for _, m := range members {
		m.c.expectFrame(false, 0x1, small)
	}
	// A room with no compressing member compresses nothing.
	s.hub.Room("plain").Broadcast(wsroom.Text(string(msg)))
	plainOnly.expectFrame(false, 0x1, msg)
	// A message no larger than the window needs no HuffmanOnly form.
	fits := jsonDoc(512)
	room.Broadcast(wsroom.Binary(fits))
	for _, m := range members {
		m.c.expectFrame(m.kind != "plain", 0x2, fits)
	}
	if got := wsroom.Compressions(s.hub) - before; got != 1 {
		t.Fatalf("%d compressions, want 1 (only the 512-byte broadcast)", got)
	}
}

// TestDeflateIdleHoldsNoState shows that a compressing connection that has
// inflated and compressed messages holds no flate state once idle: its heap
// cost is that of a plain connection. It does not run in parallel, so the
// heap is this test's alone.
func TestDeflateIdleHoldsNoState(t *testing.T) {
	const n = 64
	s := newServer(t, echoOpts())
	msg := jsonDoc(8192)
	z := deflate(t, msg, 9)
	heap := func() uint64 {
		var ms runtime.MemStats
		for range 3 { // sync.Pool keeps its contents for one extra cycle
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	open := func(h http.Header, compressed bool) []*client {
		cs := make([]*client, n)
		for i := range cs {
			cs[i] = dial(t, s.url, h)
			if compressed {
				cs[i].sendCompressed(0x1, z)
			} else {
				cs[i].sendText(string(msg))
			}
			cs[i].expectFrame(compressed, 0x1, msg)
		}
		return cs
	}
	base := heap()
	plain := open(nil, false)
	afterPlain := heap()
	deflating := open(offer("permessage-deflate"), true)
	afterDeflate := heap()
	perPlain := int64(afterPlain-base) / n
	perDeflate := int64(afterDeflate-afterPlain) / n

	// Calibration: what keeping a used decompressor per connection costs.
	readers := make([]io.ReadCloser, n)
	for i := range readers {
		readers[i] = flate.NewReader(bytes.NewReader(z))
		io.Copy(io.Discard, readers[i])
	}
	perReader := int64(heap()-afterDeflate) / n
	runtime.KeepAlive(readers)
	t.Logf("heap per idle connection: plain %d B, compressing %d B; a flate reader %d B", perPlain, perDeflate, perReader)
	if perReader < 8<<10 {
		t.Fatalf("a flate reader costs only %d B: the bound below would prove nothing", perReader)
	}
	if perDeflate > perPlain+2<<10 {
		t.Fatalf("an idle compressing connection costs %d B, a plain one %d B", perDeflate, perPlain)
	}
	for _, c := range append(plain, deflating...) {
		c.nc.Close()
	}
}

// BenchmarkBroadcastDeflate measures fan-out of a 4 KiB JSON message to
// 1,000 subscribers that negotiated permessage-deflate, against the same
// fan-out uncompressed, end to end (until every client has read it).
func BenchmarkBroadcastDeflate(b *testing.B) {
	msg := wsroom.Text(string(jsonDoc(4096)))
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprintf("compressed=%v", compress), func(b *testing.B) {
			opts := wsroom.Options{
				PingInterval: -1, // the clients do not answer pings
				OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
					c.Join("r")
					return c.Send(wsroom.Text("ready"))
				},
			}
			opts.Compression.Enabled = compress
			s := newServer(b, opts)
			const subs = 1000
			bc := newBenchClients(b, s, subs, offer("permessage-deflate"))
			room := s.hub.Room("r")
			const window = 64
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mallocs, bytesOut := ms.Mallocs, s.hub.Stats().BytesOut
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i >= window {
					bc.waitReceived(b, int64(i-window)*subs)
				}
				room.Broadcast(msg)
			}
			bc.waitReceived(b, int64(b.N)*subs)
			b.StopTimer()
			runtime.ReadMemStats(&ms)
			deliveries := float64(b.N * subs)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
			b.ReportMetric(float64(ms.Mallocs-mallocs)/deliveries, "allocs/delivery")
			b.ReportMetric(float64(s.hub.Stats().BytesOut-bytesOut)/deliveries, "wireB/delivery")
		})
	}
}
