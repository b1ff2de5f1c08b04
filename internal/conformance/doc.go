// Package conformance is a black-box RFC 6455 conformance runner for
// WebSocket servers. It mirrors the Autobahn|Testsuite fuzzing client
// (wstest -m fuzzingclient), groups 1–7, 9, 10, 12 and 13, with the same
// case IDs: each case speaks raw TCP to an echo endpoint (every data
// message must be sent back unchanged), writes hand-built frames in the
// chunking Autobahn uses (whole, per frame, per byte, fixed chops, with
// pauses where Autobahn pauses), and judges what comes back.
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
// for large messages. A case that is not OK is run once more, with a 5 s
// strict wait and 10 s step timeouts, before its verdict stands, so that a
// loaded machine (the race detector, a busy CI runner) is not mistaken for
// a lax server. A case OK only on that second run passes, but never
// silently: its Outcome is "OK after retry", the summary counts it in its
// own column (not under OK) and lists it with its first run's failure, and
// wsroom's TestConformance logs it. A case that keeps failing is listed
// with both runs. "Fail the connection" accepts a close with the expected
// code (1002 unless stated) or a TCP drop without a close frame, as
// Autobahn does.
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
// # permessage-deflate (groups 12 and 13)
//
// DeflateCases returns groups 12 and 13 (RFC 7692); Cases does not
// include them, as they need a third endpoint, Deflate: an echo endpoint
// with permessage-deflate enabled and a read limit between 128 KiB and
// 16 MiB. The runner has its own extension parser and judge, compressor
// and inflater (deflate.go); every case first judges the server's
// Sec-WebSocket-Extensions answer against the offer (NegotiateDeflate):
// at most one permessage-deflate element, nothing not offered, only the
// four parameters, none twice, window bits 8–15 without leading zeros,
// server_max_window_bits answered (at most the offered value) when
// offered, server_no_context_takeover answered when offered,
// client_max_window_bits only when offered and then with a value no
// larger than the offer's. An offer that breaks RFC 7692 section 7 must
// not be accepted.
//
// Then messages go both ways: the runner compresses each message (level
// 1, with context takeover unless the answer or its own offer says
// client_no_context_takeover; with a client window below 15 bits,
// Huffman-only, which never refers back, since compress/flate always
// uses a 32 KiB window) and cuts the compressed payload into frames as
// Autobahn does. Echoes may come compressed or not; compressed ones are
// inflated with the last 32 KiB of the server's messages as dictionary
// unless the answer has server_no_context_takeover, in which case a
// server that still refers back fails the case.
//
//   - 12.1–12.5: the default offer (DefaultOffer), Autobahn's 18 sizes
//     and fragmentations (16 B to 128 KiB, whole or in frames of 256 B to
//     32 KiB), over generated JSON, a bitmap, German verse (as binary),
//     HTML and PDF-like data (deflate_data.go; Autobahn uses files).
//   - 13.1–13.7: Autobahn's offers over JSON, with
//     server_max_window_bits=9 where Autobahn says 8 (zlib cannot
//     compress with an 8-bit window). A server that cannot keep a small
//     window may decline those offers (the case then runs uncompressed
//     and the summary notes it).
//   - 13.8–13.12 (extra): client_no_context_takeover,
//     client_max_window_bits=9 and 15, every parameter at once, and an
//     offer list starting with server_max_window_bits=8.
//   - 13.13 (extra): invalid offers (window bits 7, 16, 010 or missing,
//     duplicates, a value on a flag, unknown parameters), alone or
//     followed by a valid offer.
//   - 13.14 (extra): RSV1 on a continuation, a ping or a close (1002);
//     corrupt deflate data (1007, or 1002, which some servers send; RFC
//     7692 names no code); compressed text that inflates to invalid
//     UTF-8 (1007); a 32 MiB bomb in one frame (1009) and in 32 frames
//     (1009 before the last 15 are sent, else NON-STRICT); plain messages
//     after negotiation; an empty compressed message; an empty first
//     frame; a ping between compressed fragments; compressed and plain
//     messages alternating.
//
// Autobahn sends 1000 messages per case; these send DeflateCount(size)
// (100, down to 2 for 128 KiB, about 256 KiB per case), and the summary
// says so. The runner does not check that a server keeps within the
// server_max_window_bits it answered.
//
// Custom steps for other extensions: set Case.Extensions to the offer,
// Case.CheckHandshake or a first step to inspect Session.Response, build
// frames with Frame.Rsv, and use Session.Send, Session.ReadMessage
// (which returns the RSV bits of the first frame) and Session.Fail.
// Session.AllowRSV1 tells the frame checker that RSV1 was negotiated.
package conformance
