package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsroom/wsroom/internal/wstest"
)

type parseCase struct {
	name  string
	data  []byte
	limit int64
	want  []event
	code  int // expected error code, 0 for none
}

func parseCases() []parseCase {
	var cases []parseCase
	add := func(name string, data []byte, limit int64, code int, want ...event) {
		cases = append(cases, parseCase{name, data, limit, want, code})
	}

	// Group 1: framing, every length form, text and binary.
	for _, n := range []int{0, 1, 125, 126, 127, 128, 65535, 65536} {
		txt := rep('*', n)
		bin := make([]byte, n)
		for i := range bin {
			bin[i] = byte(i * 7)
		}
		add("text/"+itoa(n), mk(true, OpText, txt), 0, 0, msg(OpText, txt))
		add("binary/"+itoa(n), mk(true, OpBinary, bin), 0, 0, msg(OpBinary, bin))
	}
	add("non-minimal 16-bit length", rawFrame(0x81, []byte("hello"), false, wstest.Len16), 0, 0, text("hello"))
	add("non-minimal 64-bit length", rawFrame(0x82, []byte("hello"), false, wstest.Len64), 0, 0, msg(OpBinary, []byte("hello")))
	add("two messages", wstest.Cat(mk(true, OpText, []byte("a")), mk(true, OpBinary, []byte("bc"))), 0, 0,
		text("a"), msg(OpBinary, []byte("bc")))

	// Group 2: ping/pong.
	add("ping empty", mk(true, OpPing, nil), 0, 0, ctls(OpPing, ""))
	add("ping 125", mk(true, OpPing, rep(0xfe, 125)), 0, 0, ctl(OpPing, rep(0xfe, 125)))
	add("ping 126", mk(true, OpPing, rep('x', 126)), 0, CodeProtocolError)
	add("ping 126 after ping", wstest.Cat(mk(true, OpPing, []byte("a")), mk(true, OpPing, rep('x', 126))), 0, CodeProtocolError,
		ctls(OpPing, "a"))
	add("pong", mk(true, OpPong, []byte("p")), 0, 0, ctls(OpPong, "p"))
	add("ping 64-bit length 5", rawFrame(0x89, []byte("12345"), false, wstest.Len64), 0, CodeProtocolError)
	var tenPings []byte
	var tenEvents []event
	for i := range 10 {
		tenPings = append(tenPings, mk(true, OpPing, []byte{byte('0' + i)})...)
		tenEvents = append(tenEvents, ctl(OpPing, []byte{byte('0' + i)}))
	}
	add("ten pings", tenPings, 0, 0, tenEvents...)

	// Group 3: reserved bits.
	for _, rsv := range []byte{0x40, 0x20, 0x10, 0x70} {
		add("rsv text "+itoa(int(rsv)), rawFrame(0x81|rsv, []byte("x"), false, 0), 0, CodeProtocolError)
		add("rsv ping "+itoa(int(rsv)), rawFrame(0x89|rsv, []byte("x"), false, 0), 0, CodeProtocolError)
		add("rsv after valid "+itoa(int(rsv)),
			wstest.Cat(mk(true, OpText, []byte("ok")), rawFrame(0x82|rsv, nil, false, 0)), 0, CodeProtocolError, text("ok"))
	}

	// Group 4: reserved opcodes.
	for _, op := range []byte{3, 4, 5, 6, 7, 11, 12, 13, 14, 15} {
		add("opcode "+itoa(int(op)), rawFrame(0x80|op, nil, false, 0), 0, CodeProtocolError)
		add("opcode with payload "+itoa(int(op)), rawFrame(0x80|op, []byte("reserved"), false, 0), 0, CodeProtocolError)
		add("opcode after valid "+itoa(int(op)),
			wstest.Cat(mk(true, OpText, []byte("ok")), rawFrame(0x80|op, nil, false, 0)), 0, CodeProtocolError, text("ok"))
	}

	// Masking and lengths.
	add("unmasked", rawFrame(0x81, []byte("hi"), true, 0), 0, CodeProtocolError)
	add("unmasked empty", rawFrame(0x82, nil, true, 0), 0, CodeProtocolError)
	add("unmasked ping", rawFrame(0x89, nil, true, 0), 0, CodeProtocolError)
	msb := []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}
	add("64-bit length msb", msb, 0, CodeProtocolError)

	// Group 5: fragmentation.
	add("fragmented text", wstest.Cat(
		mk(false, OpText, []byte("fragm")),
		mk(false, OpContinuation, []byte("ent")),
		mk(true, OpContinuation, []byte("ed"))), 0, 0, text("fragmented"))
	add("fragmented binary with empty fragments", wstest.Cat(
		mk(false, OpBinary, nil),
		mk(false, OpContinuation, []byte{1, 2}),
		mk(false, OpContinuation, nil),
		mk(true, OpContinuation, nil)), 0, 0, msg(OpBinary, []byte{1, 2}))
	add("ping between fragments", wstest.Cat(
		mk(false, OpText, []byte("frag")),
		mk(true, OpPing, []byte("ping")),
		mk(false, OpContinuation, []byte("ment")),
		mk(true, OpPong, nil),
		mk(true, OpContinuation, []byte("ed")),
		mk(true, OpText, []byte("next"))), 0, 0,
		ctls(OpPing, "ping"), ctls(OpPong, ""), text("fragmented"), text("next"))
	add("close between fragments", wstest.Cat(
		mk(false, OpText, []byte("frag")),
		mk(true, OpClose, []byte{0x03, 0xe8})), 0, 0, ctl(OpClose, []byte{0x03, 0xe8}))
	add("fragmented ping", mk(false, OpPing, []byte("x")), 0, CodeProtocolError)
	add("fragmented pong", mk(false, OpPong, nil), 0, CodeProtocolError)
	add("fragmented close", mk(false, OpClose, []byte{0x03, 0xe8}), 0, CodeProtocolError)
	add("continuation without message", mk(true, OpContinuation, []byte("x")), 0, CodeProtocolError)
	add("continuation after complete message", wstest.Cat(
		mk(true, OpText, []byte("a")),
		mk(false, OpContinuation, []byte("b"))), 0, CodeProtocolError, text("a"))
	add("text inside fragmented message", wstest.Cat(
		mk(false, OpText, []byte("a")),
		mk(true, OpText, []byte("b"))), 0, CodeProtocolError)
	add("binary inside fragmented message", wstest.Cat(
		mk(false, OpBinary, []byte("a")),
		mk(false, OpBinary, []byte("b"))), 0, CodeProtocolError)

	// Limits.
	add("at limit", mk(true, OpBinary, rep(1, 100)), 100, 0, msg(OpBinary, rep(1, 100)))
	add("over limit", mk(true, OpBinary, rep(1, 101)), 100, CodeTooBig)
	add("over limit 64-bit", mk(true, OpBinary, rep(1, 70000)), 65536, CodeTooBig)
	add("fragments at limit", wstest.Cat(
		mk(false, OpText, rep('a', 50)),
		mk(true, OpPing, rep('p', 125)), // control frames do not count
		mk(true, OpContinuation, rep('b', 50))), 100, 0,
		ctl(OpPing, rep('p', 125)), text(strings.Repeat("a", 50)+strings.Repeat("b", 50)))
	add("fragments over limit", wstest.Cat(
		mk(false, OpText, rep('a', 50)),
		mk(false, OpContinuation, rep('b', 50)),
		mk(true, OpContinuation, rep('c', 1))), 100, CodeTooBig)
	add("limit resets per message", wstest.Cat(
		mk(true, OpText, rep('a', 80)),
		mk(true, OpText, rep('b', 80))), 100, 0,
		text(strings.Repeat("a", 80)), text(strings.Repeat("b", 80)))

	// Group 6: UTF-8.
	add("empty text", mk(true, OpText, nil), 0, 0, text(""))
	add("empty text fragments", wstest.Cat(
		mk(false, OpText, nil), mk(false, OpContinuation, nil), mk(true, OpContinuation, nil)), 0, 0, text(""))
	hello := []byte("κόσμε, Hello-µ@ßöäüàá-UTF-8!! \U0001F600")
	add("valid utf8", mk(true, OpText, hello), 0, 0, text(string(hello)))
	for i := 1; i < len(hello); i++ {
		add("valid utf8 split at "+itoa(i), wstest.Cat(
			mk(false, OpText, hello[:i]), mk(true, OpContinuation, hello[i:])), 0, 0, text(string(hello)))
	}
	four := []byte("\U0010FFFF")
	add("4-byte split over 4 fragments", wstest.Cat(
		mk(false, OpText, four[:1]), mk(false, OpContinuation, four[1:2]),
		mk(false, OpContinuation, four[2:3]), mk(true, OpContinuation, four[3:])), 0, 0, text(string(four)))
	invalid := map[string][]byte{
		"overlong C0 80":         {0xc0, 0x80},
		"overlong C1 BF":         {0xc1, 0xbf},
		"overlong E0 80 80":      {0xe0, 0x80, 0x80},
		"overlong E0 9F BF":      {0xe0, 0x9f, 0xbf},
		"overlong F0 80 80 80":   {0xf0, 0x80, 0x80, 0x80},
		"overlong F0 8F BF BF":   {0xf0, 0x8f, 0xbf, 0xbf},
		"surrogate ED A0 80":     {0xed, 0xa0, 0x80},
		"surrogate ED BF BF":     {0xed, 0xbf, 0xbf},
		"above max F4 90 80 80":  {0xf4, 0x90, 0x80, 0x80},
		"F5":                     {0xf5, 0x80, 0x80, 0x80},
		"F8":                     {0xf8, 0x88, 0x80, 0x80, 0x80},
		"FC":                     {0xfc, 0x84, 0x80, 0x80, 0x80, 0x80},
		"FE":                     {0xfe},
		"FF":                     {0xff},
		"lone continuation":      {'a', 0x80, 'b'},
		"truncated 2 at end":     []byte("abc\xc3"),
		"truncated 3 at end":     []byte("abc\xe2\x82"),
		"truncated 4 at end":     []byte("abc\xf0\x9f\x98"),
		"truncated 2 then ascii": []byte("\xc3a"),
		"valid then invalid":     append([]byte("κόσμε"), 0xed, 0xa0, 0x80, 'e', 'd', 'i', 't', 'e', 'd'),
	}
	for name, p := range invalid {
		add("invalid utf8 "+name, mk(true, OpText, p), 0, CodeInvalidData)
		add("invalid utf8 binary ok "+name, mk(true, OpBinary, p), 0, 0, msg(OpBinary, p))
		if len(p) > 1 {
			add("invalid utf8 fragmented "+name, wstest.Cat(
				mk(false, OpText, p[:1]), mk(false, OpContinuation, p[1:len(p)-1]),
				mk(true, OpContinuation, p[len(p)-1:])), 0, CodeInvalidData)
		}
	}
	add("truncated at end of fragmented message", wstest.Cat(
		mk(false, OpText, []byte("ab")), mk(true, OpContinuation, []byte{0xe2, 0x82})), 0, CodeInvalidData)
	add("invalid in first fragment fails before the rest", wstest.Cat(
		mk(false, OpText, []byte{0xc0}), []byte{0x00}), 0, CodeInvalidData)
	add("truncated at end of fragment is fine", wstest.Cat(
		mk(false, OpText, []byte{0xe2, 0x82}), mk(true, OpContinuation, []byte{0xac})), 0, 0, text("€"))

	// Group 7: close.
	add("close empty", mk(true, OpClose, nil), 0, 0, ctls(OpClose, ""))
	add("close after message", wstest.Cat(mk(true, OpText, []byte("m")), mk(true, OpClose, wstest.ClosePayload(1000, "bye"))), 0, 0,
		text("m"), ctl(OpClose, wstest.ClosePayload(1000, "bye")))
	add("close length 1", mk(true, OpClose, []byte{0x03}), 0, CodeProtocolError)
	for _, c := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		add("close code "+itoa(int(c)), mk(true, OpClose, wstest.ClosePayload(int(c), "")), 0, CodeProtocolError)
	}
	for _, c := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		add("close code "+itoa(int(c)), mk(true, OpClose, wstest.ClosePayload(int(c), "r")), 0, 0, ctl(OpClose, wstest.ClosePayload(int(c), "r")))
	}
	reason123 := strings.Repeat("r", 123)
	add("close reason 123", mk(true, OpClose, wstest.ClosePayload(1000, reason123)), 0, 0, ctl(OpClose, wstest.ClosePayload(1000, reason123)))
	add("close reason 124", mk(true, OpClose, wstest.ClosePayload(1000, reason123+"r")), 0, CodeProtocolError)
	add("close reason utf8", mk(true, OpClose, wstest.ClosePayload(1000, "κόσμε")), 0, 0, ctl(OpClose, wstest.ClosePayload(1000, "κόσμε")))
	add("close reason bad utf8", mk(true, OpClose, wstest.ClosePayload(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")),
		0, CodeInvalidData)
	add("two closes", wstest.Cat(mk(true, OpClose, wstest.ClosePayload(1000, "")), mk(true, OpClose, wstest.ClosePayload(1001, ""))), 0, 0,
		ctl(OpClose, wstest.ClosePayload(1000, "")), ctl(OpClose, wstest.ClosePayload(1001, "")))

	// Group 10-like: a large text message auto-fragmented.
	big := bytes.Repeat([]byte("ab€d"), 64*1024/6)
	var frags []byte
	for i := 0; i < len(big); i += 1300 {
		end := min(i+1300, len(big))
		op := OpContinuation
		if i == 0 {
			op = OpText
		}
		frags = append(frags, mk(end == len(big), op, big[i:end])...)
	}
	add("auto-fragmented 64k", frags, 0, 0, msg(OpText, big))
	return cases
}

func itoa(n int) string { return strconv.Itoa(n) }

func sameEvents(a, b []event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range choppers {
				if c.size == 1 && len(tc.data) > 200000 {
					continue
				}
				r := &recorder{}
				got, err := feedChopped(t, tc.data, c.size, tc.limit, r)
				if code := errCode(err); code != tc.code {
					t.Errorf("%s: error %v (code %d), want code %d", c.name, err, code, tc.code)
				}
				if !sameEvents(got, tc.want) {
					t.Errorf("%s: events\n got %v\nwant %v", c.name, got, tc.want)
				}
				if r.nilMsg {
					t.Errorf("%s: OnMessage got a nil payload", c.name)
				}
			}
		})
	}
}

// feedAll feeds data (copied) to p and returns the error.
func feedAll(p *Parser, data []byte) error {
	return p.Feed(append([]byte(nil), data...))
}

func TestUTF8FailFast(t *testing.T) {
	const size = 100000
	for _, k := range []int{0, 1, 7, 8, 9, 500, 4095, size / 2, size - 1} {
		for _, bad := range [][]byte{{0xff}, {0xc0}, {0xed, 0xa0}, {0xf4, 0x90}, {0xe0, 0x80}} {
			k := min(k, size-len(bad))
			payload := rep('a', size)
			copy(payload[k:], bad)
			bi := k + len(bad) - 1 // offset of the offending byte
			frame := mk(true, OpText, payload)
			hl := len(frame) - size
			for _, c := range choppers {
				r := &recorder{}
				var p Parser
				p.Init(r, 0)
				// Everything before the offending byte is fine.
				buf := append([]byte(nil), frame[:hl+bi]...)
				var err error
				for n := c.size; len(buf) > 0 && err == nil; buf = buf[min(n, len(buf)):] {
					if n == 0 {
						n = len(buf)
					}
					err = p.Feed(buf[:min(n, len(buf))])
				}
				if err != nil {
					t.Fatalf("k=%d bad=%x %s: error before the bad byte: %v", k, bad, c.name, err)
				}
				if err := feedAll(&p, frame[hl+bi:hl+bi+1]); errCode(err) != CodeInvalidData {
					t.Fatalf("k=%d bad=%x %s: got %v at the bad byte, want 1007", k, bad, c.name, err)
				}
				if len(r.events) != 0 {
					t.Fatalf("unexpected events %v", r.events)
				}
			}
		}
	}
	// Across fragments: the bad byte is the first byte of a continuation
	// frame whose payload has not arrived yet beyond that byte.
	first := mk(false, OpText, []byte("ab\xe2\x82"))
	second := mk(true, OpContinuation, []byte("\xffmore"))
	var p Parser
	p.Init(&recorder{}, 0)
	if err := feedAll(&p, wstest.Cat(first, second[:6])); err != nil {
		t.Fatal(err)
	}
	if err := feedAll(&p, second[6:7]); errCode(err) != CodeInvalidData {
		t.Fatalf("got %v, want 1007", err)
	}
}

func TestTooBigFromHeader(t *testing.T) {
	for _, n := range []uint64{101, 65536, 1 << 40, 1<<63 - 1} {
		hdr := []byte{0x82, 0x80 | 127}
		hdr = binary.BigEndian.AppendUint64(hdr, n)
		hdr = append(hdr, testMask[:]...)
		for _, c := range choppers {
			r := &recorder{}
			_, err := feedChopped(t, hdr, c.size, 100, r)
			if errCode(err) != CodeTooBig {
				t.Errorf("len %d %s: got %v, want 1009", n, c.name, err)
			}
		}
	}
	// Across fragments: the second fragment's header alone is enough.
	data := wstest.Cat(mk(false, OpBinary, rep(1, 60)), mk(true, OpContinuation, rep(2, 41))[:8])
	for _, c := range choppers {
		if _, err := feedChopped(t, data, c.size, 100, &recorder{}); errCode(err) != CodeTooBig {
			t.Errorf("%s: got %v, want 1009", c.name, err)
		}
	}
	// With no limit a huge declared length is just waited for, without
	// allocating for it.
	var p Parser
	p.Init(&recorder{}, 0)
	hdr := append([]byte{0x82, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 1<<50)...)
	hdr = append(hdr, testMask[:]...)
	if err := feedAll(&p, append(hdr, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if cap(p.msg) > 1024 {
		t.Errorf("message buffer cap %d after 3 bytes of a huge frame", cap(p.msg))
	}
}

func TestBufferGrowth(t *testing.T) {
	// A 1 MiB single-frame message fed in 1 KiB pieces must end with a
	// buffer of exactly its size, and grow geometrically.
	payload := rep('z', 1<<20)
	data := mk(true, OpBinary, payload)
	var p Parser
	var got []byte
	h := funcHandler{onMessage: func(op Opcode, b []byte) error { got = b; return nil }}
	p.Init(h, 0)
	grows := 0
	lastCap := 0
	for i := 0; i < len(data); i += 1024 {
		if err := p.Feed(data[i:min(i+1024, len(data))]); err != nil {
			t.Fatal(err)
		}
		if cap(p.msg) != lastCap {
			grows++
			lastCap = cap(p.msg)
			if lastCap > 0 && lastCap > 2*len(p.msg)+512 {
				t.Fatalf("cap %d for %d bytes received", lastCap, len(p.msg))
			}
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload mismatch")
	}
	if cap(got) != len(payload) {
		t.Errorf("final cap %d, want %d", cap(got), len(payload))
	}
	if grows > 16 {
		t.Errorf("%d reallocations", grows)
	}
	// All at once: a single allocation of the exact size.
	p.Init(h, 0)
	data = mk(true, OpBinary, payload)
	if err := p.Feed(data); err != nil {
		t.Fatal(err)
	}
	if cap(got) != len(payload) {
		t.Errorf("all-at-once cap %d, want %d", cap(got), len(payload))
	}
}

type funcHandler struct {
	onMessage func(Opcode, []byte) error
	onControl func(Opcode, []byte) error
}

func (h funcHandler) OnMessage(op Opcode, b []byte) error {
	if h.onMessage == nil {
		return nil
	}
	return h.onMessage(op, b)
}

func (h funcHandler) OnControl(op Opcode, b []byte) error {
	if h.onControl == nil {
		return nil
	}
	return h.onControl(op, b)
}

var errStop = errors.New("stop")

func TestHandlerError(t *testing.T) {
	data := wstest.Cat(
		mk(true, OpText, []byte("one")),
		mk(true, OpClose, []byte{0x03, 0xe8}),
		mk(true, OpText, []byte("after close")),
		[]byte{0xff, 0xff}, // garbage that would be a protocol error
	)
	for _, failAt := range []int{1, 2} {
		for _, c := range choppers {
			r := &recorder{failAt: failAt, failErr: errStop}
			var p Parser
			p.Init(r, 0)
			r.t = t
			if err := feedPieces(&p, data, c.size); err != errStop {
				t.Fatalf("failAt %d %s: got %v, want errStop unchanged", failAt, c.name, err)
			}
			if len(r.events) != failAt {
				t.Fatalf("failAt %d %s: %d events", failAt, c.name, len(r.events))
			}
			// Dead: same error, no more calls, whatever is fed.
			if err := feedAll(&p, mk(true, OpText, []byte("x"))); err != errStop {
				t.Fatalf("after error: got %v", err)
			}
			if err := p.Feed(nil); err != errStop {
				t.Fatalf("after error: got %v", err)
			}
			if len(r.events) != failAt {
				t.Fatalf("handler called after error")
			}
		}
	}
	// A protocol error is sticky too.
	var p Parser
	r := &recorder{t: t}
	p.Init(r, 0)
	err1 := feedAll(&p, rawFrame(0x81, []byte("x"), true, 0))
	err2 := feedAll(&p, mk(true, OpText, []byte("x")))
	if errCode(err1) != CodeProtocolError || err2 != err1 || len(r.events) != 0 {
		t.Fatalf("got %v then %v, events %v", err1, err2, r.events)
	}
	if p.Err() != err1 {
		t.Fatalf("Err() = %v", p.Err())
	}
}

func TestInMessage(t *testing.T) {
	var p Parser
	p.Init(&recorder{t: t}, 0)
	if p.InMessage() || !p.Idle() {
		t.Fatal("fresh parser not idle")
	}
	steps := []struct {
		data []byte
		in   bool
	}{
		{mk(true, OpText, []byte("abc"))[:1], true},    // partial header
		{mk(true, OpText, []byte("abc"))[1:6], true},   // header done but for one mask byte
		{mk(true, OpText, []byte("abc"))[6:8], true},   // partial payload
		{mk(true, OpText, []byte("abc"))[8:], false},   // done
		{mk(false, OpText, []byte("abc")), true},       // fragmented message in progress
		{mk(true, OpPing, nil), true},                  // control between fragments
		{mk(true, OpContinuation, []byte("d")), false}, // done
		{mk(true, OpPing, []byte("p"))[:6], true},      // partial control frame
		{mk(true, OpPing, []byte("p"))[6:], false},
	}
	for i, s := range steps {
		if err := feedAll(&p, s.data); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if p.InMessage() != s.in || p.Idle() == s.in {
			t.Fatalf("step %d: InMessage %v, want %v", i, p.InMessage(), s.in)
		}
	}
}

func TestMessageOwnership(t *testing.T) {
	// Payloads handed to OnMessage must not alias the fed buffer nor each
	// other, and must survive later Feed calls.
	var got [][]byte
	var p Parser
	p.Init(funcHandler{onMessage: func(op Opcode, b []byte) error {
		got = append(got, b)
		return nil
	}}, 0)
	buf := wstest.Cat(mk(true, OpText, []byte("first")), mk(true, OpBinary, []byte("second")), mk(true, OpText, nil))
	if err := p.Feed(buf); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 0
	}
	if err := p.Feed(mk(true, OpText, []byte("third"))); err != nil {
		t.Fatal(err)
	}
	want := []string{"first", "second", "", "third"}
	if len(got) != len(want) {
		t.Fatalf("got %d messages", len(got))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("message %d = %q, want %q", i, got[i], want[i])
		}
	}
	if got[2] == nil {
		t.Error("empty message delivered as nil")
	}
}

func TestFeedEmpty(t *testing.T) {
	var p Parser
	r := &recorder{t: t}
	p.Init(r, 0)
	if err := p.Feed(nil); err != nil || p.InMessage() {
		t.Fatal(err)
	}
	if err := p.Feed([]byte{}); err != nil || len(r.events) != 0 {
		t.Fatal(err)
	}
}

func TestNoAllocsPerControlFrame(t *testing.T) {
	var p Parser
	p.Init(funcHandler{}, 0)
	frames := wstest.Cat(mk(true, OpPing, []byte("ping")), mk(true, OpPong, rep('x', 125)))
	buf := make([]byte, len(frames))
	allocs := testing.AllocsPerRun(100, func() {
		copy(buf, frames)
		if err := p.Feed(buf); err != nil {
			t.Fatal(err)
		}
		// and split
		copy(buf, frames)
		for i := range buf {
			if err := p.Feed(buf[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
	// Data messages: exactly one allocation (the payload) per message.
	data := wstest.Cat(mk(true, OpText, rep('a', 64)), mk(true, OpBinary, rep('b', 64)))
	buf = make([]byte, len(data))
	allocs = testing.AllocsPerRun(100, func() {
		copy(buf, data)
		if err := p.Feed(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 2 {
		t.Errorf("%v allocations for 2 messages", allocs)
	}
}

func TestRoundTrip(t *testing.T) {
	// Server frames built by AppendFrame, masked as a client would, parse
	// back to the same payloads.
	mask := func(f []byte, key [4]byte) []byte {
		if f[1]&0x80 != 0 {
			t.Fatal("server frame has the mask bit set")
		}
		var hl int
		switch f[1] & 0x7f {
		case 126:
			hl = 4
		case 127:
			hl = 10
		default:
			hl = 2
		}
		out := append([]byte{f[0], f[1] | 0x80}, f[2:hl]...)
		out = append(out, key[:]...)
		for i, c := range f[hl:] {
			out = append(out, c^key[i%4])
		}
		return out
	}
	var wire []byte
	var want []event
	for i, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 100000} {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte('a' + (i+j)%26)
		}
		op := OpText
		if i%2 == 1 {
			op = OpBinary
		}
		f := AppendFrame(nil, op, p)
		if len(f) != HeaderLen(n)+n {
			t.Fatalf("len %d: frame of %d bytes, HeaderLen %d", n, len(f), HeaderLen(n))
		}
		if f[0] != 0x80|byte(op) {
			t.Fatalf("first byte %#x", f[0])
		}
		wire = append(wire, mask(f, [4]byte{byte(i), 0x55, 0xaa, byte(n)})...)
		want = append(want, msg(op, p))
	}
	wire = append(wire, mask(AppendFrame(nil, OpPing, []byte("hi")), testMask)...)
	want = append(want, ctls(OpPing, "hi"))
	wire = append(wire, mask(AppendClose(nil, 1001, "going"), testMask)...)
	want = append(want, ctls(OpClose, "\x03\xe9going"))
	wire = append(wire, mask(AppendClose(nil, 0, "ignored"), testMask)...)
	want = append(want, ctls(OpClose, ""))
	for _, c := range choppers {
		got, err := feedChopped(t, wire, c.size, 0, &recorder{})
		if err != nil || !sameEvents(got, want) {
			t.Fatalf("%s: %v\n got %v\nwant %v", c.name, err, got, want)
		}
	}
}

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		n   int
		hdr []byte
	}{
		{0, []byte{0x82, 0}},
		{125, []byte{0x82, 125}},
		{126, []byte{0x82, 126, 0, 126}},
		{65535, []byte{0x82, 126, 0xff, 0xff}},
		{65536, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		h := AppendHeader([]byte("x"), OpBinary, tc.n)
		if !bytes.Equal(h[1:], tc.hdr) || string(h[:1]) != "x" {
			t.Errorf("AppendHeader(%d) = %x, want %x", tc.n, h[1:], tc.hdr)
		}
		if HeaderLen(tc.n) != len(tc.hdr) {
			t.Errorf("HeaderLen(%d) = %d", tc.n, HeaderLen(tc.n))
		}
	}
	if f := AppendClose(nil, 0, "x"); !bytes.Equal(f, []byte{0x88, 0}) {
		t.Errorf("AppendClose(0) = %x", f)
	}
	if f := AppendClose(nil, 1000, "ok"); !bytes.Equal(f, []byte{0x88, 4, 0x03, 0xe8, 'o', 'k'}) {
		t.Errorf("AppendClose(1000) = %x", f)
	}
	// Long reasons are cut at a UTF-8 boundary to fit in 125 bytes.
	long := strings.Repeat("a", 122) + "€€"
	f := AppendClose(nil, 1000, long)
	if f[1] > 125 || len(f) != 2+int(f[1]) {
		t.Fatalf("close frame length %d", f[1])
	}
	if code, reason, err := ParseClose(f[2:]); err != nil || code != 1000 || reason != strings.Repeat("a", 122) {
		t.Errorf("ParseClose(AppendClose) = %d %q %v", code, reason, err)
	}
	f = AppendClose(nil, 1000, strings.Repeat("b", 200))
	if f[1] != 125 {
		t.Errorf("close payload %d, want 125", f[1])
	}
}

func TestParseClose(t *testing.T) {
	code, reason, err := ParseClose(nil)
	if code != CodeNoStatus || reason != "" || err != nil {
		t.Errorf("empty: %d %q %v", code, reason, err)
	}
	code, reason, err = ParseClose([]byte("\x03\xe8κόσμε"))
	if code != 1000 || reason != "κόσμε" || err != nil {
		t.Errorf("1000: %d %q %v", code, reason, err)
	}
	for _, tc := range []struct {
		p    []byte
		code int
	}{
		{[]byte{3}, 1002},
		{[]byte{0, 0}, 1002},
		{[]byte{0x03, 0xed}, 1002}, // 1005
		{[]byte{0x03, 0xe8, 0xc0, 0x80}, 1007},
		{append([]byte{0x03, 0xe8}, rep('a', 124)...), 1002},
	} {
		if _, _, err := ParseClose(tc.p); errCode(err) != tc.code {
			t.Errorf("ParseClose(%x) = %v, want %d", tc.p, err, tc.code)
		}
	}
	valid := func(c int) bool {
		return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
	}
	for c := 0; c <= 0xffff; c++ {
		if ValidCloseCode(uint16(c)) != valid(c) {
			t.Errorf("ValidCloseCode(%d) = %v", c, !valid(c))
		}
	}
	for _, c := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000} {
		if ValidCloseCode(c) {
			t.Errorf("%d valid", c)
		}
	}
}

func TestErrorString(t *testing.T) {
	err := error(errUnmasked)
	if got := err.Error(); got != "websocket: unmasked client frame (1002)" {
		t.Errorf("Error() = %q", got)
	}
	for _, e := range []*Error{errUnmasked, errRSV, errOpcode, errControlTooLong, errControlFrag,
		errUnexpectedCont, errExpectedCont, errLength, errTooBig, errUTF8, errCloseLen, errCloseCode,
		errCloseReasonUTF8} {
		if len(e.Reason) > 123 || strings.ToLower(e.Reason) != e.Reason || !utf8.ValidString(e.Reason) {
			t.Errorf("bad reason %q", e.Reason)
		}
		switch e.Code {
		case 1002, 1007, 1009:
		default:
			t.Errorf("code %d", e.Code)
		}
	}
}
