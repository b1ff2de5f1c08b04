package conformance

import (
	"bytes"
	"fmt"
)

// Groups 12 and 13: permessage-deflate (RFC 7692), against the Deflate
// endpoint. Every case starts by judging the server's answer to its
// offer (NegotiateDeflate), then echoes messages that the runner
// compresses (with context takeover unless the answer forbids it) and
// fragments after compression, as Autobahn does; the server may answer
// compressed or not. Autobahn sends 1000 messages per case; the runner
// sends DeflateCount(size), so that the groups run in seconds.

// DefaultOffer is Autobahn's and browsers' usual offer.
const DefaultOffer = "permessage-deflate; client_max_window_bits"

// DeflateCount is how many messages of size bytes a group 12 or 13 case
// sends: 100, fewer for large messages so that a case sends about 256
// KiB, and at least 2 (Autobahn: 1000). Two 128 KiB messages already
// refer across messages when context takeover is on (the window is 32
// KiB), and the race detector makes compress/flate slow.
func DeflateCount(size int) int { return min(100, max(2, (256<<10)/size)) }

// deflateSizes are Autobahn's 18 (message size, frame size) pairs; frame
// size 0 is one frame per message. Frames cut the compressed payload.
var deflateSizes = []struct{ size, frag int }{
	{16, 0}, {64, 0}, {256, 0}, {1 << 10, 0}, {4 << 10, 0}, {8 << 10, 0}, {16 << 10, 0}, {32 << 10, 0}, {64 << 10, 0}, {128 << 10, 0},
	{8 << 10, 256}, {16 << 10, 256}, {32 << 10, 256}, {64 << 10, 256}, {128 << 10, 256}, {128 << 10, 1 << 10}, {128 << 10, 4 << 10}, {128 << 10, 32 << 10},
}

// extraSizes picks six of deflateSizes for the extra offers of group 13.
var extraSizes = []int{0, 3, 6, 9, 14, 17}

// DeflateCases returns groups 12 and 13, sorted by ID. They need the
// Deflate endpoint; Cases does not include them.
func DeflateCases() []Case {
	var cs []Case
	for j, ds := range datasets() {
		for i, sz := range deflateSizes {
			cs = append(cs, deflateCase(fmt.Sprintf("12.%d.%d", j+1, i+1), DefaultOffer, false,
				echoDeflate(ds, sz.size, DeflateCount(sz.size), sz.frag)))
		}
	}
	offers := []struct {
		offer      string
		mayDecline bool // a server that cannot keep a small window declines
		extra      bool
	}{
		{DefaultOffer, false, false},
		{DefaultOffer + "; server_no_context_takeover", false, false},
		{DefaultOffer + "; server_max_window_bits=9", true, false},
		{DefaultOffer + "; server_max_window_bits=15", false, false},
		{DefaultOffer + "; server_no_context_takeover; server_max_window_bits=9", true, false},
		{DefaultOffer + "; server_no_context_takeover; server_max_window_bits=15", false, false},
		{DefaultOffer + "; server_no_context_takeover; server_max_window_bits=9, " +
			DefaultOffer + "; server_no_context_takeover, " + DefaultOffer, false, false},
		{DefaultOffer + "; client_no_context_takeover", false, true},
		{"permessage-deflate; client_max_window_bits=9", false, true},
		{"permessage-deflate; client_max_window_bits=15", false, true},
		{"permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits=9; server_max_window_bits=9", true, true},
		{"permessage-deflate; server_max_window_bits=8, " + DefaultOffer, false, true},
	}
	json := datasets()[0]
	for j, o := range offers {
		idx := extraSizes
		if !o.extra {
			idx = nil
			for i := range deflateSizes {
				idx = append(idx, i)
			}
		}
		for k, i := range idx {
			sz := deflateSizes[i]
			c := deflateCase(fmt.Sprintf("13.%d.%d", j+1, k+1), o.offer, o.mayDecline,
				echoDeflate(json, sz.size, DeflateCount(sz.size), sz.frag))
			c.Extra = o.extra
			cs = append(cs, c)
		}
	}
	cs = append(cs, invalidOfferCases()...)
	cs = append(cs, deflateFrameCases()...)
	SortByID(cs)
	return cs
}

// deflateCase builds a Deflate-endpoint case that offers offer and
// judges the answer first.
func deflateCase(id, offer string, mayDecline bool, steps ...Step) Case {
	c := newCase(id, "", append([]Step{NegotiateDeflate(offer, mayDecline)}, steps...)...)
	c.Endpoint, c.Extensions = Deflate, offer
	for _, st := range steps {
		if c.Description != "" {
			c.Description += ", "
		}
		c.Description += st.Name
	}
	c.Description += "; offer: " + offer
	return c
}

// NegotiateDeflate judges the server's answer to offer (see judgeAnswer)
// and sets up the session's compression. A decline fails the case
// unless mayDecline; a declined case then runs uncompressed and notes it.
func NegotiateDeflate(offer string, mayDecline bool) Step {
	return NewStep("judge the answer", func(s *Session) error {
		neg, err := judgeAnswer(offer, s.Response())
		if err != nil {
			return err
		}
		if !neg.Accepted {
			if !mayDecline {
				return s.Fail("permessage-deflate not negotiated")
			}
			s.Info("declined (allowed); messages sent uncompressed")
			return nil
		}
		s.pmd, s.AllowRSV1 = newPMD(neg), true
		return nil
	})
}

// compressedFrames returns the compressed message c in frames of frag
// bytes (one frame if frag is 0), RSV1 on the first.
func compressedFrames(op byte, c []byte, frag int) []Frame {
	fs := []Frame{{Fin: true, Op: op, Payload: c}}
	if frag > 0 {
		fs = Fragments(op, c, frag)
	}
	fs[0].Rsv = RSV1
	return fs
}

// echoDeflate sends count messages of size bytes, consecutive slices of
// ds, each after the previous echo arrived: compressed then cut into
// frames of frag bytes if permessage-deflate was negotiated, plain
// otherwise. Each echo, inflated if compressed, must equal the message.
func echoDeflate(ds dataset, size, count, frag int) Step {
	name := fmt.Sprintf("%d %s messages of %s from %s", count, opName(ds.Op), sizeName(size), ds.Name)
	if frag > 0 {
		name += fmt.Sprintf(" in %d-byte frames", frag)
	}
	return NewStep(name, func(s *Session) error {
		at := 0
		for i := range count {
			msg := cyclic(ds.Data, &at, size)
			if err := s.echoOne(ds.Op, msg, frag, s.pmd != nil); err != nil {
				return s.Fail("message %d of %d: %v", i+1, count, err)
			}
		}
		return nil
	})
}

// echoOne sends msg (compressed if compress) and checks its echo.
func (s *Session) echoOne(op byte, msg []byte, frag int, compress bool) error {
	var frames []Frame
	switch {
	case compress:
		frames = compressedFrames(op, s.pmd.def.compress(msg), frag)
	case frag > 0:
		frames = Fragments(op, msg, frag)
	default:
		frames = []Frame{{Fin: true, Op: op, Payload: msg}}
	}
	s.Send(Whole, frames...)
	m, err := s.ReadInflated(s.Timeout(len(msg)))
	if err != nil {
		return err
	}
	if m.Op != op || !bytes.Equal(m.Data, msg) {
		return fmt.Errorf("want %s echo of %d bytes, got %s", opName(op), len(msg), describeMessage(m, msg))
	}
	return nil
}

func sizeName(n int) string {
	if n < 1<<10 {
		return fmt.Sprintf("%d B", n)
	}
	return size(n)
}

// invalidOfferCases (13.13) offer what RFC 7692 section 7 forbids, alone
// or before a valid offer: the server must not accept the invalid offer
// (it declines, or accepts the valid one), and messages still echo.
func invalidOfferCases() []Case {
	invalid := []string{
		"permessage-deflate; server_max_window_bits=7",
		"permessage-deflate; server_max_window_bits=16",
		"permessage-deflate; client_max_window_bits=7",
		"permessage-deflate; client_max_window_bits=16",
		"permessage-deflate; server_max_window_bits",
		"permessage-deflate; server_max_window_bits=010",
		"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
		"permessage-deflate; client_max_window_bits; client_max_window_bits",
		"permessage-deflate; client_no_context_takeover=1",
		"permessage-deflate; x-unknown=1",
		"permessage-deflate; server_max_window_bits=7, " + DefaultOffer,
		"permessage-deflate; x-unknown, permessage-deflate",
		"x-webkit-deflate-frame, " + DefaultOffer,
	}
	json := datasets()[0]
	var cs []Case
	for i, offer := range invalid {
		c := deflateCase(fmt.Sprintf("13.13.%d", i+1), offer, true, echoDeflate(json, 1<<10, 4, 0))
		c.Extra = true
		cs = append(cs, c)
	}
	return cs
}

// deflateFrameCases (13.14) are frame-level edges with the default
// offer: misplaced RSV1, corrupt data, decompression bombs, invalid
// UTF-8 after inflation, and valid but unusual messages.
//
// Corrupt deflate data: RFC 7692 names no close code; RFC 6455's 1007
// ("data within a message that was not consistent with the type of the
// message") fits best and is what Node's ws sends, and some servers
// (Python's websockets) send 1002, so both are accepted, as is a drop.
// A bomb must be refused with 1009 (or a drop): the fragmented bomb
// inflates to 17 MiB before its last 15 frames are sent, and a server
// that waits for the whole message before inflating is NON-STRICT.
func deflateFrameCases() []Case {
	hello := []byte("Hello, compressed world!")
	json := datasets()[0]
	var cs []Case
	add := func(desc string, steps ...Step) {
		c := deflateCase(fmt.Sprintf("13.14.%d", len(cs)+1), DefaultOffer, false, steps...)
		c.Description, c.Extra = desc+"; offer: "+DefaultOffer, true
		cs = append(cs, c)
	}
	add("RSV1 on a continuation frame fails",
		NewStep("send a compressed message with RSV1 on both frames", func(s *Session) error {
			fs := compressedFrames(OpText, s.pmd.def.compress(json.Data[:1<<10]), 64)
			fs[1].Rsv = RSV1
			s.Send(PerFrameSync, fs...)
			return nil
		}), ExpectFail())
	add("ping with RSV1 fails", Send(Whole, Frame{Fin: true, Rsv: RSV1, Op: OpPing, Payload: hello}), ExpectFail())
	add("close with RSV1 fails", Send(Whole, Frame{Fin: true, Rsv: RSV1, Op: OpClose, Payload: CloseBody(1000, "")}), ExpectFail())
	add("corrupt deflate data fails (1007 or 1002)",
		Send(Whole, Frame{Fin: true, Rsv: RSV1, Op: OpText, Payload: []byte{0xff, 0xff, 0xff, 0xff, 0x00}}), ExpectFail(1007, 1002))
	add("compressed text that inflates to invalid UTF-8 closes 1007",
		NewStep("send compressed text with a surrogate", func(s *Session) error {
			s.Send(Whole, compressedFrames(OpText, s.pmd.def.compress([]byte("Hello \xed\xa0\x80 world, again and again")), 0)...)
			return nil
		}), ExpectClose(1007))
	add("a 32 MiB bomb in one 32 KiB frame closes 1009", Send(Whole, bombFrames(32, false)...), ExpectFail(1009))
	add("a 32 MiB bomb in 1 KiB frames closes 1009 before its end", sendBombStrict(), ExpectFail(1009))
	add("uncompressed messages are accepted after negotiation",
		NewStep("echo 3 plain messages", func(s *Session) error {
			for i := range 3 {
				if err := s.echoOne(OpText, json.Data[i<<10:(i+1)<<10], 0, false); err != nil {
					return err
				}
			}
			return nil
		}))
	add("compressed empty message (payload 0x00) echoed",
		Send(Whole, Frame{Fin: true, Rsv: RSV1, Op: OpText, Payload: []byte{0}}), expectInflated(OpText, nil))
	add("compressed message with an empty first frame echoed",
		NewStep("send an empty RSV1 frame, then the compressed message", func(s *Session) error {
			s.Send(Whole, Frame{Rsv: RSV1, Op: OpText}, Frame{Fin: true, Op: OpContinuation, Payload: s.pmd.def.compress(hello)})
			return nil
		}), expectInflated(OpText, hello))
	add("ping between compressed fragments answered, message echoed",
		NewStep("send half, ping, half", func(s *Session) error {
			fs := compressedFrames(OpText, s.pmd.def.compress(json.Data[:4<<10]), 0)
			c := fs[0].Payload
			s.Send(PerFrameSync, Frame{Rsv: RSV1, Op: OpText, Payload: c[:len(c)/2]}, Control(OpPing, hello),
				Frame{Fin: true, Op: OpContinuation, Payload: c[len(c)/2:]})
			return nil
		}), ExpectPong(hello), expectInflated(OpText, json.Data[:4<<10]))
	add("compressed and plain messages alternate (context takeover skips plain ones)",
		NewStep("echo compressed, plain, compressed, plain, compressed", func(s *Session) error {
			for i := range 5 {
				if err := s.echoOne(OpText, json.Data[(i/2)<<12:(i/2+1)<<12], 0, i%2 == 0); err != nil {
					return fmt.Errorf("message %d: %v", i+1, err)
				}
			}
			return nil
		}))
	return cs
}

// expectInflated expects the next message, inflated if compressed, to
// be op with payload p.
func expectInflated(op byte, p []byte) Step {
	return NewStep(fmt.Sprintf("expect %s echo of %d bytes", opName(op), len(p)), func(s *Session) error {
		m, err := s.ReadInflated(s.Timeout(0))
		if err != nil {
			return err
		}
		if m.Op != op || !bytes.Equal(m.Data, p) {
			return s.Fail("want %s echo of %d bytes, got %s", opName(op), len(p), describeMessage(m, p))
		}
		return nil
	})
}

// sendBombStrict sends a 32 MiB bomb in 32 frames of about 1 KiB, each
// inflating to 1 MiB: the first 17 frames (over the Deflate endpoint's
// read limit), then StrictWait for the server to fail the connection,
// and only then the rest (NON-STRICT).
func sendBombStrict() Step {
	return NewStep("send a 32 MiB bomb in 32 frames, pausing after 17", func(s *Session) error {
		fs := bombFrames(32, true)
		s.Send(Whole, fs[:17]...)
		if s.reacted(s.strictWait) {
			return nil
		}
		s.NonStrict(fmt.Sprintf("no reaction within %v to 17 MiB of inflated data (before the last frame)", s.strictWait))
		s.Send(Whole, fs[17:]...)
		return nil
	})
}
