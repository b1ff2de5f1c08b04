package conformance

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// This file is the runner's own permessage-deflate (RFC 7692): parsing
// and judging Sec-WebSocket-Extensions, and the client's compressor and
// inflater. Like the rest of the runner it shares no code with wsroom.

const pmdName = "permessage-deflate"

// extParam is one extension parameter; HasValue tells "p" from "p=".
type extParam struct {
	Name, Value string
	HasValue    bool
}

// extElem is one element of a Sec-WebSocket-Extensions list.
type extElem struct {
	Name   string
	Params []extParam
}

// parseExtensions parses a Sec-WebSocket-Extensions value (RFC 6455
// section 9.1: extension *( ";" param [ "=" (token | quoted-string) ] ),
// comma-separated, empty elements allowed).
func parseExtensions(h string) ([]extElem, error) {
	var out []extElem
	p := &hdrScanner{s: h}
	for {
		p.ows()
		if p.eof() {
			return out, nil
		}
		if p.peek() == ',' {
			p.i++
			continue
		}
		name := p.token()
		if name == "" {
			return nil, fmt.Errorf("extension name expected at %d in %q", p.i, h)
		}
		e := extElem{Name: name}
		for {
			p.ows()
			if p.eof() || p.peek() == ',' {
				break
			}
			if p.peek() != ';' {
				return nil, fmt.Errorf("';' or ',' expected at %d in %q", p.i, h)
			}
			p.i++
			p.ows()
			prm := extParam{Name: p.token()}
			if prm.Name == "" {
				return nil, fmt.Errorf("parameter name expected at %d in %q", p.i, h)
			}
			p.ows()
			if !p.eof() && p.peek() == '=' {
				p.i++
				p.ows()
				v, err := p.value()
				if err != nil {
					return nil, fmt.Errorf("%v in %q", err, h)
				}
				prm.Value, prm.HasValue = v, true
			}
			e.Params = append(e.Params, prm)
		}
		out = append(out, e)
	}
}

type hdrScanner struct {
	s string
	i int
}

func (p *hdrScanner) eof() bool  { return p.i >= len(p.s) }
func (p *hdrScanner) peek() byte { return p.s[p.i] }

func (p *hdrScanner) ows() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}

// token reads an RFC 7230 token (possibly empty).
func (p *hdrScanner) token() string {
	start := p.i
	for !p.eof() && isTchar(p.peek()) {
		p.i++
	}
	return p.s[start:p.i]
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// value reads a token or a quoted-string (unescaped).
func (p *hdrScanner) value() (string, error) {
	if p.eof() || p.peek() != '"' {
		v := p.token()
		if v == "" {
			return "", fmt.Errorf("parameter value expected at %d", p.i)
		}
		return v, nil
	}
	p.i++
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		p.i++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.eof() {
				return "", errors.New("unterminated quoted-string")
			}
			c = p.peek()
			p.i++
		}
		b.WriteByte(c)
	}
	return "", errors.New("unterminated quoted-string")
}

// pmdParams are the checked parameters of one permessage-deflate
// element. Window bits are 0 when absent; ClientBits is -1 for
// client_max_window_bits without a value (allowed in offers only).
type pmdParams struct {
	ServerNoTakeover, ClientNoTakeover bool
	ServerBits, ClientBits             int
}

// checkPMD validates a permessage-deflate element as an offer or, with
// answer set, as a server's answer (RFC 7692 section 7.1): only the four
// parameters, none twice, no value on the *_no_context_takeover ones,
// window bits 8–15 written without leading zeros, server_max_window_bits
// always with a value, and client_max_window_bits with a value in an
// answer.
func checkPMD(e extElem, answer bool) (pmdParams, error) {
	var p pmdParams
	seen := map[string]bool{}
	for _, prm := range e.Params {
		if seen[prm.Name] {
			return p, fmt.Errorf("duplicate parameter %s", prm.Name)
		}
		seen[prm.Name] = true
		switch prm.Name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if prm.HasValue {
				return p, fmt.Errorf("%s has a value (%q)", prm.Name, prm.Value)
			}
			if prm.Name[0] == 's' {
				p.ServerNoTakeover = true
			} else {
				p.ClientNoTakeover = true
			}
		case "server_max_window_bits", "client_max_window_bits":
			bits := -1
			if prm.HasValue {
				bits = windowBits(prm.Value)
				if bits == 0 {
					return p, fmt.Errorf("%s=%q is not 8–15", prm.Name, prm.Value)
				}
			} else if answer || prm.Name[0] == 's' {
				return p, fmt.Errorf("%s without a value", prm.Name)
			}
			if prm.Name[0] == 's' {
				p.ServerBits = bits
			} else {
				p.ClientBits = bits
			}
		default:
			return p, fmt.Errorf("unknown parameter %s", prm.Name)
		}
	}
	return p, nil
}

// windowBits returns v as window bits 8–15, or 0 if it is anything else
// (RFC 7692 section 7.1.2: 1*DIGIT without leading zeros, 8 to 15).
func windowBits(v string) int {
	switch v {
	case "8", "9":
		return int(v[0] - '0')
	case "10", "11", "12", "13", "14", "15":
		return 10 + int(v[1]-'0')
	}
	return 0
}

// matchAnswer reports why ans cannot be the answer to offer, or nil.
func matchAnswer(offer, ans pmdParams) error {
	switch {
	case offer.ServerBits > 0 && ans.ServerBits == 0:
		return fmt.Errorf("server_max_window_bits=%d offered but not answered", offer.ServerBits)
	case offer.ServerBits > 0 && ans.ServerBits > offer.ServerBits:
		return fmt.Errorf("server_max_window_bits=%d answered to an offer of %d", ans.ServerBits, offer.ServerBits)
	case offer.ServerNoTakeover && !ans.ServerNoTakeover:
		return errors.New("server_no_context_takeover offered but not answered")
	case ans.ClientBits != 0 && offer.ClientBits == 0:
		return errors.New("client_max_window_bits answered but not offered")
	case offer.ClientBits > 0 && ans.ClientBits > offer.ClientBits:
		return fmt.Errorf("client_max_window_bits=%d answered to an offer of %d", ans.ClientBits, offer.ClientBits)
	}
	return nil
}

// pmdAnswer is the outcome of a permessage-deflate negotiation.
type pmdAnswer struct {
	Accepted bool
	Answer   pmdParams // the server's parameters
	Offer    pmdParams // the first valid offer the answer fits
}

// judgeAnswer checks the server's Sec-WebSocket-Extensions against the
// offers the runner sent: the server may decline (no element), or answer
// one permessage-deflate element that fits one of the valid offers. An
// invalid offer can never be accepted.
func judgeAnswer(offers string, resp *http.Response) (pmdAnswer, error) {
	var res pmdAnswer
	off, err := parseExtensions(offers)
	if err != nil {
		return res, fmt.Errorf("the runner's own offer: %v", err)
	}
	hdr := strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ", ")
	elems, err := parseExtensions(hdr)
	if err != nil {
		return res, fmt.Errorf("Sec-WebSocket-Extensions answer: %v", err)
	}
	var ansElem *extElem
	for i, e := range elems {
		if !strings.EqualFold(e.Name, pmdName) {
			return res, fmt.Errorf("answer %q names extension %q, which was not offered", hdr, e.Name)
		}
		if ansElem != nil {
			return res, fmt.Errorf("answer %q accepts permessage-deflate twice", hdr)
		}
		ansElem = &elems[i]
	}
	if ansElem == nil {
		return res, nil
	}
	ans, err := checkPMD(*ansElem, true)
	if err != nil {
		return res, fmt.Errorf("answer %q: %v", hdr, err)
	}
	var why []string
	for _, o := range off {
		op, err := checkPMD(o, false)
		if !strings.EqualFold(o.Name, pmdName) || err != nil {
			continue // an invalid offer must be declined
		}
		if err := matchAnswer(op, ans); err != nil {
			why = append(why, err.Error())
			continue
		}
		return pmdAnswer{Accepted: true, Answer: ans, Offer: op}, nil
	}
	if len(why) == 0 {
		return res, fmt.Errorf("answer %q accepts an offer that is not valid (%q); the server must decline it", hdr, offers)
	}
	return res, fmt.Errorf("answer %q fits none of the offers: %s", hdr, strings.Join(why, "; "))
}

// pmdState is a session's negotiated permessage-deflate: the client's
// compressor and its inflater of server messages.
type pmdState struct {
	neg pmdAnswer
	def deflater
	inf inflater
}

func newPMD(neg pmdAnswer) *pmdState {
	bits := 15
	if neg.Answer.ClientBits > 0 {
		bits = neg.Answer.ClientBits
	} else if neg.Offer.ClientBits > 0 {
		bits = neg.Offer.ClientBits // our own hint binds us too
	}
	return &pmdState{
		neg: neg,
		def: deflater{
			takeover: !neg.Answer.ClientNoTakeover && !neg.Offer.ClientNoTakeover,
			smallWin: bits < 15,
		},
		inf: inflater{takeover: !neg.Answer.ServerNoTakeover},
	}
}

// deflater compresses client messages. With a window below 15 bits it
// uses Huffman coding only, which never refers back (compress/flate
// always uses a 32 KiB window); otherwise level 1 with context takeover
// across messages unless either side asked for none.
type deflater struct {
	takeover, smallWin bool
	w                  *flate.Writer
	buf                bytes.Buffer
}

var syncTail = []byte{0, 0, 0xff, 0xff}

// compress returns p compressed as one message (RFC 7692 section 7.2.1:
// a sync flush, without its trailing 00 00 ff ff).
func (d *deflater) compress(p []byte) []byte {
	d.buf.Reset()
	switch {
	case d.w == nil:
		level := flate.BestSpeed
		if d.smallWin {
			level = flate.HuffmanOnly
		}
		d.w, _ = flate.NewWriter(&d.buf, level)
	case !d.takeover:
		d.w.Reset(&d.buf)
	}
	d.w.Write(p)
	d.w.Flush()
	return bytes.Clone(bytes.TrimSuffix(d.buf.Bytes(), syncTail))
}

// inflater decompresses server messages, keeping the last 32 KiB of
// inflated data as the next message's dictionary when the server may
// use context takeover (a server that answered server_no_context_takeover
// and still refers back fails: the reference has no history).
type inflater struct {
	takeover bool
	hist     []byte
	r        io.ReadCloser
}

// inflateTail ends a message's deflate data: the stripped sync flush,
// then an empty final stored block so that the reader stops cleanly.
var inflateTail = []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

// maxInflate bounds an inflated server message.
const maxInflate = 64 << 20

func (in *inflater) inflate(p []byte) ([]byte, error) {
	src := io.MultiReader(bytes.NewReader(p), bytes.NewReader(inflateTail))
	var dict []byte
	if in.takeover {
		dict = in.hist
	}
	if in.r == nil {
		in.r = flate.NewReaderDict(src, dict)
	} else if err := in.r.(flate.Resetter).Reset(src, dict); err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(in.r, maxInflate+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("inflating a %d-byte compressed message: %v", len(p), err)
	case len(out) > maxInflate:
		return nil, fmt.Errorf("compressed message inflates beyond %d bytes", maxInflate)
	}
	if in.takeover {
		in.hist = append(in.hist, out...)
		if n := len(in.hist) - 32<<10; n > 0 {
			in.hist = append(in.hist[:0], in.hist[n:]...)
		}
	}
	return out, nil
}

// ReadInflated is ReadMessage that inflates a compressed message (RSV1)
// with the session's negotiated permessage-deflate; Rsv is then 0.
func (s *Session) ReadInflated(d time.Duration) (Message, error) {
	m, err := s.ReadMessage(d)
	if err != nil || m.Rsv&RSV1 == 0 {
		return m, err
	}
	if s.pmd == nil {
		return m, errors.New("compressed message without permessage-deflate")
	}
	compressed := m.Data
	m.Data, err = s.pmd.inf.inflate(compressed)
	m.Rsv = 0
	if bits := s.pmd.neg.Answer.ServerBits; err == nil && bits > 0 && bits < 15 {
		d, werr := maxBackRef(compressed)
		switch {
		case werr != nil:
			err = fmt.Errorf("walking the deflate data: %v", werr)
		case d > 1<<bits:
			err = fmt.Errorf("server refers back %d bytes, beyond its server_max_window_bits=%d", d, bits)
		}
	}
	return m, err
}
