// Package conformance is a black-box RFC 6455 conformance runner for
// WebSocket servers. It mirrors the Autobahn|Testsuite fuzzing client
// (wstest -m fuzzingclient), groups 1–7, 9 and 10, with the same case IDs:
// each case speaks raw TCP to an echo endpoint (every data message must be
// sent back unchanged), writes hand-built frames in the chunking Autobahn
// uses (whole, per frame, per byte, fixed chops, with pauses where Autobahn
// pauses), and judges what comes back.
//
// # Verdicts
//
// A case is OK, NON-STRICT or FAILED, as in Autobahn. NON-STRICT means the
// right answer came late: for invalid UTF-8 the runner sends the bytes up
// to and including the first byte a validator can reject, waits
// StrictWait (1 s) for the server's 1007 close, and only then sends the
// rest; a 1007 that arrives only after the rest is NON-STRICT. Every close
// frame the server sends is checked for form (unmasked, FIN, no RSV bits,
// a valid code, a UTF-8 reason of at most 123 bytes), the runner answers
// it, and the server must then end the TCP connection.
//
// Every expectation has a deadline: StepTimeout (2 s), plus 2 s per MiB
// for large messages. A case that is not OK is run once more with a 5 s
// strict wait before its verdict stands, so that a loaded machine (the
// race detector, a busy CI runner) is not mistaken for a lax server; the
// summary lists the cases that needed it. "Fail the connection" accepts
// a close with the expected code (1002 unless stated) or a TCP drop
// without a close frame, as Autobahn does.
//
// The runner shares no code with wsroom: it has its own frame encoder,
// frame reader and UTF-8 automaton, so that it judges the server
// independently.
//
// # Layout
//
// The runner core is independent of the case tables:
//   - case.go: Case, Step, Endpoint and the step constructors (Send,
//     SendStrict, Pause, ExpectMessage, ExpectPong, ExpectClose, ExpectFail).
//   - session.go: dial and handshake, chunked sends, the frame reader,
//     the close handshake; wire.go: frame encoding and decoding, UTF-8
//     fail-fast positions.
//   - runner.go: running cases (in parallel where safe), verdicts;
//     summary.go: per-group summaries as text and Markdown.
//   - cases_*.go: the case tables, one file per group or two.
//
// # Adding permessage-deflate (groups 12 and 13)
//
// A new file cases_deflate.go can add those groups without touching the
// core: set Case.Extensions to the offer (it is sent as
// Sec-WebSocket-Extensions), set Case.CheckHandshake to inspect the
// response header (Session.Response), build compressed frames with
// Frame.Rsv = RSV1, and write steps of their own with NewStep: a step gets
// the *Session and can use Session.Send, Session.ReadMessage (which
// returns the RSV bits of the first frame, so that a step can inflate the
// payload) and Session.Fail. Session.AllowRSV1 tells the frame checker that
// RSV1 was negotiated. Add the new group's title to GroupTitles.
package conformance
