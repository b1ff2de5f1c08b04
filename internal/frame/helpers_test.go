package frame

import (
	"errors"
	"fmt"
	"testing"

	"github.com/wsroom/wsroom/internal/wstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// rawFrame builds a client frame with first byte b0 (FIN, RSV, opcode),
// masked with testMask unless unmasked is set, using the given length
// form (wstest.LenShortest: the shortest).
func rawFrame(b0 byte, payload []byte, unmasked bool, form wstest.LengthForm) []byte {
	return wstest.Frame{
		Fin: b0&0x80 != 0, RSV: b0 & 0x70, Op: wstest.Opcode(b0 & 0x0f),
		Masked: !unmasked, Key: &testMask, Payload: payload, Form: form,
	}.Bytes()
}

// mk builds a masked client frame with the shortest length form.
func mk(fin bool, op Opcode, payload []byte) []byte {
	return wstest.Frame{Fin: fin, Op: wstest.Opcode(op), Masked: true, Key: &testMask, Payload: payload}.Bytes()
}

func rep(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}

// event is what the recorder saw.
type event struct {
	control bool
	op      Opcode
	payload string
}

func (e event) String() string {
	kind := "msg"
	if e.control {
		kind = "ctl"
	}
	p := e.payload
	if len(p) > 40 {
		p = fmt.Sprintf("%q...(%d bytes)", p[:40], len(p))
	} else {
		p = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%s %v %s", kind, e.op, p)
}

func msg(op Opcode, p []byte) event  { return event{op: op, payload: string(p)} }
func ctl(op Opcode, p []byte) event  { return event{control: true, op: op, payload: string(p)} }
func text(s string) event            { return event{op: OpText, payload: s} }
func ctls(op Opcode, s string) event { return event{control: true, op: op, payload: s} }

// recorder is a Handler that records events and can fail on demand.
type recorder struct {
	events  []event
	failAt  int   // return failErr from the failAt-th event (1-based); 0 never
	failErr error // error to return
	nilMsg  bool  // saw an OnMessage with a nil payload
	limit   int64
	t       testing.TB
	rsv1    bool // feedChopped allows compressed messages (RSV1)
}

func (r *recorder) add(e event) error {
	r.events = append(r.events, e)
	if r.failAt > 0 && len(r.events) == r.failAt {
		return r.failErr
	}
	return nil
}

func (r *recorder) OnMessage(op Opcode, payload []byte) error {
	if payload == nil {
		r.nilMsg = true
	}
	limit := r.limit
	if r.rsv1 {
		limit = CompressedLimit(limit) // a compressed message's wire allowance
	}
	if limit > 0 && int64(len(payload)) > limit {
		r.t.Errorf("message of %d bytes exceeds limit %d", len(payload), limit)
	}
	return r.add(msg(op, payload))
}

func (r *recorder) OnControl(op Opcode, payload []byte) error {
	if len(payload) > 125 {
		r.t.Errorf("control payload of %d bytes", len(payload))
	}
	return r.add(ctl(op, payload))
}

// chopper names a way to split the input into Feed calls.
type chopper struct {
	name string
	size int // 0: all at once
}

var choppers = []chopper{{"all", 0}, {"bytes", 1}, {"chop3", 3}, {"chop7", 7}}

// feedChopped feeds a copy of data to a fresh parser in pieces of size n
// (n <= 0: all at once) and returns what the handler saw and the first error.
func feedChopped(t testing.TB, data []byte, n int, limit int64, r *recorder) ([]event, error) {
	var p Parser
	r.t = t
	r.limit = limit
	p.Init(r, limit)
	p.AllowCompressed(r.rsv1)
	err := feedPieces(&p, data, n)
	return r.events, err
}

// feedPieces feeds a copy of data to p in pieces of size n (n <= 0: all
// at once) and returns the first error.
func feedPieces(p *Parser, data []byte, n int) error {
	buf := append([]byte(nil), data...)
	if n <= 0 {
		n = max(len(buf), 1)
	}
	var err error
	for len(buf) > 0 && err == nil {
		k := min(n, len(buf))
		err = p.Feed(buf[:k])
		buf = buf[k:]
	}
	return err
}

// errCode returns the close code of a *Error, 0 for nil, -1 for other errors.
func errCode(err error) int {
	if err == nil {
		return 0
	}
	var fe *Error
	if errors.As(err, &fe) {
		return int(fe.Code)
	}
	return -1
}
