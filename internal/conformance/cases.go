package conformance

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// Cases returns every case of groups 1–7, 9 and 10, sorted by ID.
func Cases() []Case {
	var cs []Case
	cs = append(cs, framingCases()...)
	cs = append(cs, pingCases()...)
	cs = append(cs, reservedCases()...)
	cs = append(cs, fragmentCases()...)
	cs = append(cs, utf8Cases()...)
	cs = append(cs, closeCases()...)
	cs = append(cs, limitCases()...)
	SortByID(cs)
	return cs
}

// newCase builds a default-endpoint case; Group comes from the ID.
func newCase(id, desc string, steps ...Step) Case {
	g, _ := strconv.Atoi(strings.SplitN(id, ".", 2)[0])
	return Case{ID: id, Group: g, Description: desc, Steps: steps}
}

// PerFrameSync writes frame by frame with a short pause, like Autobahn's
// "sync" sends that flush each frame before the next.
var PerFrameSync = Chunking{PerFrame: true, Delay: 10 * time.Millisecond}

// repeat returns n bytes cycling through pattern.
func repeat(pattern string, n int) []byte {
	return bytes.Repeat([]byte(pattern), n/len(pattern)+1)[:n]
}

// autobahnText is the filler Autobahn uses for large text payloads.
const autobahnText = "BAsd7&jh23"

// framingCases is group 1 (payload lengths) and group 10.
func framingCases() []Case {
	lens := []int{0, 125, 126, 127, 128, 65535, 65536}
	var cs []Case
	for i, n := range lens {
		p := repeat("*", n)
		cs = append(cs, newCase("1.1."+strconv.Itoa(i+1), "text message of "+strconv.Itoa(n)+" bytes",
			Send(Whole, Text(p)), ExpectMessage(OpText, p)))
		b := repeat("\xfe", n)
		cs = append(cs, newCase("1.2."+strconv.Itoa(i+1), "binary message of "+strconv.Itoa(n)+" bytes",
			Send(Whole, Binary(b)), ExpectMessage(OpBinary, b)))
	}
	p, b := repeat("*", 65536), repeat("\xfe", 65536)
	cs = append(cs,
		newCase("1.1.8", "text message of 65536 bytes in 997-byte chops",
			Send(Chops(997, 0), Text(p)), ExpectMessage(OpText, p)),
		newCase("1.2.8", "binary message of 65536 bytes in 997-byte chops",
			Send(Chops(997, 0), Binary(b)), ExpectMessage(OpBinary, b)),
		newCase("10.1.1", "65536-byte text message in 1300-byte frames",
			Send(Whole, Fragments(OpText, p, 1300)...), ExpectMessage(OpText, p)),
	)
	return cs
}

// pingCases is group 2.
func pingCases() []Case {
	bin := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	p125, p126 := repeat("\xfe", 125), repeat("\xfe", 126)
	ping := func(p []byte) Frame { return Control(OpPing, p) }
	var tenPings []Frame
	var tenPongs []Step
	for i := range 10 {
		p := []byte("payload-" + strconv.Itoa(i))
		tenPings = append(tenPings, ping(p))
		tenPongs = append(tenPongs, ExpectPong(p))
	}
	return []Case{
		newCase("2.1", "ping without payload", Send(Whole, ping(nil)), ExpectPong(nil)),
		newCase("2.2", "ping with small text payload", Send(Whole, ping([]byte("Hello, world!"))), ExpectPong([]byte("Hello, world!"))),
		newCase("2.3", "ping with small binary payload", Send(Whole, ping(bin)), ExpectPong(bin)),
		newCase("2.4", "ping with 125-byte payload", Send(Whole, ping(p125)), ExpectPong(p125)),
		newCase("2.5", "ping with 126-byte payload fails the connection", Send(Whole, ping(p126)), ExpectFail()),
		newCase("2.6", "ping with 125-byte payload, byte by byte", Send(PerByte, ping(p125)), ExpectPong(p125)),
		newCase("2.7", "unsolicited pong without payload is ignored", Send(Whole, Control(OpPong, nil))),
		newCase("2.8", "unsolicited pong with payload is ignored", Send(Whole, Control(OpPong, []byte("unsolicited pong payload")))),
		newCase("2.9", "unsolicited pong, then ping",
			Send(Whole, Control(OpPong, []byte("unsolicited pong payload")), ping([]byte("ping payload"))),
			ExpectPong([]byte("ping payload"))),
		newCase("2.10", "10 pings answered in order", append([]Step{Send(Whole, tenPings...)}, tenPongs...)...),
		newCase("2.11", "10 pings byte by byte answered in order", append([]Step{Send(PerByte, tenPings...)}, tenPongs...)...),
	}
}

// reservedCases is groups 3 (RSV bits) and 4 (reserved opcodes).
func reservedCases() []Case {
	hello := []byte("Hello, world!")
	text := Text(hello)
	ping := Control(OpPing, nil)
	rsv := func(f Frame, bits byte) Frame { f.Rsv = bits; return f }
	op := func(code byte, p []byte) Frame { return Frame{Fin: true, Op: code, Payload: p} }
	afterValid := func(id, desc string, ch Chunking, bad Frame) Case {
		return newCase(id, desc, Send(ch, text, bad, ping), ExpectMessage(OpText, hello), ExpectFail())
	}
	payload := []byte("reserved opcode payload")
	return []Case{
		newCase("3.1", "text with RSV=1 fails", Send(Whole, rsv(text, 1)), ExpectFail()),
		afterValid("3.2", "text, text with RSV=2, ping: echo then fail", Whole, rsv(text, 2)),
		afterValid("3.3", "text, text with RSV=3, ping, frame by frame: echo then fail", PerFrameSync, rsv(text, 3)),
		afterValid("3.4", "text, text with RSV=4, ping, byte by byte: echo then fail", PerByte, rsv(text, 4)),
		newCase("3.5", "binary with RSV=5 fails", Send(Whole, rsv(Binary([]byte{0, 0xff, 0xfe}), 5)), ExpectFail()),
		newCase("3.6", "ping with RSV=6 fails", Send(Whole, rsv(Control(OpPing, hello), 6)), ExpectFail()),
		newCase("3.7", "close with RSV=7 fails", Send(Whole, rsv(Control(OpClose, nil), 7)), ExpectFail()),

		newCase("4.1.1", "reserved data opcode 3 fails", Send(Whole, op(3, nil)), ExpectFail()),
		newCase("4.1.2", "reserved data opcode 4 with payload fails", Send(Whole, op(4, payload)), ExpectFail()),
		afterValid("4.1.3", "text, opcode 5, ping: echo then fail", PerFrameSync, op(5, nil)),
		afterValid("4.1.4", "text, opcode 6 with payload, ping: echo then fail", PerFrameSync, op(6, payload)),
		afterValid("4.1.5", "text, opcode 7 with payload, ping: echo then fail", PerFrameSync, op(7, payload)),
		newCase("4.2.1", "reserved control opcode 11 fails", Send(Whole, op(11, nil)), ExpectFail()),
		newCase("4.2.2", "reserved control opcode 12 with payload fails", Send(Whole, op(12, payload)), ExpectFail()),
		afterValid("4.2.3", "text, opcode 13, ping: echo then fail", PerFrameSync, op(13, nil)),
		afterValid("4.2.4", "text, opcode 14 with payload, ping: echo then fail", PerFrameSync, op(14, payload)),
		afterValid("4.2.5", "text, opcode 15 with payload, ping: echo then fail", PerFrameSync, op(15, payload)),
	}
}
