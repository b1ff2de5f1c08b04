package conformance

import "time"

// fragmentCases is group 5.
func fragmentCases() []Case {
	f := func(fin bool, op byte, p string) Frame { return Frame{Fin: fin, Op: op, Payload: []byte(p)} }
	frag1, frag2 := "fragment1", "fragment2"
	twoText := []Frame{f(false, OpText, frag1), f(true, OpContinuation, frag2)}
	withPing := []Frame{f(false, OpText, frag1), f(true, OpPing, "ping payload"), f(true, OpContinuation, frag2)}
	echo := ExpectMessage(OpText, []byte(frag1+frag2))
	pong := ExpectPong([]byte("ping payload"))
	contFin := []Frame{f(true, OpContinuation, "non-continuation payload"), f(true, OpText, "Hello, world!")}
	contNoFin := []Frame{f(false, OpContinuation, "non-continuation payload"), f(true, OpText, "Hello, world!")}
	var twice16, twice17 []Frame
	for range 2 {
		twice16 = append(twice16, f(false, OpContinuation, frag1), f(false, OpText, frag2), f(true, OpContinuation, "fragment3"))
		twice17 = append(twice17, f(true, OpContinuation, frag1), f(false, OpText, frag2), f(true, OpContinuation, "fragment3"))
	}
	pongme := func(ch Chunking) []Step {
		return []Step{
			Send(ch, f(false, OpText, frag1), f(false, OpContinuation, frag2), f(true, OpPing, "pongme 1!")),
			ExpectPong([]byte("pongme 1!")),
			Pause(time.Second),
			Send(ch, f(false, OpContinuation, "fragment3"), f(false, OpContinuation, "fragment4"), f(true, OpPing, "pongme 2!")),
			ExpectPong([]byte("pongme 2!")),
			Pause(time.Second),
			Send(ch, f(true, OpContinuation, "fragment5")),
			ExpectMessage(OpText, []byte("fragment1fragment2fragment3fragment4fragment5")),
		}
	}
	return []Case{
		newCase("5.1", "ping in 2 fragments fails", Send(Whole, f(false, OpPing, frag1), f(true, OpContinuation, frag2)), ExpectFail()),
		newCase("5.2", "pong in 2 fragments fails", Send(Whole, f(false, OpPong, frag1), f(true, OpContinuation, frag2)), ExpectFail()),
		newCase("5.3", "text in 2 fragments", Send(Whole, twoText...), echo),
		newCase("5.4", "text in 2 fragments, frame by frame", Send(PerFrameSync, twoText...), echo),
		newCase("5.5", "text in 2 fragments, byte by byte", Send(PerByte, twoText...), echo),
		newCase("5.6", "text in 2 fragments with a ping between", Send(Whole, withPing...), pong, echo),
		newCase("5.7", "text in 2 fragments with a ping between, frame by frame", Send(PerFrameSync, withPing...), pong, echo),
		newCase("5.8", "text in 2 fragments with a ping between, byte by byte", Send(PerByte, withPing...), pong, echo),
		newCase("5.9", "continuation (FIN=1) with nothing to continue, then text, fails", Send(Whole, contFin...), ExpectFail()),
		newCase("5.10", "as 5.9, frame by frame", Send(PerFrameSync, contFin...), ExpectFail()),
		newCase("5.11", "as 5.9, byte by byte", Send(PerByte, contFin...), ExpectFail()),
		newCase("5.12", "continuation (FIN=0) with nothing to continue, then text, fails", Send(Whole, contNoFin...), ExpectFail()),
		newCase("5.13", "as 5.12, frame by frame", Send(PerFrameSync, contNoFin...), ExpectFail()),
		newCase("5.14", "as 5.12, byte by byte", Send(PerByte, contNoFin...), ExpectFail()),
		newCase("5.15", "text in 2 fragments, then a stray continuation and text: echo then fail",
			Send(Whole, f(false, OpText, frag1), f(true, OpContinuation, frag2), f(false, OpContinuation, "fragment3"), f(true, OpText, "fragment4")),
			echo, ExpectFail()),
		newCase("5.16", "twice: stray continuation (FIN=0), then text in 2 fragments: fail", Send(Whole, twice16...), ExpectFail()),
		newCase("5.17", "twice: stray continuation (FIN=1), then text in 2 fragments: fail", Send(Whole, twice17...), ExpectFail()),
		newCase("5.18", "text in 2 fragments both with the text opcode fails",
			Send(Whole, f(false, OpText, frag1), f(true, OpText, frag2)), ExpectFail()),
		newCase("5.19", "text in 5 fragments, pings between answered before the message ends", pongme(Whole)...),
		newCase("5.20", "as 5.19, frame by frame", pongme(PerFrameSync)...),
	}
}
