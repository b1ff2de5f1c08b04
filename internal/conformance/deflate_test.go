package conformance_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/wsroom/wsroom/internal/conformance"
)

// pmdFlaws selects what a deflate server gets wrong; the zero value is
// the reference server, which must pass groups 12 and 13.
type pmdFlaws struct {
	rsv1OnContinuation bool // sets RSV1 on every frame of its replies
	noLimit            bool // inflates without a limit (accepts bombs, answers "accepted")
	ignoreRSV1Cont     bool // accepts RSV1 on continuation frames
	answersOwnBits     bool // answers server_max_window_bits=15 whatever was offered
	keepsContext       bool // answers server_no_context_takeover but keeps its context
	acceptsInvalid     bool // accepts offers whose parameters it cannot parse
	inflatesAtEnd      bool // buffers a compressed message and inflates it at FIN
	ignoresWindow      bool // compresses with a 32 KiB window whatever it answered
}

// pmdServer is an echo server with permessage-deflate, over gobwas/ws:
// wsflate.Parameters parses offers and formats the answer, and
// wsflate.Reader inflates messages as their frames arrive, with
// ReadLimit bounding the inflated size. Negotiation is its own, not
// wsflate.Extension's, which answers its configured parameters rather
// than what fits the offer (server_max_window_bits=15 to an offer of 9,
// a violation of RFC 7692 section 7.1.2.1) and declines any offer that
// names server_max_window_bits below its own. The writer is
// compress/flate directly: wsflate.Writer keeps no context across
// messages. Replies below 32 bytes go out uncompressed, larger ones
// compressed in 4 KiB frames, so that the runner sees both.
type pmdServer struct {
	f pmdFlaws
}

// pmdReadLimit is the reference server's limit on inflated messages.
const pmdReadLimit = 1 << 20

func startPMD(t *testing.T, f pmdFlaws) conformance.Target {
	s := &pmdServer{f: f}
	return serveTCP(t, s.serve)
}

// negotiation answers the first acceptable permessage-deflate offer.
type negotiation struct {
	f        pmdFlaws
	accepted bool
	answer   wsflate.Parameters
}

func (n *negotiation) negotiate(opt httphead.Option) (httphead.Option, error) {
	if string(opt.Name) != wsflate.ExtensionName || n.accepted {
		return httphead.Option{}, nil
	}
	var p wsflate.Parameters
	err := p.Parse(opt)
	if err == nil {
		err = strictValues(opt)
	}
	if err != nil && !n.f.acceptsInvalid {
		return httphead.Option{}, nil // decline (RFC 7692 section 5), not a failed handshake
	}
	a := wsflate.Parameters{ServerNoContextTakeover: p.ServerNoContextTakeover, ClientNoContextTakeover: p.ClientNoContextTakeover}
	if p.ServerMaxWindowBits.Defined() {
		a.ServerMaxWindowBits = p.ServerMaxWindowBits
		if n.f.answersOwnBits {
			a.ServerMaxWindowBits = 15
		}
	}
	if p.ClientMaxWindowBits >= 8 {
		a.ClientMaxWindowBits = p.ClientMaxWindowBits
	}
	if n.f.keepsContext {
		a.ServerNoContextTakeover = true
	}
	n.accepted, n.answer = true, a
	return a.Option(), nil
}

// strictValues adds what wsflate's parser lets through: a duplicate
// client_max_window_bits without a value, and window bits with leading
// zeros.
func strictValues(opt httphead.Option) error {
	seen := map[string]bool{}
	var err error
	opt.Parameters.ForEach(func(k, v []byte) bool {
		if seen[string(k)] || len(v) > 1 && v[0] == '0' {
			err = errors.New("invalid parameter " + string(k))
			return false
		}
		seen[string(k)] = true
		return true
	})
	return err
}

// closeCode is a reason to fail the connection.
type closeCode uint16

func (c closeCode) Error() string { return "close" }

// errClosed ends a connection after the close handshake.
var errClosed = errors.New("closed")

type pmdConn struct {
	f   pmdFlaws
	c   net.Conn
	br  *bufio.Reader
	neg negotiation
	// current message frame
	h    ws.Header
	left int64
	pos  int
	size int // compressed bytes read of the message
	// compression state
	hist []byte // client's context (inflate dictionary)
	w    *flate.Writer
	wbuf bytes.Buffer
}

func (s *pmdServer) serve(c net.Conn) {
	pc := &pmdConn{f: s.f, c: c, neg: negotiation{f: s.f}}
	u := ws.Upgrader{Negotiate: pc.neg.negotiate}
	if _, err := u.Upgrade(c); err != nil {
		return
	}
	pc.br = bufio.NewReader(c)
	for {
		err := pc.message()
		var code closeCode
		switch {
		case err == nil:
			continue
		case errors.As(err, &code):
			pc.write(ws.OpClose, false, binary.BigEndian.AppendUint16(nil, uint16(code)))
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, c)
		}
		return
	}
}

// header reads frame headers until one of a data frame, answering
// control frames; inMsg says whether a continuation is expected.
func (pc *pmdConn) header(inMsg bool) (ws.Header, error) {
	for {
		h, err := ws.ReadHeader(pc.br)
		if err != nil {
			return h, err
		}
		r1, r2, r3 := ws.RsvBits(h.Rsv)
		cont := h.OpCode == ws.OpContinuation
		switch {
		case r2 || r3 || r1 && (!pc.neg.accepted || h.OpCode.IsControl() || cont && !pc.f.ignoreRSV1Cont):
			return h, closeCode(1002)
		case h.OpCode.IsControl() && (!h.Fin || h.Length > 125):
			return h, closeCode(1002)
		case h.Length > pmdReadLimit && !pc.f.noLimit:
			return h, closeCode(1009)
		}
		if !h.OpCode.IsControl() {
			if h.OpCode > ws.OpBinary || inMsg != cont {
				return h, closeCode(1002)
			}
			return h, nil
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(pc.br, p); err != nil {
			return h, err
		}
		ws.Cipher(p, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPing:
			pc.write(ws.OpPong, false, p)
		case ws.OpClose:
			if len(p) == 1 {
				return h, closeCode(1002)
			}
			pc.write(ws.OpClose, false, p[:min(2, len(p))])
			return h, errClosed
		case ws.OpPong:
		default:
			return h, closeCode(1002)
		}
	}
}

// Read reads the current message's payload across its frames.
func (pc *pmdConn) Read(p []byte) (int, error) {
	for pc.left == 0 {
		if pc.h.Fin {
			return 0, io.EOF
		}
		h, err := pc.header(true)
		if err != nil {
			return 0, err
		}
		pc.h, pc.left, pc.pos = h, h.Length, 0
	}
	if pc.size >= pmdReadLimit && !pc.f.noLimit {
		return 0, closeCode(1009) // the compressed message alone is too big
	}
	n, err := pc.br.Read(p[:min(int64(len(p)), pc.left)])
	ws.Cipher(p[:n], pc.h.Mask, pc.pos)
	pc.left -= int64(n)
	pc.pos += n
	pc.size += n
	return n, err
}

// message reads, checks and echoes one message.
func (pc *pmdConn) message() error {
	h, err := pc.header(false)
	if err != nil {
		return err
	}
	pc.h, pc.left, pc.pos, pc.size = h, h.Length, 0, 0
	op := h.OpCode
	compressed, _, _ := ws.RsvBits(h.Rsv)
	var src io.Reader = pc
	if compressed {
		if pc.f.inflatesAtEnd {
			buf, err := io.ReadAll(src)
			if err != nil {
				return err
			}
			src = bytes.NewReader(buf)
		}
		src = wsflate.NewReader(src, func(r io.Reader) wsflate.Decompressor {
			return flate.NewReaderDict(r, pc.hist)
		})
	}
	if !pc.f.noLimit {
		src = io.LimitReader(src, pmdReadLimit+1)
	}
	data, err := io.ReadAll(src)
	var corrupt flate.CorruptInputError
	switch {
	case errors.As(err, &corrupt):
		return closeCode(1007)
	case err != nil:
		return err
	case len(data) > pmdReadLimit && !pc.f.noLimit:
		return closeCode(1009)
	}
	if _, err := io.Copy(io.Discard, pc); err != nil { // what the inflater left
		return err
	}
	if compressed && !pc.neg.answer.ClientNoContextTakeover {
		pc.hist = append(pc.hist, data...)
		pc.hist = pc.hist[max(0, len(pc.hist)-32<<10):]
	}
	if op == ws.OpText && !utf8.Valid(data) {
		return closeCode(1007)
	}
	if len(data) > pmdReadLimit { // noLimit: spare the echo of a bomb
		data = []byte("accepted")
	}
	pc.echo(op, data)
	return nil
}

// echo sends data back, compressed unless it is small.
func (pc *pmdConn) echo(op ws.OpCode, data []byte) {
	if !pc.neg.accepted || len(data) < 32 {
		pc.write(op, false, data)
		return
	}
	a := pc.neg.answer
	pc.wbuf.Reset()
	switch {
	case pc.w == nil:
		level := flate.BestSpeed
		if a.ServerMaxWindowBits.Defined() && a.ServerMaxWindowBits < 15 && !pc.f.answersOwnBits && !pc.f.ignoresWindow {
			level = flate.HuffmanOnly // no reference reaches back beyond any window
		}
		pc.w, _ = flate.NewWriter(&pc.wbuf, level)
	case a.ServerNoContextTakeover && !pc.f.keepsContext:
		pc.w.Reset(&pc.wbuf)
	}
	pc.w.Write(data)
	pc.w.Flush()
	c := bytes.TrimSuffix(pc.wbuf.Bytes(), []byte{0, 0, 0xff, 0xff})
	for first := true; first || len(c) > 0; first = false {
		n := min(len(c), 4<<10)
		h := ws.Header{Fin: n == len(c), OpCode: ws.OpContinuation, Length: int64(n), Rsv: ws.Rsv(pc.f.rsv1OnContinuation, false, false)}
		if first {
			h.OpCode, h.Rsv = op, ws.Rsv(true, false, false)
		}
		pc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		ws.WriteHeader(pc.c, h)
		pc.c.Write(c[:n])
		c = c[n:]
	}
}

func (pc *pmdConn) write(op ws.OpCode, rsv1 bool, p []byte) {
	pc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	ws.WriteHeader(pc.c, ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Rsv: ws.Rsv(rsv1, false, false)})
	pc.c.Write(p)
}

// TestDeflateReference runs groups 12 and 13 against the reference
// server: every case must be OK.
func TestDeflateReference(t *testing.T) {
	t.Parallel()
	r := conformance.Runner{Targets: map[conformance.Endpoint]conformance.Target{conformance.Deflate: startPMD(t, pmdFlaws{})}}
	start := time.Now()
	results := r.Run(conformance.DeflateCases())
	t.Logf("reference deflate server: %d cases in %v\n%s", len(results), time.Since(start).Round(time.Millisecond), conformance.Markdown(results))
	logRetries(t, results)
	for _, res := range results {
		if res.Verdict != conformance.OK {
			t.Errorf("case %s (%s): %s: %s", res.Case.ID, res.Case.Description, res.Verdict, res.Reason)
		}
	}
}

// TestDeflateCatchesBrokenServers runs chosen cases against deflate
// servers with one flaw each: the flaw must be FAILED or NON-STRICT,
// the control cases OK.
func TestDeflateCatchesBrokenServers(t *testing.T) {
	t.Parallel()
	all := conformance.DeflateCases()
	F, NS, OK := conformance.Failed, conformance.NonStrict, conformance.OK
	tests := []struct {
		name string
		f    pmdFlaws
		want map[string]conformance.Verdict
	}{
		{"RSV1 on its continuation frames", pmdFlaws{rsv1OnContinuation: true},
			map[string]conformance.Verdict{"12.2.10": F, "12.1.1": OK}},
		{"accepts bombs", pmdFlaws{noLimit: true},
			map[string]conformance.Verdict{"13.14.6": F, "13.14.7": F, "12.1.5": OK}},
		{"accepts RSV1 on continuation frames", pmdFlaws{ignoreRSV1Cont: true},
			map[string]conformance.Verdict{"13.14.1": F, "13.14.2": OK}},
		{"answers server_max_window_bits=15 to 9", pmdFlaws{answersOwnBits: true},
			map[string]conformance.Verdict{"13.3.1": F, "13.5.1": F, "13.4.1": OK}},
		{"keeps its context after server_no_context_takeover", pmdFlaws{keepsContext: true},
			map[string]conformance.Verdict{"13.2.5": F, "12.1.1": OK}},
		{"accepts invalid offers", pmdFlaws{acceptsInvalid: true},
			map[string]conformance.Verdict{"13.13.1": F, "13.13.7": F, "13.13.10": F, "13.13.11": OK}},
		{"ignores the window it answered", pmdFlaws{ignoresWindow: true},
			map[string]conformance.Verdict{"13.3.4": F, "13.11.2": F, "13.4.4": OK}},
		{"inflates at the end of the message", pmdFlaws{inflatesAtEnd: true},
			map[string]conformance.Verdict{"13.14.7": NS, "13.14.6": OK}},
	}
	results := make([][]conformance.Result, len(tests))
	var wg sync.WaitGroup
	for i, tt := range tests {
		startFlawed(t, &wg, all, tt.want, conformance.Deflate, startPMD(t, tt.f), &results[i])
	}
	wg.Wait()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkVerdicts(t, results[i], tt.want) })
	}
}
