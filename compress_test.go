package wsroom_test

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

const answerDefault = "permessage-deflate;server_no_context_takeover;client_no_context_takeover"

// echoOpts returns Options for a hub that echoes every message back with
// Conn.Send, with compression enabled.
func echoOpts() wsroom.Options {
	return wsroom.Options{
		Compression: wsroom.CompressionOptions{Enabled: true},
		OnMessage:   echo,
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
func sendCompressed(t testing.TB, c *wstest.Conn, op wstest.Opcode, payload []byte) {
	t.Helper()
	c.MustWrite(t, wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: op, Masked: true, Payload: payload}.Bytes())
}

// expectFrame reads the next data frame and checks its RSV bits, opcode
// and (inflated if compressed) payload.
func expectFrame(t testing.TB, c *wstest.Conn, compressed bool, op wstest.Opcode, want []byte) wstest.Frame {
	t.Helper()
	f, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if f.Op == wstest.OpClose {
		t.Fatalf("got a close frame %q, want a data frame", f.Payload)
	}
	wantRSV := byte(0)
	if compressed {
		wantRSV = wstest.RSV1
	}
	if f.RSV != wantRSV || f.Op != op || !f.Fin {
		t.Fatalf("frame rsv %#x op %d fin %v, want rsv %#x op %d fin", f.RSV, f.Op, f.Fin, wantRSV, op)
	}
	got := f.Payload
	if compressed {
		got = inflate(t, got)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("payload %d bytes %.40q, want %d bytes %.40q", len(got), got, len(want), want)
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
			c := wstest.Dial(t, tc.srv.url, offer(tc.offers...))
			got := c.Resp.Header.Values("Sec-WebSocket-Extensions")
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("answered %q, want no extension", got)
				}
				// Without the extension RSV1 is a protocol error.
				sendCompressed(t, c, wstest.OpText, deflate(t, []byte("hello"), 1))
				c.ExpectClose(t, 1002)
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
			sendCompressed(t, c, wstest.OpText, deflate(t, msg, 9))
			expectFrame(t, c, true, wstest.OpText, msg)
			c.CloseHandshake(t, 1000)
		})
	}
}

// wsflateSend sends p as one masked frame, compressed by gobwas/ws's
// wsflate (a compressor independent of the hub's) if compress is set.
func wsflateSend(t testing.TB, c *wstest.Conn, op wstest.Opcode, p []byte, compress bool) {
	t.Helper()
	f := ws.NewFrame(ws.OpCode(op), true, p)
	if compress {
		var err error
		if f, err = wsflate.CompressFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	c.MustWrite(t, wstest.Frame{Fin: true, RSV: f.Header.Rsv << 4, Op: op, Masked: true, Payload: f.Payload}.Bytes())
}

// wsflateRecv reads one frame and returns its opcode, whether it was
// compressed and its payload, decompressed by wsflate.
func wsflateRecv(t testing.TB, c *wstest.Conn) (wstest.Opcode, bool, []byte) {
	t.Helper()
	rf, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	f := ws.Frame{Header: ws.Header{Fin: rf.Fin, Rsv: rf.RSV >> 4, OpCode: ws.OpCode(rf.Op), Length: int64(len(rf.Payload))}, Payload: rf.Payload}
	compressed, err := wsflate.IsCompressed(f.Header)
	if err != nil {
		t.Fatal(err)
	}
	if compressed {
		if f, err = wsflate.DecompressFrame(f); err != nil {
			t.Fatalf("decompress: %v", err)
		}
	}
	return rf.Op, compressed, f.Payload
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
			var b bytes.Buffer
			httphead.WriteOptions(&b, []httphead.Option{o})
			c := wstest.Dial(t, s.url, offer(b.String()))
			exts, ok := httphead.ParseOptions([]byte(strings.Join(c.Resp.Header.Values("Sec-WebSocket-Extensions"), ",")), nil)
			if !ok || len(exts) != 1 || string(exts[0].Name) != wsflate.ExtensionName {
				t.Fatalf("extensions %v, want permessage-deflate", exts)
			}
			for i, n := range []int{4096, 100, 600, 64 << 10, 0} {
				msg := jsonDoc(n)
				op := wstest.OpText
				if i%2 == 1 {
					op = wstest.OpBinary
				}
				wsflateSend(t, c, op, msg, true)
				gotOp, compressed, got := wsflateRecv(t, c)
				if gotOp != op || !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes: op %v, %d bytes", n, gotOp, len(got))
				}
				if want := n >= wsroom.DefaultCompressionThreshold; compressed != want {
					t.Fatalf("echo of %d bytes: compressed %v, want %v", n, compressed, want)
				}
			}
			// Uncompressed messages stay legal on a compressing connection.
			wsflateSend(t, c, wstest.OpText, []byte("plain"), false)
			if _, compressed, got := wsflateRecv(t, c); compressed || string(got) != "plain" {
				t.Fatalf("plain echo: compressed %v %q", compressed, got)
			}
		})
	}
}

func TestDeflateFragmented(t *testing.T) {
	t.Parallel()
	s := newServer(t, echoOpts())
	c := wstest.Dial(t, s.url, offer("permessage-deflate"))
	msg := jsonDoc(3000)
	z := deflate(t, msg, 6)
	third := len(z) / 3
	c.MustWrite(t, wstest.Frame{RSV: wstest.RSV1, Op: wstest.OpText, Masked: true, Payload: z[:third]}.Bytes())
	c.MustWrite(t, wstest.Final(wstest.OpPing, "between"))
	c.MustWrite(t, wstest.Fragment(wstest.OpContinuation, z[third:2*third]))
	c.MustWrite(t, wstest.Final(wstest.OpContinuation, z[2*third:]))
	f, err := c.ReadFrame()
	if err != nil || f.Op != wstest.OpPong || string(f.Payload) != "between" {
		t.Fatalf("pong: %+v %v", f, err)
	}
	expectFrame(t, c, true, wstest.OpText, msg)

	// Binary, byte by byte, with an empty final fragment.
	bin := jsonDoc(1500)
	raw := append(wstest.Frame{RSV: wstest.RSV1, Op: wstest.OpBinary, Masked: true, Payload: deflate(t, bin, 1)}.Bytes(), wstest.Final(wstest.OpContinuation, "")...)
	for i := range raw {
		c.MustWrite(t, raw[i:i+1])
	}
	expectFrame(t, c, true, wstest.OpBinary, bin)

	// An uncompressed fragmented text message after compressed ones is
	// UTF-8-checked as usual.
	c.MustWrite(t, wstest.Fragment(wstest.OpText, "plain "))
	c.MustWrite(t, wstest.Final(wstest.OpContinuation, "fragments"))
	c.ExpectText(t, "plain fragments")
	c.CloseHandshake(t, 1000)
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
			append(wstest.Frame{RSV: wstest.RSV1, Op: wstest.OpText, Masked: true, Payload: z[:4]}.Bytes(), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpContinuation, Masked: true, Payload: z[4:]}.Bytes()...), 1002},
		{"rsv1 on continuation of plain message", on, offer("permessage-deflate"),
			append(wstest.Fragment(wstest.OpText, "ab"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpContinuation, Masked: true, Payload: []byte("c")}.Bytes()...), 1002},
		{"rsv1 on ping", on, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpPing, Masked: true}.Bytes(), 1002},
		{"rsv1 on close", on, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpClose, Masked: true, Payload: []byte{3, 0xe8}}.Bytes(), 1002},
		{"rsv2", on, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV2, Op: wstest.OpText, Masked: true, Payload: []byte("x")}.Bytes(), 1002},
		{"rsv1 and rsv3", on, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV1 | wstest.RSV3, Op: wstest.OpText, Masked: true, Payload: z}.Bytes(), 1002},
		{"rsv1 without offer", on, nil, wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpText, Masked: true, Payload: z}.Bytes(), 1002},
		{"rsv1 with compression disabled", off, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpText, Masked: true, Payload: z}.Bytes(), 1002},
		{"invalid compressed data", on, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpBinary, Masked: true, Payload: []byte{0xff, 0xff, 0xff, 0xff, 0xff}}.Bytes(), 1007},
		{"reserved block type", on, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpText, Masked: true, Payload: []byte{0x07, 0x00}}.Bytes(), 1007},
		{"compressed invalid utf-8", on, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpText, Masked: true, Payload: deflate(t, []byte("ok \xc3\x28 bad"), 1)}.Bytes(), 1007},
		{"compressed truncated utf-8", on, offer("permessage-deflate"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpText, Masked: true, Payload: deflate(t, []byte("ok \xe2\x82"), 1)}.Bytes(), 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := wstest.Dial(t, tc.srv.url, tc.offer)
			c.MustWrite(t, tc.raw)
			c.ExpectClose(t, tc.code)
		})
	}
	t.Run("compressed invalid utf-8 as binary", func(t *testing.T) {
		t.Parallel()
		c := wstest.Dial(t, on.url, offer("permessage-deflate"))
		sendCompressed(t, c, wstest.OpBinary, deflate(t, []byte("\xc3\x28"), 1))
		expectFrame(t, c, false, wstest.OpBinary, []byte("\xc3\x28")) // under the threshold: sent plain
		c.CloseHandshake(t, 1000)
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
		c := wstest.Dial(t, s.url, offer("permessage-deflate"))
		sendCompressed(t, c, wstest.OpText, deflate(t, msg, 9))
		expectFrame(t, c, true, wstest.OpText, msg)
		c.CloseHandshake(t, 1000)
	})
	t.Run("one byte over", func(t *testing.T) {
		c := wstest.Dial(t, s.url, offer("permessage-deflate"))
		sendCompressed(t, c, wstest.OpText, deflate(t, bytes.Repeat([]byte("a"), limit+1), 9))
		c.ExpectClose(t, 1009)
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
		c := wstest.Dial(t, s.url, offer("permessage-deflate"))
		sendCompressed(t, c, wstest.OpBinary, z)
		expectFrame(t, c, false, wstest.OpBinary, msg) // would not shrink: echoed plain
		c.CloseHandshake(t, 1000)
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
			c := wstest.Dial(t, s.url, offer("permessage-deflate"))
			before := wsroom.InflatedBytes(s.hub)
			if name == "bomb in one frame" {
				sendCompressed(t, c, wstest.OpBinary, bomb)
			} else {
				// Refused on its first half: the final frame is never sent.
				c.MustWrite(t, wstest.Frame{RSV: wstest.RSV1, Op: wstest.OpBinary, Masked: true, Payload: bomb[:len(bomb)/2]}.Bytes())
			}
			c.ExpectClose(t, 1009)
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
	c := wstest.Dial(t, s.url, offer("permessage-deflate"))

	below := jsonDoc(99)
	c.SendText(t, string(below))
	expectFrame(t, c, false, wstest.OpText, below) // below the threshold: plain, no RSV1

	at := jsonDoc(100)
	c.SendText(t, string(at))
	f := expectFrame(t, c, true, wstest.OpText, at)
	if len(f.Payload) >= len(at) {
		t.Fatalf("compressed %d bytes into %d", len(at), len(f.Payload))
	}

	random := make([]byte, 2000)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	c.MustWrite(t, wstest.Final(wstest.OpBinary, random))
	expectFrame(t, c, false, wstest.OpBinary, random) // would not shrink: plain

	// A client that did not negotiate gets plain frames of any size.
	p := wstest.Dial(t, s.url, nil)
	big := jsonDoc(5000)
	p.SendText(t, string(big))
	expectFrame(t, p, false, wstest.OpText, big)

	// Threshold -1 compresses every non-empty message that shrinks.
	opts.Compression.Threshold = -1
	all := newServer(t, opts)
	c = wstest.Dial(t, all.url, offer("permessage-deflate"))
	c.SendText(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	expectFrame(t, c, true, wstest.OpText, []byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	c.SendText(t, "")
	expectFrame(t, c, false, wstest.OpText, []byte{})
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
		c    *wstest.Conn
		kind string // "full", "window9", "plain"
	}
	var members []member
	join := func(room, kind string, h http.Header) *wstest.Conn {
		c := wstest.Dial(t, s.url+"?room="+room, h)
		c.ExpectText(t, "ready")
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
		f := expectFrame(t, m.c, m.kind != "plain", wstest.OpText, msg)
		frames[m.kind] = append(frames[m.kind], f.Payload)
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
		expectFrame(t, m.c, false, wstest.OpText, small)
	}
	// A room with no compressing member compresses nothing.
	s.hub.Room("plain").Broadcast(wsroom.Text(string(msg)))
	expectFrame(t, plainOnly, false, wstest.OpText, msg)
	// A message no larger than the window needs no HuffmanOnly form.
	fits := jsonDoc(512)
	room.Broadcast(wsroom.Binary(fits))
	for _, m := range members {
		expectFrame(t, m.c, m.kind != "plain", wstest.OpBinary, fits)
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
	open := func(h http.Header, compressed bool) []*wstest.Conn {
		cs := make([]*wstest.Conn, n)
		for i := range cs {
			cs[i] = wstest.Dial(t, s.url, h)
			if compressed {
				sendCompressed(t, cs[i], wstest.OpText, z)
			} else {
				cs[i].SendText(t, string(msg))
			}
			expectFrame(t, cs[i], compressed, wstest.OpText, msg)
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
		c.Close()
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
				bc.pace(b, i, window, nil)
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
