package conformance_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/wsroom/wsroom/internal/conformance"
)

// flaws selects what a brokenServer gets wrong.
type flaws struct {
	noUTF8      bool   // never validates text
	lateUTF8    bool   // validates text only when the message is complete
	acceptRSV   bool   // ignores RSV bits and skips reserved opcodes
	pingSilent  bool   // never answers pings
	pingWrong   bool   // answers pings with the wrong payload
	keepOpen    bool   // does not end TCP after the close handshake (until the runner does)
	maskedClose bool   // masks its close frames
	utf8Code    uint16 // closes with this code instead of 1007
	slowOnce    bool   // its first 1007 close comes 1.5 s late
	dropOnce    bool   // drops the connection of its first ping, unanswered
}

// brokenServer is a small echo server over gobwas/ws's low-level frame
// reading, correct (though validating UTF-8 one frame at a time, not one
// byte at a time) except for its flaws.
type brokenServer struct {
	f    flaws
	slow sync.Once
	drop sync.Once
}

func startBroken(t *testing.T, f flaws) conformance.Target {
	s := &brokenServer{f: f}
	return serveTCP(t, s.serve)
}

func (s *brokenServer) write(c net.Conn, op ws.OpCode, p []byte) {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	if op == ws.OpClose && s.f.maskedClose {
		h.Masked, h.Mask = true, [4]byte{1, 2, 3, 4}
		p = append([]byte(nil), p...)
		ws.Cipher(p, h.Mask, 0)
	}
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	ws.WriteHeader(c, h)
	c.Write(p)
}

// fail closes with code, then drains until the peer ends or 2 s pass.
func (s *brokenServer) fail(c net.Conn, code uint16) {
	s.write(c, ws.OpClose, binary.BigEndian.AppendUint16(nil, code))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, c)
}

func (s *brokenServer) serve(c net.Conn) {
	if _, err := ws.Upgrade(c); err != nil {
		return
	}
	br := bufio.NewReader(c)
	var msg []byte
	var msgOp ws.OpCode
	inMsg := false
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return
		}
		if h.Length > 16<<20 {
			s.fail(c, 1009)
			return
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		ws.Cipher(p, h.Mask, 0)
		if h.Rsv != 0 && !s.f.acceptRSV {
			s.fail(c, 1002)
			return
		}
		if h.OpCode.IsControl() && (!h.Fin || h.Length > 125) {
			s.fail(c, 1002)
			return
		}
		switch h.OpCode {
		case ws.OpPing:
			if s.f.dropOnce {
				first := false
				s.drop.Do(func() { first = true })
				if first {
					return // serveTCP closes the connection
				}
			}
			switch {
			case s.f.pingSilent:
			case s.f.pingWrong:
				s.write(c, ws.OpPong, append(p, 'x'))
			default:
				s.write(c, ws.OpPong, p)
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			s.closeReply(c, p)
			return
		case ws.OpText, ws.OpBinary:
			if inMsg {
				s.fail(c, 1002)
				return
			}
			inMsg, msgOp, msg = true, h.OpCode, nil
		case ws.OpContinuation:
			if !inMsg {
				s.fail(c, 1002)
				return
			}
		default:
			if s.f.acceptRSV {
				continue
			}
			s.fail(c, 1002)
			return
		}
		msg = append(msg, p...)
		if msgOp == ws.OpText && !s.f.noUTF8 {
			at, incomplete := conformance.FailAt(msg)
			bad := at >= 0 || h.Fin && incomplete
			if s.f.lateUTF8 && !h.Fin {
				bad = false
			}
			if bad {
				code := uint16(1007)
				if s.f.utf8Code != 0 {
					code = s.f.utf8Code
				}
				if s.f.slowOnce {
					s.slow.Do(func() { time.Sleep(1500 * time.Millisecond) })
				}
				s.fail(c, code)
				return
			}
		}
		if h.Fin {
			s.write(c, msgOp, msg)
			inMsg = false
		}
	}
}

// closeReply answers a close frame and ends the connection.
func (s *brokenServer) closeReply(c net.Conn, p []byte) {
	if len(p) == 1 {
		s.fail(c, 1002)
		return
	}
	if len(p) >= 2 {
		code := binary.BigEndian.Uint16(p)
		if code < 1000 || code >= 1004 && code <= 1006 || code >= 1015 && code < 3000 || code >= 5000 {
			s.fail(c, 1002)
			return
		}
		if !utf8.Valid(p[2:]) {
			s.fail(c, 1007)
			return
		}
		p = p[:2]
	}
	s.write(c, ws.OpClose, p)
	if s.f.keepOpen { // until the runner gives up, longer than its retry waits
		c.SetReadDeadline(time.Now().Add(2 * conformance.RetryStepTimeout))
		io.Copy(io.Discard, c)
	}
}

// TestRunnerCatchesBrokenServers runs chosen cases against servers with
// one flaw each and checks the verdicts the runner gives: the flawed
// behaviour must be FAILED or NON-STRICT, the rest OK.
func TestRunnerCatchesBrokenServers(t *testing.T) {
	t.Parallel()
	all := conformance.Cases()
	// Cases every flawed server here still passes.
	sound := []string{"1.1.1", "1.2.6", "5.3", "7.1.1", "7.9.1"}
	tests := []struct {
		name string
		f    flaws
		want map[string]conformance.Verdict
	}{
		{"no UTF-8 validation", flaws{noUTF8: true}, map[string]conformance.Verdict{
			"6.3.1": conformance.Failed, "6.4.1": conformance.Failed, "6.12.1": conformance.Failed,
			"6.20.1f": conformance.Failed, "6.2.1": conformance.OK, "6.22.1": conformance.OK}},
		{"accepts RSV bits and reserved opcodes", flaws{acceptRSV: true}, map[string]conformance.Verdict{
			"3.1": conformance.Failed, "3.2": conformance.Failed, "3.7": conformance.Failed,
			"4.1.1": conformance.Failed, "4.2.3": conformance.Failed, "2.1": conformance.OK}},
		{"validates UTF-8 at message end", flaws{lateUTF8: true}, map[string]conformance.Verdict{
			"6.3.1": conformance.NonStrict, "6.3.2": conformance.NonStrict, "6.4.1": conformance.NonStrict,
			"6.4.3": conformance.NonStrict, "6.20.1": conformance.NonStrict, "6.20.1f": conformance.NonStrict,
			"6.12.1": conformance.OK, "6.14.1": conformance.OK, "6.2.3": conformance.OK}},
		{"never answers pings", flaws{pingSilent: true}, map[string]conformance.Verdict{
			"2.1": conformance.Failed, "2.10": conformance.Failed, "5.6": conformance.Failed, "2.7": conformance.OK}},
		{"answers pings with the wrong payload", flaws{pingWrong: true}, map[string]conformance.Verdict{
			"2.2": conformance.Failed, "2.6": conformance.Failed, "5.19": conformance.Failed, "2.8": conformance.OK}},
		{"keeps TCP open after the close handshake", flaws{keepOpen: true}, map[string]conformance.Verdict{
			"7.3.3": conformance.Failed, "7.7.1": conformance.Failed}},
		{"masks its close frames", flaws{maskedClose: true}, map[string]conformance.Verdict{
			"7.3.3": conformance.Failed, "6.3.1": conformance.Failed, "3.1": conformance.Failed}},
		{"closes invalid UTF-8 with 1002", flaws{utf8Code: 1002}, map[string]conformance.Verdict{
			"6.3.1": conformance.Failed, "6.12.1": conformance.Failed, "6.5.1": conformance.OK}},
	}
	// The flawed servers are judged concurrently: their cases mostly
	// wait for deadlines, and parallel subtests are capped at GOMAXPROCS.
	results := make([][]conformance.Result, len(tests))
	var wg sync.WaitGroup
	for i, tt := range tests {
		if !tt.f.keepOpen && !tt.f.maskedClose {
			for _, id := range sound {
				tt.want[id] = conformance.OK
			}
		}
		startFlawed(t, &wg, all, tt.want, conformance.Default, startBroken(t, tt.f), &results[i])
	}
	wg.Wait()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkVerdicts(t, results[i], tt.want)
		})
	}
}

// TestRunnerReportsRetries checks that a case run twice is never shown
// as a plain OK: a case that fails its first run and passes its second
// is "OK after retry", counted in its own column of the summary and
// listed with its first run's failure; a case that fails both runs is
// FAILED and listed with both.
func TestRunnerReportsRetries(t *testing.T) {
	t.Parallel()
	all := conformance.Cases()
	tests := []struct {
		name    string
		f       flaws
		id      string              // the case the flaw hits
		first   string              // its first run's verdict
		verdict conformance.Verdict // its second run's
		outcome string              // as summaries show it
		row     string              // its group's row in the Markdown summary
	}{
		{"drops its first ping unanswered", flaws{dropOnce: true}, "2.1", "FAILED", conformance.OK,
			"OK after retry", "| 2 | Ping/Pong | 1 | 0 | 1 | 0 | 0 |"},
		{"its first 1007 comes late", flaws{slowOnce: true}, "6.12.1", "NON-STRICT", conformance.OK,
			"OK after retry", "| 6 | UTF-8 handling | 1 | 0 | 1 | 0 | 0 |"},
		{"never answers pings", flaws{pingSilent: true}, "2.1", "FAILED", conformance.Failed,
			"FAILED", "| 2 | Ping/Pong | 1 | 0 | 0 | 0 | 1 |"},
	}
	results := make([][]conformance.Result, len(tests))
	var wg sync.WaitGroup
	for i, tt := range tests {
		want := map[string]conformance.Verdict{tt.id: tt.verdict, "1.1.1": conformance.OK}
		startFlawed(t, &wg, all, want, conformance.Default, startBroken(t, tt.f), &results[i])
	}
	wg.Wait()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkVerdicts(t, results[i], map[string]conformance.Verdict{tt.id: tt.verdict, "1.1.1": conformance.OK})
			md := conformance.Markdown(results[i])
			for _, res := range results[i] {
				if res.Case.ID != tt.id {
					continue
				}
				if !res.Retried() || !strings.HasPrefix(res.FirstTry, tt.first+": ") {
					t.Errorf("case %s: first run %q, want %s and a second run", tt.id, res.FirstTry, tt.first)
				}
				if res.Outcome() != tt.outcome {
					t.Errorf("case %s: outcome %q, want %q", tt.id, res.Outcome(), tt.outcome)
				}
				if !strings.Contains(md, "| "+tt.id+" | "+tt.first+": ") || !strings.Contains(md, " | "+tt.outcome) {
					t.Errorf("the summary does not list case %s with its first run (%s) and its outcome (%s):\n%s",
						tt.id, tt.first, tt.outcome, md)
				}
			}
			if !strings.Contains(md, tt.row+"\n") {
				t.Errorf("the summary has no group row %q:\n%s", tt.row, md)
			}
		})
	}
}

// TestFailAt checks the fail-fast positions against utf8.Valid and on
// known sequences.
func TestFailAt(t *testing.T) {
	for _, tc := range []struct {
		in         string
		at         int
		incomplete bool
	}{
		{"", -1, false}, {"abc", -1, false}, {"\xce\xba", -1, false}, {"\xce", -1, true},
		{"\xed\xa0\x80", 1, false}, {"\xf4\x90\x80\x80", 1, false}, {"\xc0\xaf", 0, false},
		{"\xe0\x80\xaf", 1, false}, {"\xf0\x8f\xbf\xbf", 1, false}, {"ab\x80", 2, false},
		{"\xef\xbf", -1, true}, {"\xf4\x8f\xbf\xbf", -1, false}, {"\xdf ", 1, false},
	} {
		at, inc := conformance.FailAt([]byte(tc.in))
		if at != tc.at || inc != tc.incomplete {
			t.Errorf("FailAt(%x) = %d, %v; want %d, %v", tc.in, at, inc, tc.at, tc.incomplete)
		}
	}
	// Every two-byte and three-byte string: FailAt agrees with utf8.Valid.
	var b [3]byte
	for i := range 1 << 24 / 64 {
		v := i * 64
		b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v)
		for _, p := range [][]byte{b[:2], b[:]} {
			at, inc := conformance.FailAt(p)
			if (at < 0 && !inc) != utf8.Valid(p) {
				t.Fatalf("FailAt(%x) = %d, %v but utf8.Valid = %v", p, at, inc, utf8.Valid(p))
			}
		}
	}
}
