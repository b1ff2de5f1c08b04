package redisbroker_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// brokerPair starts a publishing and a subscribing broker on opts; got
// receives what the subscriber delivers.
func brokerPair(t *testing.T, opts redisbroker.Options) (pub, sub *redisbroker.Broker, got chan string) {
	t.Helper()
	opts.Logger = quietLogger()
	pub, sub = redisbroker.New(opts), redisbroker.New(opts)
	got = make(chan string, 1024)
	pub.Start(func(string, []byte) {})
	sub.Start(func(topic string, p []byte) {
		select {
		case got <- topic + " " + string(p):
		default:
		}
	})
	t.Cleanup(func() { pub.Close(); sub.Close() })
	return pub, sub, got
}

// waitStats waits until cond holds for b's Stats.
func waitStats(t *testing.T, b *redisbroker.Broker, what string, cond func(redisbroker.Stats) bool) {
	t.Helper()
	if !poll(func() bool { return cond(b.Stats()) }) {
		t.Fatalf("timed out waiting for %s: %+v", what, b.Stats())
	}
}

// expectMsg publishes on topic until want arrives (the subscription may
// not be in place yet), then drains the rest.
func expectMsg(t *testing.T, pub *redisbroker.Broker, got chan string, topic string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		m := "m" + strconv.Itoa(i)
		pub.Publish([]byte(m), topic)()
		select {
		case s := <-got:
			if s[:len(topic)] != topic {
				t.Fatalf("got %q, want a message on %s", s, topic)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing delivered on %s", topic)
		}
	}
}

// TestSilentRedis pauses redis-server (SIGSTOP: connections stay open,
// nothing is answered): the subscription connection is found dead by the
// PING check, publishes time out, and everything recovers once it
// resumes.
func TestSilentRedis(t *testing.T) {
	srv := redistest.Start(t)
	pub, sub, got := brokerPair(t, redisbroker.Options{
		Addrs: []string{srv.Addr}, PingInterval: 50 * time.Millisecond, PublishTimeout: 300 * time.Millisecond,
	})
	sub.Subscribe("room:s")
	waitStats(t, sub, "the subscription", func(s redisbroker.Stats) bool { return s.Subscriptions == 1 })
	expectMsg(t, pub, got, "room:s")

	srv.Pause()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			srv.Resume()
		}
	})
	waitStats(t, sub, "the silent connection to be dropped", func(s redisbroker.Stats) bool { return !s.Connected && s.Reconnects >= 1 })
	err := pub.Publish([]byte("lost"), "room:s")()
	if !errors.Is(err, redisbroker.ErrTimeout) && !errors.Is(err, redisbroker.ErrUnavailable) {
		t.Fatalf("publish to a silent Redis: %v, want ErrTimeout or ErrUnavailable", err)
	}
	srv.Resume()
	resumed = true
	waitStats(t, sub, "reconnection", func(s redisbroker.Stats) bool { return s.Connected && s.Subscriptions == 1 })
	expectMsg(t, pub, got, "room:s")
}

// TestResubscribeAfterRestart subscribes to many topics, restarts Redis,
// and checks that they are all subscribed again (the figure for 100k
// topics comes from the redisbench program).
func TestResubscribeAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	pub, sub, got := brokerPair(t, redisbroker.Options{Addrs: []string{srv.Addr}})
	const n = 5000
	topics := make([]string, n)
	for i := range topics {
		topics[i] = "room:re-" + strconv.Itoa(i)
	}
	sub.Subscribe(topics...)
	waitStats(t, sub, "the subscriptions", func(s redisbroker.Stats) bool { return s.Subscriptions == n })
	srv.Stop()
	waitStats(t, sub, "the loss", func(s redisbroker.Stats) bool { return !s.Connected })
	srv.Restart()
	start := time.Now()
	waitStats(t, sub, "the subscriptions again", func(s redisbroker.Stats) bool { return s.Connected && s.Subscriptions == n })
	t.Logf("%d topics subscribed again %v after redis-server restarted", n, time.Since(start).Round(time.Millisecond))
	rc := newRedisClient(t, srv.Addr)
	if m := numSub(t, rc, topics[n-1]); m != 1 {
		t.Fatalf("NUMSUB %s = %d after the restart", topics[n-1], m)
	}
	expectMsg(t, pub, got, topics[n/2])
}
