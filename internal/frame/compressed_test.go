package frame

import (
	"testing"

	"github.com/wsroom/wsroom/internal/wstest"
)

// zrecorder records events and, for each message, whether the parser said
// it was compressed.
type zrecorder struct {
	recorder
	p          *Parser
	compressed []bool
}

func (z *zrecorder) OnMessage(op Opcode, payload []byte) error {
	z.compressed = append(z.compressed, z.p.Compressed())
	return z.recorder.OnMessage(op, payload)
}

func TestCompressedMessages(t *testing.T) {
	rsv1 := func(fin bool, op Opcode, payload []byte) []byte {
		b0 := byte(op) | 0x40
		if fin {
			b0 |= 0x80
		}
		return rawFrame(b0, payload, false, wstest.LenShortest)
	}
	garbage := []byte{0xc3, 0x28, 0xff, 0xfe} // not UTF-8: compressed text is checked after inflating
	cases := []struct {
		name       string
		allow      bool
		data       []byte
		limit      int64
		code       int
		want       []event
		compressed []bool
	}{
		{"rsv1 text", true, rsv1(true, OpText, garbage), 0, 0, []event{msg(OpText, garbage)}, []bool{true}},
		{"rsv1 binary", true, rsv1(true, OpBinary, garbage), 0, 0, []event{msg(OpBinary, garbage)}, []bool{true}},
		{"rsv1 fragmented with ping", true, wstest.Cat(
			rsv1(false, OpText, garbage[:2]),
			mk(true, OpPing, []byte("p")),
			mk(false, OpContinuation, nil),
			mk(true, OpContinuation, garbage[2:]),
			mk(true, OpText, []byte("plain"))), 0, 0,
			[]event{ctls(OpPing, "p"), msg(OpText, garbage), text("plain")}, []bool{true, false}},
		{"plain text still checked", true, wstest.Cat(rsv1(true, OpText, garbage), mk(true, OpText, garbage)), 0, CodeInvalidData,
			[]event{msg(OpText, garbage)}, []bool{true}},
		{"rsv1 on continuation", true, wstest.Cat(rsv1(false, OpText, garbage), rsv1(true, OpContinuation, nil)), 0, CodeProtocolError, nil, nil},
		{"rsv1 on ping", true, rsv1(true, OpPing, nil), 0, CodeProtocolError, nil, nil},
		{"rsv1 on pong inside message", true, wstest.Cat(rsv1(false, OpText, nil), rsv1(true, OpPong, nil)), 0, CodeProtocolError, nil, nil},
		{"rsv1 on close", true, rsv1(true, OpClose, []byte{3, 0xe8}), 0, CodeProtocolError, nil, nil},
		{"rsv1 on reserved opcode", true, rsv1(true, 3, nil), 0, CodeProtocolError, nil, nil},
		{"rsv2 allowed nowhere", true, rawFrame(0xa1, []byte("x"), false, wstest.LenShortest), 0, CodeProtocolError, nil, nil},
		{"rsv1 and rsv3", true, rawFrame(0xd1, []byte("x"), false, wstest.LenShortest), 0, CodeProtocolError, nil, nil},
		{"rsv1 not allowed", false, rsv1(true, OpText, []byte("x")), 0, CodeProtocolError, nil, nil},
		{"compressed within wire allowance", true, rsv1(true, OpBinary, rep(1, int(CompressedLimit(100)))), 100, 0,
			[]event{msg(OpBinary, rep(1, int(CompressedLimit(100))))}, []bool{true}},
		{"compressed over wire allowance", true, rsv1(true, OpBinary, rep(1, int(CompressedLimit(100))+1)), 100, CodeTooBig, nil, nil},
		{"compressed fragments over allowance", true, wstest.Cat(
			rsv1(false, OpBinary, rep(1, 100)),
			mk(true, OpContinuation, rep(1, int(CompressedLimit(100))-99))), 100, CodeTooBig, nil, nil},
		{"plain over limit", true, mk(true, OpBinary, rep(1, 101)), 100, CodeTooBig, nil, nil},
	}
	for _, tc := range cases {
		for _, ch := range choppers {
			t.Run(tc.name+"/"+ch.name, func(t *testing.T) {
				z := &zrecorder{}
				var p Parser
				z.p = &p
				z.t = t
				p.Init(z, tc.limit)
				p.AllowCompressed(tc.allow)
				if err := feedPieces(&p, tc.data, ch.size); errCode(err) != tc.code {
					t.Fatalf("error %v, want code %d", err, tc.code)
				}
				if !sameEvents(z.events, tc.want) {
					t.Fatalf("events %v, want %v", z.events, tc.want)
				}
				if len(z.compressed) != len(tc.compressed) {
					t.Fatalf("compressed flags %v, want %v", z.compressed, tc.compressed)
				}
				for i := range z.compressed {
					if z.compressed[i] != tc.compressed[i] {
						t.Fatalf("compressed flags %v, want %v", z.compressed, tc.compressed)
					}
				}
			})
		}
	}
}

func TestCompressedLimit(t *testing.T) {
	for _, c := range []struct{ in, want int64 }{{0, 0}, {-1, 0}, {800, 800 + 100 + 64}, {64 << 10, 64<<10 + 8<<10 + 64}} {
		if got := CompressedLimit(c.in); got != c.want {
			t.Errorf("CompressedLimit(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}

// prefixRecorder records the prefix lengths CheckCompressedPrefix sees and
// fails the parser once a prefix reaches failAt (0: never).
type prefixRecorder struct {
	recorder
	lens   []int
	failAt int
}

func (r *prefixRecorder) CheckCompressedPrefix(prefix []byte) error {
	r.lens = append(r.lens, len(prefix))
	if r.failAt > 0 && len(prefix) >= r.failAt {
		return errTooBig
	}
	return nil
}

// TestCompressedPrefixChecks: a fragmented compressed message is shown to
// CheckCompressedPrefix from 1 KiB on, each time it has doubled, never for
// its final frame, never for plain messages; an error fails the parser at
// once.
func TestCompressedPrefixChecks(t *testing.T) {
	var frames [][]byte
	frames = append(frames, rawFrame(0x42, rep(1, 512), false, wstest.LenShortest))
	for range 30 {
		frames = append(frames, mk(false, OpContinuation, rep(1, 512)))
	}
	frames = append(frames, mk(true, OpContinuation, rep(1, 512)))
	compressed := wstest.Cat(frames...)
	plain := wstest.Cat(append([][]byte{mk(false, OpBinary, rep(1, 4096))}, mk(true, OpContinuation, rep(1, 4096)))...)

	var r prefixRecorder
	var p Parser
	p.Init(&r, 0)
	p.AllowCompressed(true)
	if err := p.Feed(wstest.Cat(compressed, plain)); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	want := []int{1024, 2048, 4096, 8192}
	if len(r.lens) != len(want) {
		t.Fatalf("checked prefixes of %v bytes, want %v", r.lens, want)
	}
	for i := range want {
		if r.lens[i] != want[i] {
			t.Fatalf("checked prefixes of %v bytes, want %v", r.lens, want)
		}
	}
	if len(r.events) != 2 {
		t.Fatalf("got %d messages, want 2", len(r.events))
	}

	// An error refuses the message before its final frame arrives.
	r2 := prefixRecorder{failAt: 2048}
	p.Init(&r2, 0)
	p.AllowCompressed(true)
	err := p.Feed(wstest.Cat(frames[:4]...))
	if errCode(err) != CodeTooBig || len(r2.events) != 0 {
		t.Fatalf("Feed: %v with %d messages, want 1009 and none", err, len(r2.events))
	}
}
