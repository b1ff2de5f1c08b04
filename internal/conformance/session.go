package conformance

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Session is one case's connection to the server under test.
type Session struct {
	// AllowRSV1 accepts RSV1 on the first frame of server data messages
	// (set it once permessage-deflate is negotiated).
	AllowRSV1 bool

	pmd *pmdState // negotiated permessage-deflate (deflate.go)

	strictWait  time.Duration
	stepTimeout time.Duration // StepTimeout, or RetryStepTimeout on a retry
	conn        net.Conn
	resp        *http.Response
	events      chan event
	quit        chan struct{}
	done        chan struct{}
	pending     []event
	endErr      error // how the server's side of the stream ended
	gotClose    bool  // the server's close frame was read
	sentClose   bool  // the runner sent a close frame
	writeErr    error
	late        string // why the case is NON-STRICT
	info        string
}

type event struct {
	f   Frame
	err error
}

// Message is a data message assembled from server frames. Rsv holds the
// RSV bits of its first frame.
type Message struct {
	Op   byte
	Rsv  byte
	Data []byte
}

// errTimeout is returned when nothing arrives in time.
var errTimeout = errors.New("nothing received")

// dial connects to addr, performs the opening handshake for path with
// the given extension offer within stepTimeout, and starts the frame
// reader.
func dial(addr, path, extensions string, stepTimeout time.Duration) (*Session, error) {
	conn, err := net.DialTimeout("tcp", addr, stepTimeout)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n"
	if extensions != "" {
		req += "Sec-WebSocket-Extensions: " + extensions + "\r\n"
	}
	req += "\r\n"
	conn.SetDeadline(time.Now().Add(stepTimeout))
	br := bufio.NewReaderSize(conn, 64<<10)
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	resp.Body.Close()
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		conn.Close()
		return nil, fmt.Errorf("handshake: status %d, Sec-WebSocket-Accept %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	conn.SetDeadline(time.Time{})
	s := &Session{strictWait: StrictWait, stepTimeout: stepTimeout, conn: conn, resp: resp, events: make(chan event, 16),
		quit: make(chan struct{}), done: make(chan struct{})}
	go s.readLoop(br)
	return s, nil
}

// readLoop delivers server frames until the stream ends or the session
// closes. It is joined by close.
func (s *Session) readLoop(br *bufio.Reader) {
	defer close(s.done)
	for {
		f, err := readServerFrame(br)
		select {
		case s.events <- event{f: f, err: err}:
		case <-s.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// close drops the connection and joins the reader.
func (s *Session) close() {
	s.conn.Close()
	close(s.quit)
	<-s.done
}

// Response returns the server's 101 response (its body is closed).
func (s *Session) Response() *http.Response { return s.resp }

// NonStrict marks the case NON-STRICT with reason (the first one wins).
func (s *Session) NonStrict(reason string) {
	if s.late == "" {
		s.late = reason
	}
}

// Info records an informational note shown in the summary (timings).
func (s *Session) Info(note string) { s.info = note }

// Fail returns an error that fails the case; a helper for custom steps.
func (s *Session) Fail(format string, args ...any) error { return fmt.Errorf(format, args...) }

// next returns the next event, or errTimeout after d.
func (s *Session) next(d time.Duration) event {
	if len(s.pending) > 0 {
		ev := s.pending[0]
		s.pending = s.pending[1:]
		return ev
	}
	if s.endErr != nil {
		return event{err: s.endErr}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case ev := <-s.events:
		if ev.err != nil {
			s.endErr = ev.err
		}
		return ev
	case <-t.C:
		return event{err: errTimeout}
	}
}

// reacted waits up to d for the server to close or drop the connection,
// keeping whatever arrives for the following steps.
func (s *Session) reacted(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for _, ev := range s.pending {
		if ev.err != nil || ev.f.Op == OpClose {
			return true
		}
	}
	if s.endErr != nil {
		return true
	}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		ev := s.next(left)
		if errors.Is(ev.err, errTimeout) {
			return false
		}
		s.pending = append(s.pending, ev)
		if ev.err != nil || ev.f.Op == OpClose {
			return true
		}
	}
}

// ReadFrame returns the next well-formed server frame. A malformed frame,
// a timeout or the end of the connection is an error.
func (s *Session) ReadFrame(d time.Duration) (Frame, error) {
	ev := s.next(d)
	if ev.err != nil {
		return Frame{}, describeEnd(ev.err, d)
	}
	if err := s.checkFrame(ev.f); err != nil {
		return Frame{}, err
	}
	if ev.f.Op == OpClose {
		s.gotClose = true
	}
	return ev.f, nil
}

// ReadMessage reads one data message, assembling fragments. Anything
// else first (a control frame, a close) is an error.
func (s *Session) ReadMessage(d time.Duration) (Message, error) {
	deadline := time.Now().Add(d)
	var m Message
	for first := true; ; first = false {
		f, err := s.ReadFrame(max(time.Until(deadline), time.Millisecond))
		if err != nil {
			return m, err
		}
		switch {
		case first && (f.Op == OpText || f.Op == OpBinary):
			m.Op, m.Rsv = f.Op, f.Rsv
		case !first && f.Op == OpContinuation:
		default:
			return m, fmt.Errorf("got %s", describeFrame(f))
		}
		m.Data = append(m.Data, f.Payload...)
		if f.Fin {
			return m, nil
		}
	}
}

// checkFrame verifies that a server frame is well-formed.
func (s *Session) checkFrame(f Frame) error {
	switch {
	case f.Masked:
		return fmt.Errorf("server sent a masked %s", describeFrame(f))
	case f.Rsv != 0 && !(s.AllowRSV1 && f.Rsv == RSV1 && (f.Op == OpText || f.Op == OpBinary)):
		return fmt.Errorf("server sent RSV bits: %s", describeFrame(f))
	case f.Op > OpBinary && f.Op < OpClose || f.Op > OpPong:
		return fmt.Errorf("server sent reserved opcode %d", f.Op)
	case f.Op >= OpClose && (!f.Fin || len(f.Payload) > 125):
		return fmt.Errorf("server sent a malformed control frame: %s", describeFrame(f))
	case f.Op == OpClose:
		if _, _, err := parseClose(f.Payload); err != nil {
			return fmt.Errorf("server sent a malformed close frame: %v", err)
		}
	}
	return nil
}

func describeEnd(err error, d time.Duration) error {
	switch {
	case errors.Is(err, errTimeout):
		return fmt.Errorf("nothing received within %v", d)
	case errors.Is(err, io.EOF):
		return errors.New("TCP connection closed without a close frame")
	}
	return fmt.Errorf("connection dropped: %v", err)
}

// expectClose implements ExpectClose and ExpectFail.
func (s *Session) expectClose(codes []uint16, allowDrop bool) error {
	ev := s.next(s.stepTimeout)
	if ev.err != nil {
		if allowDrop && !errors.Is(ev.err, errTimeout) {
			return nil
		}
		return fmt.Errorf("want close %v: %w", codes, describeEnd(ev.err, s.stepTimeout))
	}
	if err := s.checkFrame(ev.f); err != nil {
		return err
	}
	if ev.f.Op != OpClose {
		return fmt.Errorf("want close %v, got %s", codes, describeFrame(ev.f))
	}
	s.gotClose = true
	code, reason, _ := parseClose(ev.f.Payload)
	ok := false
	for _, c := range codes {
		ok = ok || c == code
	}
	if !ok {
		return fmt.Errorf("want close %v, got close %d %q", codes, code, reason)
	}
	if !s.sentClose {
		body := []byte(nil)
		if code != NoStatus {
			body = CloseBody(code, "")
		}
		s.sentClose = true
		wire, _ := encodeFrames([]Frame{Control(OpClose, body)})
		s.write(wire)
	}
	return s.expectEnd()
}

// expectEnd expects the server to end the TCP connection after the close
// handshake, with nothing more sent.
func (s *Session) expectEnd() error {
	ev := s.next(s.stepTimeout)
	switch {
	case errors.Is(ev.err, errTimeout):
		return fmt.Errorf("server kept the TCP connection open %v after the close handshake", s.stepTimeout)
	case ev.err != nil:
		return nil
	}
	return fmt.Errorf("server sent a %s after its close frame", describeFrame(ev.f))
}

// finish closes a connection that the steps left open: close 1000, which
// the server must echo, then the end of TCP.
func (s *Session) finish() error {
	if s.gotClose || s.endErr != nil && len(s.pending) == 0 {
		if s.gotClose {
			return nil
		}
		return fmt.Errorf("at the end of the case: %w", describeEnd(s.endErr, 0))
	}
	if !s.sentClose {
		s.sentClose = true
		wire, _ := encodeFrames([]Frame{Control(OpClose, CloseBody(1000, ""))})
		s.write(wire)
	}
	if err := s.expectClose([]uint16{1000}, false); err != nil {
		return fmt.Errorf("closing normally: %w", err)
	}
	return nil
}

// noteSent records a close frame among frames about to be sent.
func (s *Session) noteSent(frames []Frame) {
	for _, f := range frames {
		if f.Op == OpClose {
			s.sentClose = true
		}
	}
}

// Timeout is how long to wait for an expected message of n bytes (0 for
// a control frame): StepTimeout, or RetryStepTimeout when the case is run
// again, plus 2 s per MiB (generous, for the race detector on a loaded
// machine). Custom steps use it for their reads.
func (s *Session) Timeout(n int) time.Duration {
	return s.stepTimeout + time.Duration(n>>20)*2*time.Second
}

// write sends b in one write. After a write error nothing more is sent;
// the expectations then judge what the server did.
func (s *Session) write(b []byte) {
	if s.writeErr != nil {
		return
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.Timeout(len(b))))
	if _, err := s.conn.Write(b); err != nil {
		s.writeErr = err
	}
}

// writeCut writes wire[0:ends[0]], wire[ends[0]:ends[1]], … pausing
// delay between writes.
func (s *Session) writeCut(wire []byte, ends []int, delay time.Duration) {
	s.writeFrom(wire, 0, ends, delay)
}

func (s *Session) writeFrom(wire []byte, from int, ends []int, delay time.Duration) {
	for i, e := range ends {
		if i > 0 && delay > 0 {
			time.Sleep(delay)
		}
		s.write(wire[from:e])
		from = e
	}
}

// Send writes frames cut as ch says (also for custom steps).
func (s *Session) Send(ch Chunking, frames ...Frame) {
	wire, starts := encodeFrames(frames)
	s.noteSent(frames)
	s.writeCut(wire, cuts(frames, wire, starts, ch, -1), ch.Delay)
}

// sendStrict implements SendStrict.
func (s *Session) sendStrict(ch Chunking, frames []Frame) {
	wire, starts := encodeFrames(frames)
	cut := strictCut(frames, starts)
	s.noteSent(frames)
	if cut < 0 {
		s.writeCut(wire, cuts(frames, wire, starts, ch, -1), ch.Delay)
		return
	}
	var first, rest []int
	for _, c := range cuts(frames, wire, starts, ch, cut) {
		if c <= cut {
			first = append(first, c)
		} else {
			rest = append(rest, c)
		}
	}
	s.writeCut(wire, first, ch.Delay)
	if s.reacted(s.strictWait) {
		return
	}
	s.NonStrict(fmt.Sprintf("no reaction within %v of the first invalid byte (wire offset %d of %d)", s.strictWait, cut, len(wire)))
	s.writeFrom(wire, cut, rest, ch.Delay)
}
