package conformance

import (
	"bytes"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"
)

// Endpoint selects which server endpoint a case runs against.
type Endpoint int

const (
	// Default is an echo endpoint with the server's default limits.
	Default Endpoint = iota
	// Large is an echo endpoint that accepts 16 MiB messages (group 9,
	// and 7.1.6's 256 KiB message).
	Large
	// Deflate is an echo endpoint with permessage-deflate enabled and a
	// read limit of at least 128 KiB and below 16 MiB (groups 12 and 13).
	Deflate
)

// Case is one conformance case: a handshake, then steps run in order.
// After the last step, if the connection is still open, the runner sends
// a close 1000 and expects the close handshake to complete.
type Case struct {
	ID          string // Autobahn case ID, e.g. "6.4.3"
	Group       int    // first component of ID
	Description string
	Endpoint    Endpoint
	// Serial cases run alone, after the others (group 9, so that its
	// timings are not disturbed by other cases).
	Serial bool
	// Extra marks a case that Autobahn does not have.
	Extra bool
	// Extensions is sent as Sec-WebSocket-Extensions when not empty.
	Extensions string
	// CheckHandshake, if set, inspects the 101 response (for negotiated
	// extensions); an error fails the case.
	CheckHandshake func(resp *http.Response) error
	Steps          []Step
}

// Step is one action or expectation of a case. Run returns an error to
// fail the case; it may call Session.NonStrict to downgrade it.
type Step struct {
	Name string
	Run  func(s *Session) error
}

// NewStep returns a custom step (see the package doc on extensions).
func NewStep(name string, run func(s *Session) error) Step { return Step{Name: name, Run: run} }

// Chunking says how the bytes of a send are cut into TCP writes.
type Chunking struct {
	Size     int           // bytes per write; 0: no fixed chops
	PerFrame bool          // one write per frame
	Delay    time.Duration // pause between writes
	// PayloadCuts cuts the first frame after its header and after these
	// payload offsets (Autobahn's chops of one frame, as in 6.4.3).
	PayloadCuts []int
}

// Common chunkings. Writes go out with TCP_NODELAY, so each is a segment.
var (
	Whole    = Chunking{}
	PerFrame = Chunking{PerFrame: true}
	PerByte  = Chunking{Size: 1, Delay: time.Millisecond}
)

// Chops returns fixed-size chops with a pause between them.
func Chops(size int, delay time.Duration) Chunking { return Chunking{Size: size, Delay: delay} }

// StrictWait is how long a strict send waits for the server's reaction
// after the first byte that must be rejected. A case found NON-STRICT is
// run again with RetryStrictWait (see Runner), so that a loaded machine
// does not pass for a lax server.
const (
	StrictWait      = time.Second
	RetryStrictWait = 5 * time.Second
)

// StepTimeout bounds every expectation on small messages, and the dial
// and opening handshake; larger messages get more time (see
// Session.Timeout). A case run again (see Runner.RunCase) gets
// RetryStepTimeout instead: on a loaded machine under the race detector
// a 128 KiB compressed echo can take longer than 2 s.
const (
	StepTimeout      = 2 * time.Second
	RetryStepTimeout = 10 * time.Second
)

// Send writes frames cut as ch says. A close frame among them marks the
// close as sent by the runner.
func Send(ch Chunking, frames ...Frame) Step {
	return Step{Name: "send " + describeFrames(frames), Run: func(s *Session) error {
		s.Send(ch, frames...)
		return nil
	}}
}

// SendStrict is Send for a text message that may be invalid UTF-8: it
// writes up to and including the first byte a strict validator must
// reject, waits StrictWait for the server to close or drop, and only then
// writes the rest, marking the case NON-STRICT if the rest was needed.
// If the payload is valid, or only truncated at its end, it is Send.
func SendStrict(ch Chunking, frames ...Frame) Step {
	return Step{Name: "send strict " + describeFrames(frames), Run: func(s *Session) error {
		s.sendStrict(ch, frames)
		return nil
	}}
}

// strictCut returns the wire offset just past the first byte at which
// the text message carried by frames becomes invalid, or -1.
func strictCut(frames []Frame, starts []int) int {
	var msg []byte
	var offs []int // wire offset of each message byte
	for i, f := range frames {
		if f.Op != OpText && f.Op != OpContinuation {
			continue
		}
		base := starts[i] + headerLen(len(f.Payload))
		for j := range f.Payload {
			offs = append(offs, base+j)
		}
		msg = append(msg, f.Payload...)
	}
	at, _ := FailAt(msg)
	if at < 0 {
		return -1
	}
	return offs[at] + 1
}

// cuts returns the end offsets of the writes for the wire bytes of
// frames (frame i starts at starts[i]), with extra (if >= 0) as an
// additional cut.
func cuts(frames []Frame, wire []byte, starts []int, ch Chunking, extra int) []int {
	var cs []int
	switch {
	case ch.PerFrame:
		cs = append(cs, starts[1:]...)
	case ch.Size > 0:
		for o := ch.Size; o < len(wire); o += ch.Size {
			cs = append(cs, o)
		}
	case len(ch.PayloadCuts) > 0:
		base := headerLen(len(frames[0].Payload))
		for _, c := range ch.PayloadCuts {
			if c > 0 && base+c < len(wire) {
				cs = append(cs, base+c)
			}
		}
	}
	cs = append(cs, len(wire))
	if extra < 0 {
		return cs
	}
	out := make([]int, 0, len(cs)+1)
	added := false
	for _, c := range cs {
		if !added && extra <= c {
			if extra < c {
				out = append(out, extra)
			}
			added = true
		}
		out = append(out, c)
	}
	return out
}

// Pause sleeps for d.
func Pause(d time.Duration) Step {
	return Step{Name: "pause " + d.String(), Run: func(*Session) error {
		time.Sleep(d)
		return nil
	}}
}

// ExpectMessage expects the next thing received to be a data message of
// type op with exactly payload p.
func ExpectMessage(op byte, p []byte) Step {
	return Step{Name: fmt.Sprintf("expect %s message of %d bytes", opName(op), len(p)), Run: func(s *Session) error {
		m, err := s.ReadMessage(s.Timeout(len(p)))
		if err != nil {
			return fmt.Errorf("want %s echo of %d bytes: %w", opName(op), len(p), err)
		}
		if m.Rsv != 0 {
			return fmt.Errorf("echo has RSV bits %03b set", m.Rsv)
		}
		if m.Op != op || !bytes.Equal(m.Data, p) {
			return fmt.Errorf("want %s echo of %d bytes, got %s", opName(op), len(p), describeMessage(m, p))
		}
		return nil
	}}
}

// ExpectPong expects the next frame to be a pong carrying p.
func ExpectPong(p []byte) Step {
	return Step{Name: fmt.Sprintf("expect pong of %d bytes", len(p)), Run: func(s *Session) error {
		f, err := s.ReadFrame(s.Timeout(0))
		if err != nil {
			return fmt.Errorf("want pong of %d bytes: %w", len(p), err)
		}
		if f.Op != OpPong || !bytes.Equal(f.Payload, p) {
			return fmt.Errorf("want pong %q, got %s", trunc(p), describeFrame(f))
		}
		return nil
	}}
}

// NoStatus stands for a close frame without a code (RFC 6455 1005).
const NoStatus uint16 = 1005

// ExpectClose expects a close frame with one of codes (NoStatus for an
// empty close payload), then completes the close handshake: the runner
// answers if it has not sent its close yet, and the server must end the
// TCP connection.
func ExpectClose(codes ...uint16) Step {
	return Step{Name: fmt.Sprintf("expect close %v", codes), Run: func(s *Session) error {
		return s.expectClose(codes, false)
	}}
}

// ExpectFail expects the connection to be failed: a close frame with one
// of codes (1002 if none given), or the TCP connection dropped.
func ExpectFail(codes ...uint16) Step {
	if len(codes) == 0 {
		codes = []uint16{1002}
	}
	return Step{Name: fmt.Sprintf("expect fail %v or drop", codes), Run: func(s *Session) error {
		return s.expectClose(codes, true)
	}}
}

// ExpectInvalidUTF8 expects close 1007, as Autobahn's 6.x cases do.
func ExpectInvalidUTF8() Step { return ExpectClose(1007) }

func opName(op byte) string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("opcode %d", op)
}

func describeFrames(fs []Frame) string {
	if len(fs) == 1 {
		return describeFrame(fs[0])
	}
	return fmt.Sprintf("%d frames", len(fs))
}

func describeFrame(f Frame) string {
	s := fmt.Sprintf("%s frame of %d bytes", opName(f.Op), len(f.Payload))
	if f.Op == OpClose {
		code, reason, err := parseClose(f.Payload)
		if err == nil {
			s = fmt.Sprintf("close frame %d %q", code, reason)
		}
	}
	if !f.Fin {
		s += " (FIN=0)"
	}
	if f.Rsv != 0 {
		s += fmt.Sprintf(" (RSV=%d)", f.Rsv)
	}
	return s
}

func describeMessage(m Message, want []byte) string {
	s := fmt.Sprintf("%s message of %d bytes", opName(m.Op), len(m.Data))
	if len(m.Data) <= 40 && len(want) <= 40 {
		s += fmt.Sprintf(" %q (want %q)", m.Data, want)
	}
	return s
}

func trunc(p []byte) []byte {
	if len(p) > 32 {
		return p[:32]
	}
	return p
}

// validCloseCode reports whether a server may send code on the wire.
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// parseClose splits a close payload; an empty payload is NoStatus.
func parseClose(p []byte) (code uint16, reason string, err error) {
	switch {
	case len(p) == 0:
		return NoStatus, "", nil
	case len(p) == 1:
		return 0, "", fmt.Errorf("close payload of 1 byte")
	}
	code = uint16(p[0])<<8 | uint16(p[1])
	if !validCloseCode(code) {
		return code, "", fmt.Errorf("close code %d is not valid on the wire", code)
	}
	if !utf8.Valid(p[2:]) {
		return code, "", fmt.Errorf("close reason is not valid UTF-8")
	}
	return code, string(p[2:]), nil
}
