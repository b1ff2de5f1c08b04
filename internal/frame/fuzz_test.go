package frame

import (
	"testing"
	"unicode/utf8"

	"github.com/wsroom/wsroom/internal/wstest"
)

// frameWithKey builds a client frame with first byte b0 and masking key key.
// A zero key leaves the payload readable, which helps the fuzzer mutate it.
func frameWithKey(b0 byte, payload []byte, key [4]byte) []byte {
	return wstest.Frame{Fin: b0&0x80 != 0, RSV: b0 & 0x70, Op: wstest.Opcode(b0 & 0x0f), Masked: true, Key: &key, Payload: payload}.Bytes()
}

var fuzzLimits = [8]int64{0, 1, 16, 125, 126, 1000, 65536, 0}

func FuzzParser(f *testing.F) {
	zero := [4]byte{}
	seeds := [][]byte{
		mk(true, OpText, []byte("hello")),
		frameWithKey(0x81, []byte("hello κόσμε"), zero),
		frameWithKey(0x82, rep(7, 200), zero),
		wstest.Cat(frameWithKey(0x01, []byte("frag"), zero), frameWithKey(0x89, []byte("ping"), zero),
			frameWithKey(0x80, []byte("ment"), zero)),
		wstest.Cat(mk(false, OpText, []byte("ab\xe2")), mk(true, OpContinuation, []byte("\x82\xac"))),
		frameWithKey(0x88, wstest.ClosePayload(1000, "bye"), zero),
		frameWithKey(0x88, wstest.ClosePayload(1005, ""), zero),
		frameWithKey(0x88, []byte{3}, zero),
		frameWithKey(0x81, []byte{0xed, 0xa0, 0x80}, zero),
		frameWithKey(0x81, []byte{0xf4, 0x90, 0x80, 0x80}, zero),
		frameWithKey(0xc1, []byte("rsv"), zero),
		wstest.Cat(frameWithKey(0x41, []byte{0xf2, 0x48, 0xcd}, zero), frameWithKey(0x80, []byte{0xc9, 0xc9, 0x07, 0}, zero)),
		wstest.Cat(frameWithKey(0x42, []byte("z"), zero), frameWithKey(0xc0, []byte("bad"), zero)),
		frameWithKey(0x83, nil, zero),
		frameWithKey(0x09, nil, zero),
		rawFrame(0x81, []byte("unmasked"), true, 0),
		rawFrame(0x82, []byte("64"), false, wstest.Len64),
		rawFrame(0x82, rep('x', 70000), false, 0)[:20],
		{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		wstest.Cat(mk(true, OpText, nil), mk(true, OpBinary, nil), mk(true, OpPong, nil)),
	}
	for i, s := range seeds {
		// The first byte selects chop size, limit, whether compressed
		// (RSV1) messages are allowed, and handler failure.
		f.Add(append([]byte{byte(i * 37)}, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		ctlByte := data[0]
		data = data[1:]
		chop := int(ctlByte&7) + 1
		limit := fuzzLimits[(ctlByte>>3)&7]
		rsv1 := ctlByte&0x40 != 0
		failAt := int(ctlByte >> 7)

		run := func(n int) ([]event, error) {
			r := &recorder{failAt: failAt, failErr: errStop, rsv1: rsv1}
			events, err := feedChopped(t, data, n, limit, r)
			for _, e := range events {
				if !e.control {
					if e.op != OpText && e.op != OpBinary {
						t.Fatalf("message with opcode %v", e.op)
					}
					// Compressed text is checked after inflating, by the caller.
					if e.op == OpText && !rsv1 && !utf8.ValidString(e.payload) {
						t.Fatalf("invalid UTF-8 text delivered: %q", e.payload)
					}
					continue
				}
				switch e.op {
				case OpPing, OpPong:
				case OpClose:
					if _, _, err := ParseClose([]byte(e.payload)); err != nil {
						t.Fatalf("invalid close payload delivered: %v", err)
					}
				default:
					t.Fatalf("control frame with opcode %v", e.op)
				}
			}
			if err != nil && err != errStop && errCode(err) <= 0 {
				t.Fatalf("unexpected error %v", err)
			}
			return events, err
		}
		evA, errA := run(0)
		evB, errB := run(1)
		evC, errC := run(chop)
		if !sameEvents(evA, evB) || !sameEvents(evA, evC) {
			t.Fatalf("events differ:\n all   %v\n bytes %v\n chop%d %v", evA, evB, chop, evC)
		}
		if errA != errB || errA != errC {
			t.Fatalf("errors differ: all %v, bytes %v, chop%d %v", errA, errB, chop, errC)
		}
	})
}
