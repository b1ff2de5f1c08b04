package redisbroker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// historyBroker starts a broker on addr whose positioned messages go to
// got (when not nil).
func historyBroker(t *testing.T, addr string, got chan<- string) *redisbroker.Broker {
	t.Helper()
	b := redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: quietLogger()})
	b.StartHistory(func(topic string, pos wsroom.Position, payload []byte) {
		if got != nil {
			got <- fmt.Sprintf("%s %s:%d %s", topic, pos.Epoch, pos.Offset, payload)
		}
	})
	b.Start(func(string, []byte) {})
	t.Cleanup(func() { b.Close() })
	return b
}

func publishH(t *testing.T, b *redisbroker.Broker, topic, payload string, limits wsroom.History) wsroom.Position {
	t.Helper()
	pos, err := b.PublishHistory(topic, []byte(payload), limits)()
	if err != nil {
		t.Fatalf("PublishHistory(%s): %v", payload, err)
	}
	return pos
}

// entries formats a read as "offset:payload …".
func entries(rd wsroom.HistoryRead) string {
	var s []string
	for _, e := range rd.Entries {
		s = append(s, fmt.Sprintf("%d:%s", e.Offset, e.Payload))
	}
	return strings.Join(s, " ")
}

func readH(t *testing.T, b *redisbroker.Broker, topic string, since wsroom.Position) wsroom.HistoryRead {
	t.Helper()
	rd, err := b.ReadHistory(context.Background(), topic, since, 100)
	if err != nil {
		t.Fatalf("ReadHistory: %v", err)
	}
	return rd
}

// redisInt runs a command that answers an integer.
func redisInt(t *testing.T, addr string, args ...string) int64 {
	t.Helper()
	s, err := redistest.Command(addr, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(s, ":"), 10, 64)
	if err != nil {
		t.Fatalf("%v: reply %q", args, s)
	}
	return n
}

// TestHistoryTrim: the bounds by bytes and by age, in the stream itself.
func TestHistoryTrim(t *testing.T) {
	srv := redistest.Start(t)
	b := historyBroker(t, srv.Addr, nil)
	list, _ := b.HistoryKeys("room:bytes")
	limits := wsroom.History{Messages: 100, Bytes: 10, TTL: time.Minute}
	var first wsroom.Position
	for i := range 5 {
		p := publishH(t, b, "room:bytes", "abc"+strconv.Itoa(i), limits) // 4 bytes each
		if i == 0 {
			first = p
		}
	}
	if rd := readH(t, b, "room:bytes", wsroom.Position{}); entries(rd) != "4:abc3 5:abc4" {
		t.Fatalf("10 bytes kept: %q", entries(rd))
	}
	if rd := readH(t, b, "room:bytes", first); rd.Lost != "trimmed" {
		t.Fatalf("after the first of 5 with 2 kept: lost %q", rd.Lost)
	}
	if n := redisInt(t, srv.Addr, "LLEN", list); n != 2 {
		t.Fatalf("list holds %d entries, want 2", n)
	}
	// A message bigger than the bound is kept alone.
	publishH(t, b, "room:bytes", "0123456789abc", limits)
	if rd := readH(t, b, "room:bytes", wsroom.Position{}); entries(rd) != "6:0123456789abc" {
		t.Fatalf("a message over the bound: %q", entries(rd))
	}

	// Age: entries older than the TTL are gone for reads at once, and
	// from the stream at the next publish.
	list, _ = b.HistoryKeys("room:age")
	limits = wsroom.History{Messages: 100, Bytes: 1 << 20, TTL: 400 * time.Millisecond}
	p1 := publishH(t, b, "room:age", "old", limits)
	time.Sleep(250 * time.Millisecond) // the TTL runs: time must pass
	p2 := publishH(t, b, "room:age", "mid", limits)
	time.Sleep(250 * time.Millisecond) // "old" is now 500 ms old, "mid" 250
	if rd := readH(t, b, "room:age", p1); entries(rd) != "2:mid" || rd.Lost != "" {
		t.Fatalf("after old: %q lost %q", entries(rd), rd.Lost)
	}
	if rd := readH(t, b, "room:age", wsroom.Position{Epoch: p1.Epoch}); rd.Lost != "trimmed" {
		t.Fatalf("from the start, old expired: lost %q", rd.Lost)
	}
	if rd := readH(t, b, "room:age", wsroom.Position{}); entries(rd) != "2:mid" {
		t.Fatalf("the newest: %q", entries(rd))
	}
	publishH(t, b, "room:age", "new", limits)
	if n := redisInt(t, srv.Addr, "LLEN", list); n != 2 {
		t.Fatalf("list holds %d entries after the expired one was trimmed, want 2", n)
	}
	if ms := redisInt(t, srv.Addr, "PTTL", list); ms <= 0 || ms > 400 {
		t.Fatalf("the stream expires in %d ms, want the TTL after the last message", ms)
	}
	_ = p2
}

// TestHistoryLost: whichever key Redis loses, the next message starts a
// new epoch, and reads from the old one say so.
func TestHistoryLost(t *testing.T) {
	srv := redistest.Start(t)
	got := make(chan string, 16)
	b := historyBroker(t, srv.Addr, got)
	if err := b.Subscribe("room:l"); err != nil {
		t.Fatal(err)
	}
	limits := wsroom.History{Messages: 10}
	list, meta := b.HistoryKeys("room:l")
	epochs := map[string]bool{}
	for _, lose := range []string{"", list, meta} {
		if lose != "" {
			if _, err := redistest.Command(srv.Addr, "DEL", lose); err != nil {
				t.Fatal(err)
			}
		}
		p := publishH(t, b, "room:l", "a", limits)
		q := publishH(t, b, "room:l", "b", limits)
		if p.Offset != 1 || q != (wsroom.Position{Epoch: p.Epoch, Offset: 2}) || epochs[p.Epoch] {
			t.Fatalf("after losing %q: %+v then %+v; want a new epoch from offset 1", lose, p, q)
		}
		epochs[p.Epoch] = true
		if rd := readH(t, b, "room:l", wsroom.Position{Epoch: "old", Offset: 1}); rd.Lost != "epoch" || rd.Current != q {
			t.Fatalf("a read from another epoch: %+v", rd)
		}
	}
	// The positioned messages reach a subscriber with their positions
	// (the subscription may start after the first ones).
	deadline := time.After(10 * time.Second)
	for {
		publishH(t, b, "room:l", "probe", limits)
		select {
		case s := <-got:
			if !strings.HasPrefix(s, "room:l ") {
				t.Fatalf("delivered %q", s)
			}
			return
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("no positioned message delivered")
		}
	}
}

// TestHistoryNoScript: after SCRIPT FLUSH, publishes and reads go on (the
// broker sends the script's body again), and no message is appended
// twice.
func TestHistoryNoScript(t *testing.T) {
	srv := redistest.Start(t)
	b := historyBroker(t, srv.Addr, nil)
	limits := wsroom.History{Messages: 100}
	publishH(t, b, "room:ns", "1", limits)
	if _, err := redistest.Command(srv.Addr, "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	var waits []func() (wsroom.Position, error)
	for i := 2; i <= 50; i++ { // pipelined: many EVALSHA meet NOSCRIPT at once
		waits = append(waits, b.PublishHistory("room:ns", []byte(strconv.Itoa(i)), limits))
	}
	for _, w := range waits {
		if _, err := w(); err != nil {
			t.Fatalf("PublishHistory after SCRIPT FLUSH: %v", err)
		}
	}
	rd := readH(t, b, "room:ns", wsroom.Position{})
	if len(rd.Entries) != 50 || rd.Current.Offset != 50 {
		t.Fatalf("%d entries up to offset %d, want 50 up to 50", len(rd.Entries), rd.Current.Offset)
	}
	seen := map[string]bool{}
	for _, e := range rd.Entries {
		if seen[string(e.Payload)] {
			t.Fatalf("%s appended twice", e.Payload)
		}
		seen[string(e.Payload)] = true
	}
}

// TestHistoryMemory measures what Redis holds per retained message of a
// 1 KiB payload (MEMORY USAGE of the list and its hash) and checks it
// stays within payload + 192 bytes: 13 bytes of time per entry, a few of
// listpack framing, and the allocator's rounding of the list's 8 KiB
// nodes (seven such entries fill 7.3 KiB of an 8 KiB allocation). A
// stream, the other candidate, costs payload + 308 (README.md).
func TestHistoryMemory(t *testing.T) {
	srv := redistest.Start(t)
	b := historyBroker(t, srv.Addr, nil)
	const n, size = 1000, 1024
	payload := []byte(strings.Repeat("x", size))
	limits := wsroom.History{Messages: n, Bytes: 4 << 20}
	var waits []func() (wsroom.Position, error)
	for range 2 * n { // the second half trims the first: a steady state
		waits = append(waits, b.PublishHistory("room:mem", payload, limits))
	}
	for _, w := range waits {
		if _, err := w(); err != nil {
			t.Fatal(err)
		}
	}
	list, meta := b.HistoryKeys("room:mem")
	total := redisInt(t, srv.Addr, "MEMORY", "USAGE", list, "SAMPLES", "0") + redisInt(t, srv.Addr, "MEMORY", "USAGE", meta, "SAMPLES", "0")
	per := float64(total) / n
	t.Logf("%d messages of %d bytes: %d bytes in Redis, %.1f per message (payload + %.1f)", n, size, total, per, per-size)
	if per > size+192 {
		t.Errorf("%.1f bytes per retained message, want at most payload + 192", per)
	}
}
