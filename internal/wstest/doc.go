// Package wstest is the test toolbox of wsroom's tests: a raw WebSocket
// client over real loopback TCP (or an in-memory pipe), a frame builder
// with named opcodes, read and expect helpers, the one wait-until, a
// loopback server with cleanup, and Build and StartProcess, which run a
// program (a demo node) on a loopback port and stop it by PID.
//
// The client (Conn) sends anything, valid or not (Final, Fragment, Frame,
// Cat build the bytes), and reads frames as the server wrote them. Its
// error-returning methods may run on any goroutine; the functions and
// methods that take a testing.TB (Dial, Expect…, SendText, MustWrite…)
// fail the test and belong on the test's goroutine.
//
// Tests wait for the code under test with WaitFor (a condition and a
// deadline), never with a sleep. Timing behaviour (heartbeats, timeouts)
// is tested in virtual time: ServePipe serves a handler over net.Pipe,
// whose blocking is durable under testing/synctest.
//
// The package imports only the standard library, so that every package of
// the module, wsroom's internal tests included, can use it.
package wstest
