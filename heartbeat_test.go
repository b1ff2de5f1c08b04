package wsroom_test

// Heartbeat and timeout tests, in virtual time: each runs in a
// testing/synctest bubble, where the clock advances only when every
// goroutine of the test is blocked. The hub serves its connections over
// net.Pipe (wstest.ServePipe), whose blocking is durable, so a test waits
// for the server's pings and timeouts without waiting for real time, and
// a loaded machine cannot make it fail. (A pipe is not a *net.TCPConn: the
// hub serves it with a reader goroutine, not the Linux poller; the
// poller's heartbeat has a real-socket test, TestPollerHalfOpenPeersDropped.)

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// pipeHub builds a recording hub (see recording) in the calling synctest
// bubble; cleanup shuts it down.
func pipeHub(t *testing.T, opts wsroom.Options) (*wsroom.Hub, *recorder) {
	t.Helper()
	rec, opts := recording(opts)
	hub := newHub(opts)
	t.Cleanup(func() {
		if err := hub.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return hub, rec
}

// dialPipe connects to hub over a pipe as connection id.
func dialPipe(t *testing.T, hub *wsroom.Hub, id string) *wstest.Conn {
	t.Helper()
	req := wstest.Request("http://example.com/ws?id="+id, nil)
	c := wstest.ServePipe(t, hub, req)
	if err := wstest.CheckUpgrade(req, c.Resp); err != nil {
		t.Fatal(err)
	}
	return c
}

// within fails the test unless d is in [from, from+slack].
func within(t *testing.T, what string, d, from, slack time.Duration) {
	t.Helper()
	if d < from || d > from+slack {
		t.Errorf("%s after %v, want %v (+ at most %v)", what, d, from, slack)
	}
}

// A peer that answers nothing is pinged after PingInterval and dropped
// after PongTimeout (defaults: 30 s and 60 s) with 1006 and ErrPongTimeout.
func TestHeartbeatDropsSilentPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, rec := pipeHub(t, wsroom.Options{})
		start := time.Now()
		c := dialPipe(t, hub, "silent")
		c.Timeout = time.Hour
		var pings []time.Duration
		var err error
		for {
			var f wstest.Frame
			if f, err = c.ReadFrame(); err != nil {
				break
			}
			if f.Op != wstest.OpPing {
				t.Fatalf("unexpected frame %v", f)
			}
			pings = append(pings, time.Since(start))
		}
		elapsed := time.Since(start)
		if !wstest.IsEOF(err) {
			t.Fatalf("after %d pings: %v, want EOF", len(pings), err)
		}
		if len(pings) == 0 {
			t.Fatalf("dropped after %v without being pinged", elapsed)
		}
		// The heartbeat looks every quarter of the shorter period.
		slack := wsroom.DefaultPingInterval / 4
		within(t, "first ping", pings[0], wsroom.DefaultPingInterval, slack)
		for i := 1; i < len(pings); i++ {
			if gap := pings[i] - pings[i-1]; gap < wsroom.DefaultPingInterval {
				t.Errorf("ping %d came %v after the previous one, want at least PingInterval", i, gap)
			}
		}
		within(t, "dropped", elapsed, 2*wsroom.DefaultPingInterval, slack)
		wantClose(t, rec.closeErr(t, "silent"), 1006, false, wsroom.ErrPongTimeout)
	})
}

// A peer that answers every ping, with a pong or with any frame, stays
// connected however long, and is pinged every PingInterval.
func TestHeartbeatAnsweringPeerStays(t *testing.T) {
	const pingInterval, pongTimeout = 50 * time.Millisecond, 400 * time.Millisecond
	for _, tc := range []struct {
		name   string
		answer func(ping []byte) []byte
	}{
		{"pongs", func(ping []byte) []byte { return wstest.Final(wstest.OpPong, ping) }},
		{"data instead of pongs", func([]byte) []byte { return wstest.Final(wstest.OpText, "i am here") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hub, rec := pipeHub(t, wsroom.Options{PingInterval: pingInterval, PongTimeout: pongTimeout})
				c := dialPipe(t, hub, "alive")
				// Alive for 30 times PongTimeout.
				end := time.Now().Add(30 * pongTimeout)
				c.SetReadDeadline(end)
				pings := 0
				for {
					f, err := c.ReadFrame()
					if errors.Is(err, os.ErrDeadlineExceeded) {
						break
					}
					if err != nil {
						t.Fatalf("dropped after %d pings: %v (OnClose: %v)", pings, err, rec.closeErr(t, "alive"))
					}
					switch f.Op {
					case wstest.OpPing:
						pings++
						c.MustWrite(t, tc.answer(f.Payload))
					case wstest.OpText: // an echo of an answer
					default:
						t.Fatalf("unexpected frame %v", f)
					}
				}
				select {
				case err := <-rec.rec("alive").closed:
					t.Fatalf("closed while answering: %v", err)
				default:
				}
				if want := int(30 * pongTimeout / (2 * pingInterval)); pings < want {
					t.Errorf("%d pings in %v with PingInterval %v, want at least %d", pings, 30*pongTimeout, pingInterval, want)
				}
				// Still usable.
				c.SetReadDeadline(time.Time{})
				c.SendText(t, "still here")
				for {
					if msg := c.NextText(t); msg == "still here" {
						break
					} else if msg != "i am here" {
						t.Fatalf("unexpected message %q", msg)
					}
				}
				c.CloseHandshake(t, 1000)
				wantClose(t, rec.closeErr(t, "alive"), 1000, true, nil)
			})
		})
	}
}

// With PingInterval -1 there are no pings and no pong timeout.
func TestHeartbeatDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, rec := pipeHub(t, wsroom.Options{PingInterval: -1})
		c := dialPipe(t, hub, "quiet")
		c.ExpectSilence(t, time.Hour)
		c.SendText(t, "after an hour")
		c.ExpectText(t, "after an hour")
		c.CloseHandshake(t, 1000)
		wantClose(t, rec.closeErr(t, "quiet"), 1000, true, nil)
	})
}

// A callback slower than PongTimeout keeps the reader from reading pongs;
// the heartbeat must not take that for a dead peer. The same holds for a
// slow OnConnect, which also runs on the reader.
func TestHeartbeatBusyCallbackIsNotADeadPeer(t *testing.T) {
	const pingInterval, pongTimeout, work = 20 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond
	t.Run("OnMessage", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			hub, rec := pipeHub(t, wsroom.Options{
				PingInterval: pingInterval,
				PongTimeout:  pongTimeout,
				OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
					time.Sleep(work) // slow application work, in virtual time
					c.Send(m)
				},
			})
			c := dialPipe(t, hub, "slow")
			start := time.Now()
			c.SendText(t, "slow")
			c.ExpectText(t, "slow") // ExpectText skips the server's pings
			within(t, "the echo", time.Since(start), work, pingInterval)
			c.CloseHandshake(t, 1000)
			wantClose(t, rec.closeErr(t, "slow"), 1000, true, nil)
		})
	})
	t.Run("OnConnect", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			hub, rec := pipeHub(t, wsroom.Options{
				PingInterval: pingInterval,
				PongTimeout:  pongTimeout,
				OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
					time.Sleep(work) // slow application work, in virtual time
					return c.Send(wsroom.Text("welcome"))
				},
			})
			c := dialPipe(t, hub, "slow")
			c.ExpectText(t, "welcome")
			c.CloseHandshake(t, 1000)
			wantClose(t, rec.closeErr(t, "slow"), 1000, true, nil)
		})
	})
}

// A connection whose peer never answers the server's close frame ends
// after WriteTimeout, with the deadline as the cause.
func TestCloseWithoutAnswerEndsAfterWriteTimeout(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		hub, rec := pipeHub(t, wsroom.Options{WriteTimeout: writeTimeout})
		elapsed := closeWithoutAnswer(t, rec, dialPipe(t, hub, "mute"), "mute")
		within(t, "the connection ended", elapsed, writeTimeout, writeTimeout/10)
	})
}

// closeWithoutAnswer closes connection id of rec with 1000 "bye"; its peer
// c reads the close frame and the end of the stream but never answers. It
// checks that OnClose reports the deadline as the cause, and returns how
// long after Close the connection ended.
func closeWithoutAnswer(t *testing.T, rec *recorder, c *wstest.Conn, id string) time.Duration {
	t.Helper()
	conn := rec.conn(t, id)
	start := time.Now()
	if err := conn.Close(1000, "bye"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	code, reason, err := c.ReadClose()
	if err != nil || code != 1000 || reason != "bye" {
		t.Fatalf("got close %d %q, %v; want 1000 \"bye\" then EOF", code, reason, err)
	}
	ce := rec.closeErr(t, id)
	elapsed := time.Since(start)
	wantClose(t, ce, 1000, false, os.ErrDeadlineExceeded) // the handshake timed out
	return elapsed
}

// Shutdown ends a connection whose peer never answers the close after
// WriteTimeout, and still returns nil.
func TestShutdownWithoutAnswer(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		hub, rec := pipeHub(t, wsroom.Options{WriteTimeout: writeTimeout})
		c := dialPipe(t, hub, "a")
		c.SendText(t, "hi")
		c.ExpectText(t, "hi")
		// The peer reads (a pipe holds nothing the reader did not take)
		// but never answers.
		read := make(chan error, 1)
		go func() {
			code, reason, err := c.ReadClose()
			if err == nil && (code != 1001 || reason != "server shutdown") {
				err = fmt.Errorf("got close %d %q; want 1001 \"server shutdown\" then EOF", code, reason)
			}
			read <- err
		}()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		within(t, "Shutdown returned", time.Since(start), writeTimeout, writeTimeout/10)
		if err := <-read; err != nil {
			t.Fatal(err)
		}
		wantClose(t, rec.closeErr(t, "a"), 1001, false, os.ErrDeadlineExceeded)
	})
}
