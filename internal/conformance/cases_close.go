package conformance

import "strconv"

// closeCases is group 7.
func closeCases() []Case {
	hello := []byte("Hello World!")
	closeF := func(code uint16, reason string) Frame { return Control(OpClose, CloseBody(code, reason)) }
	normal := closeF(1000, "")
	big := repeat(autobahnText, 256<<10)
	// Autobahn marks 7.1.6 informational; the runner wants the strict
	// outcome: both messages echoed before the close.
	c716 := newCase("7.1.6", "256 KiB text message and a small one, then close, then ping",
		Send(Whole, Text(big), Text(hello), normal, Control(OpPing, hello)),
		ExpectMessage(OpText, big), ExpectMessage(OpText, hello), ExpectClose(1000))
	c716.Endpoint = Large
	cs := []Case{
		newCase("7.1.1", "text message, then close", Send(Whole, Text(hello)), ExpectMessage(OpText, hello),
			Send(Whole, normal), ExpectClose(1000)),
		newCase("7.1.2", "two close frames", Send(Whole, normal, normal), ExpectClose(1000)),
		newCase("7.1.3", "ping after close is not answered", Send(Whole, normal, Control(OpPing, hello)), ExpectClose(1000)),
		newCase("7.1.4", "text after close is not echoed", Send(Whole, normal, Text(hello)), ExpectClose(1000)),
		newCase("7.1.5", "close in the middle of a fragmented message",
			Send(Whole, Frame{Op: OpText, Payload: []byte("fragment1")}, normal, Frame{Fin: true, Op: OpContinuation, Payload: []byte("fragment2")}),
			ExpectClose(1000)),
		c716,
		newCase("7.3.1", "close with empty payload", Send(Whole, Control(OpClose, nil)), ExpectClose(1000, NoStatus)),
		newCase("7.3.2", "close with 1-byte payload fails", Send(Whole, Control(OpClose, []byte("a"))), ExpectFail()),
		newCase("7.3.3", "close 1000 without reason", Send(Whole, normal), ExpectClose(1000)),
		newCase("7.3.4", "close 1000 with a reason", Send(Whole, closeF(1000, "Hello World!")), ExpectClose(1000)),
		newCase("7.3.5", "close 1000 with a 123-byte reason", Send(Whole, closeF(1000, string(repeat("*", 123)))), ExpectClose(1000)),
		newCase("7.3.6", "close 1000 with a 124-byte reason fails", Send(Whole, closeF(1000, string(repeat("*", 124)))), ExpectFail()),
		newCase("7.5.1", "close reason with invalid UTF-8 fails",
			Send(Whole, closeF(1000, kosme+"\xed\xa0\x80edited")), ExpectFail(1002, 1007)),
	}
	for i, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cs = append(cs, newCase("7.7."+strconv.Itoa(i+1), "close with valid code "+strconv.Itoa(int(code)),
			Send(Whole, closeF(code, "")), ExpectClose(1000, code)))
	}
	for i, code := range []uint16{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		cs = append(cs, newCase("7.9."+strconv.Itoa(i+1), "close with invalid code "+strconv.Itoa(int(code))+" fails",
			Send(Whole, closeF(code, "")), ExpectFail()))
	}
	return cs
}
