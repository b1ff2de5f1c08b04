//go:build linux

package wsroom_test

// Parking (park.go): a member whose writer falls behind is served from
// its room's backlog. These tests make a client stop reading until it is
// parked, send to it every way there is, and then check, once it reads,
// that it got exactly what was meant for it, once and in order.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// parkServer is a server whose clients say who they are in the query
// (see stash), with pings off (the paused clients would not answer), a
// WriteTimeout long enough for a test under -race on a busy machine to
// get to reading its paused clients before the server drops them, and
// send buffers that do not grow, so that what the kernel takes for a
// paused client stays small whatever the timing.
func parkServer(t *testing.T) (*server, *stash) {
	st := newStash()
	s := newServer(t, parkOptions(st, wsroom.Options{}))
	return s, st
}

// parkOptions completes opts for parkServer.
func parkOptions(st *stash, opts wsroom.Options) wsroom.Options {
	opts.Identify, opts.OnConnect, opts.PingInterval = st.identify, st.onConnect, -1
	opts.WriteTimeout = 2 * time.Minute
	opts.SendBuffer, opts.SendBufferMax = 32<<10, 32<<10
	return opts
}

// pausedClient connects as user u, named name, in room r, and does not
// read until the test reads from the returned Conn (its receive buffer is
// 4 KiB, so the server's queue for it fills at once). extra are handshake
// headers. It advertises an Ethernet MSS (1460), not loopback's 64 KiB:
// with a window that small and that MSS, the server's kernel may hold a
// large write unsent until a window probe (it sends only a segment whose
// first MSS fits the window), and a paused client that starts reading
// then waits for one, seconds later. A real client's path has no such MSS.
func pausedClient(t *testing.T, s *server, st *stash, name, u, r string, extra ...string) (*wstest.Conn, *wsroom.Conn) {
	var h http.Header
	for i := 0; i+1 < len(extra); i += 2 {
		if h == nil {
			h = http.Header{}
		}
		h.Add(extra[i], extra[i+1])
	}
	nc := nbStalledDialWith(t, s.addr, "/ws?n="+name+"&u="+u+"&room="+r, 1460, h)
	return wstest.NewConn(nc), st.conn(t, name)
}

// parkPayload is a 1 KiB message naming itself.
func parkPayload(tag string) wsroom.Message {
	return wsroom.Text(tag + ":" + strings.Repeat("x", 1024-len(tag)-1))
}

// readTags reads len(want) messages and checks their tags, in order.
func readTags(t *testing.T, who string, c *wstest.Conn, want []string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i, w := range want {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("%s: message %d of %d (want %q): %v", who, i, len(want), w, err)
		}
		tag, _, _ := strings.Cut(string(b), ":")
		if tag != w {
			t.Fatalf("%s: message %d is %q, want %q (lost, duplicated or out of order)", who, i, tag, w)
		}
	}
}

// drainTags reads what the server left for a client closed as a slow
// consumer after count messages were sent: messages tagged 0, 1, … in
// order, far fewer than count (what its socket took before the close,
// none if its writer had not run yet, as on a busy machine), then a 1008
// close.
func drainTags(t *testing.T, who string, c *wstest.Conn, count int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := 0
	for {
		op, b, err := c.ReadMessage()
		if err != nil {
			var ce *wstest.CloseError
			if !errors.As(err, &ce) || ce.Code != 1008 {
				t.Fatalf("%s after %d messages: %v, want a 1008 close", who, got, err)
			}
			c.Close() // the server need not wait for an answer
			break
		}
		if op != wstest.OpText || !strings.HasPrefix(string(b), strconv.Itoa(got)+":") {
			t.Fatalf("%s: message %d is %.10q", who, got, b)
		}
		got++
	}
	if got >= count/2 {
		t.Errorf("%s got %d messages before its close; want far fewer than the %d sent", who, got, count)
	}
}

// waitParked waits until the hub has n parked connections.
func waitParked(t *testing.T, s *server, n int) {
	t.Helper()
	wstest.WaitFor(t, fmt.Sprintf("%d parked connections", n), func() bool { return s.hub.Stats().Parked == n })
}

// TestParkedGetsEverythingInOrder: a client that pauses is parked, and
// meanwhile gets room broadcasts, broadcasts that leave it out, sends to
// its user (hub-wide and within the room), hub-wide broadcasts and sends
// to its Conn, interleaved; a reading member gets the room's share. Once
// the paused client reads it must get exactly its messages, in order, be
// unparked once caught up, and then get live broadcasts directly.
func TestParkedGetsEverythingInOrder(t *testing.T) {
	s, st := parkServer(t)
	room := s.hub.Room("r")
	reader := wstest.Dial(t, s.url+"?n=reader&u=reader&room=r", nil)
	paused, pc := pausedClient(t, s, st, "paused", "p", "r")

	// 3 MiB: past parkBytes, within SendQueueBytes.
	sendWhileParked(t, s, reader, paused, 3000, func(i int, m wsroom.Message) (toPaused, toReader bool, err error) {
		switch i % 10 {
		case 6:
			return true, false, s.hub.SendTo(m, "p")
		case 7:
			return false, true, room.BroadcastExcept(m, pc)
		case 8:
			return true, true, s.hub.Broadcast(m)
		case 9:
			if i%20 == 9 {
				return true, false, pc.Send(m)
			}
			return true, false, room.SendTo(m, "p")
		}
		return true, true, room.Broadcast(m)
	})
	if err := room.Broadcast(parkPayload("live")); err != nil {
		t.Fatal(err)
	}
	readTags(t, "paused", paused, []string{"live"})
	readTags(t, "reader", reader, []string{"live"})
}

// sendWhileParked makes n sends of parkPayload(i) with send, which says
// whom each is for, the reader reading its share every 100 (it keeps up,
// the paused client does not). Then the paused client must be parked and
// not closed, read exactly its messages in order, and be unparked once it
// has caught up.
func sendWhileParked(t *testing.T, s *server, reader, paused *wstest.Conn, n int, send func(i int, m wsroom.Message) (toPaused, toReader bool, err error)) {
	t.Helper()
	var wantPaused, wantReader []string
	for i := range n {
		tag := strconv.Itoa(i)
		toPaused, toReader, err := send(i, parkPayload(tag))
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if toPaused {
			wantPaused = append(wantPaused, tag)
		}
		if toReader {
			wantReader = append(wantReader, tag)
		}
		if i%100 == 99 {
			readTags(t, "reader", reader, wantReader)
			wantReader = wantReader[:0]
		}
	}
	readTags(t, "reader", reader, wantReader)
	// The reader may have been parked too, if its writer fell behind (on
	// a busy machine); it has read everything, so it unparks.
	waitParked(t, s, 1)
	if s := s.hub.Stats(); s.Parks < 1 || s.SlowConsumerCloses != 0 {
		t.Fatalf("after the sends: %d parks, %d slow-consumer closes; want the paused client parked, no close",
			s.Parks, s.SlowConsumerCloses)
	}
	readTags(t, "paused", paused, wantPaused)
	waitParked(t, s, 0)
}

// TestParkedManyRooms: a client in three rooms ("r" and "q", shared with a
// reader, and "solo", its own) pauses and is parked in all three at once.
// Meanwhile each room broadcasts, "q" leaves it out of some, the hub
// broadcasts and its user and Conn get sends, interleaved by one sender.
// Once it reads it must get exactly its messages, in the order sent
// (merged across its rooms' backlogs and the hub's), be unparked once
// caught up, and get live broadcasts directly. Its bound covers its queue
// and all its backlogs together: the 3 MiB spread over them stays within
// 4 MiB, so it is not closed.
func TestParkedManyRooms(t *testing.T) {
	s, st := parkServer(t)
	r, q, solo := s.hub.Room("r"), s.hub.Room("q"), s.hub.Room("solo")
	reader := wstest.Dial(t, s.url+"?n=reader&u=reader&room=r&room=q", nil)
	paused, pc := pausedClient(t, s, st, "paused", "p", "r&room=q&room=solo")

	sendWhileParked(t, s, reader, paused, 3000, func(i int, m wsroom.Message) (toPaused, toReader bool, err error) {
		switch i % 12 {
		case 0, 1, 2:
			return true, true, r.Broadcast(m)
		case 3, 4:
			return true, true, q.Broadcast(m)
		case 5:
			return false, true, q.BroadcastExcept(m, pc)
		case 6, 7:
			return true, false, solo.Broadcast(m)
		case 8:
			return true, true, s.hub.Broadcast(m)
		case 9:
			return true, false, s.hub.SendTo(m, "p")
		case 10:
			return true, false, pc.Send(m)
		}
		return true, true, r.SendTo(m, "p", "reader")
	})
	for _, rm := range []*wsroom.Room{r, q, solo} {
		if err := rm.Broadcast(parkPayload("live-" + rm.Name())); err != nil {
			t.Fatal(err)
		}
	}
	readTags(t, "paused", paused, []string{"live-r", "live-q", "live-solo"})
	readTags(t, "reader", reader, []string{"live-r", "live-q"})
}

// parkBoundSetup starts a parkServer with opts (a queue bound of 256 KiB
// if they set none), with a reader and n paused clients (user "s") in
// rooms.
func parkBoundSetup(t *testing.T, opts wsroom.Options, n int, rooms ...string) (*server, *wstest.Conn, []*wstest.Conn) {
	if opts.SendQueueBytes == 0 {
		opts.SendQueueBytes = 256 << 10
	}
	st := newStash()
	s := newServer(t, parkOptions(st, opts))
	in := strings.Join(rooms, "&room=")
	reader := wstest.Dial(t, s.url+"?n=reader&u=reader&room="+in, nil)
	var stalled []*wstest.Conn
	for i := range n {
		c, _ := pausedClient(t, s, st, "s"+strconv.Itoa(i), "s", in)
		stalled = append(stalled, c)
	}
	return s, reader, stalled
}

// TestParkedManyRoomsBound: stalled clients in two rooms are closed at
// their bound, counted over both rooms' backlogs: not before (sends that
// keep what each could hold under the bound close none, whichever room
// they go to, in runs of one room and then the other), and once it is
// passed (every one closed 1008, having been parked), and not much later.
//   - "bytes": 256 KiB and 1 KiB messages (about 1.1 KiB each against
//     the bound): 200 sent close none; 300 close all (here they closed
//     by 240–255; a bound counted per backlog instead, tried by changing
//     allotLocked, closed none by 300 in 6 runs of 6).
//   - "messages": 550 messages of 200 bytes (about 236 bytes each): 540
//     close none and fill a queue past parkBytes (64 KiB, 278 of them)
//     even if the kernel took 60 KiB; 1,000 close all (here by 650–720:
//     the kernel takes more small messages), while their queues and
//     backlogs hold less than 236 KiB of the 256, so only the message
//     bound can have closed them. The byte shares' reviews check the
//     message bound too, so a per-backlog message bound alone would not
//     be told apart here.
func TestParkedManyRoomsBound(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		testParkedManyRoomsBound(t, wsroom.Options{}, 1024, 200, 300)
	})
	t.Run("messages", func(t *testing.T) {
		testParkedManyRoomsBound(t, wsroom.Options{SendQueueMessages: 550}, 200, 540, 1000)
	})
}

func testParkedManyRoomsBound(t *testing.T, opts wsroom.Options, size, under, total int) {
	s, reader, stalled := parkBoundSetup(t, opts, 4, "a", "b")
	a, b := s.hub.Room("a"), s.hub.Room("b")
	var want []string
	send := func(i int) {
		t.Helper()
		tag := strconv.Itoa(i)
		rm := a
		if (i/40)%2 == 1 {
			rm = b // runs of 40 in each room
		}
		if err := rm.Broadcast(wsroom.Text(tag + ":" + strings.Repeat("x", size-len(tag)-1))); err != nil {
			t.Fatal(err)
		}
		want = append(want, tag)
		if i%20 == 19 {
			readTags(t, "reader", reader, want)
			want = want[:0]
		}
	}
	for i := range under {
		send(i)
	}
	if st := s.hub.Stats(); st.SlowConsumerCloses != 0 || st.Parked != len(stalled) {
		t.Fatalf("after %d messages of %d bytes for each stalled client: %d slow-consumer closes, %d parked; want none closed, all %d parked",
			under, size, st.SlowConsumerCloses, st.Parked, len(stalled))
	}
	for i := under; i < total; i++ {
		send(i)
	}
	readTags(t, "reader", reader, want)
	if st := s.hub.Stats(); st.SlowConsumerCloses != uint64(len(stalled)) {
		t.Fatalf("after %d messages for each stalled client: %d slow-consumer closes; want %d", total, st.SlowConsumerCloses, len(stalled))
	}
	for i, c := range stalled {
		drainTags(t, fmt.Sprintf("stalled %d", i), c, total)
	}
	wstest.WaitFor(t, "the stalled connections to leave", func() bool { return a.Len() == 1 && b.Len() == 1 })
	if p := s.hub.Stats().Parked; p != 0 {
		t.Errorf("%d connections still parked after the stalled ones left", p)
	}
}

// TestParkedJoinLeaveClose: membership changes and closes of a parked
// connection keep what was sent before them, in order.
//   - Joining a second room unparks it at once; it gets the first room's
//     backlog before anything of the second.
//   - Leaving its room: it gets what the room sent before, not after.
//   - Close: it gets everything sent before the close frame.
func TestParkedJoinLeaveClose(t *testing.T) {
	s, st := parkServer(t)
	room, other := s.hub.Room("r"), s.hub.Room("r2")
	joiner, jc := pausedClient(t, s, st, "joiner", "j", "r")
	leaver, lc := pausedClient(t, s, st, "leaver", "l", "r")
	closer, cc := pausedClient(t, s, st, "closer", "c", "r")

	var before []string
	for i := range 600 {
		tag := "b" + strconv.Itoa(i)
		if err := room.Broadcast(parkPayload(tag)); err != nil {
			t.Fatal(err)
		}
		before = append(before, tag)
	}
	waitParked(t, s, 3)
	if err := jc.Join("r2"); err != nil {
		t.Fatal(err)
	}
	if p := s.hub.Stats().Parked; p != 2 {
		t.Fatalf("after a parked connection joined a second room: %d parked, want 2", p)
	}
	if err := lc.Leave("r"); err != nil {
		t.Fatal(err)
	}
	if p := s.hub.Stats().Parked; p != 1 {
		t.Fatalf("after a parked connection left its room: %d parked, want 1", p)
	}
	if err := other.Broadcast(parkPayload("r2")); err != nil {
		t.Fatal(err)
	}
	if err := room.Broadcast(parkPayload("after")); err != nil {
		t.Fatal(err)
	}
	if err := cc.Close(4000, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := room.Broadcast(parkPayload("closed")); err != nil {
		t.Fatal(err)
	}
	if err := lc.Send(parkPayload("fence")); err != nil {
		t.Fatal(err)
	}

	readTags(t, "joiner", joiner, append(append([]string(nil), before...), "r2", "after", "closed"))
	readTags(t, "leaver", leaver, append(append([]string(nil), before...), "fence"))
	readTags(t, "closer", closer, append(append([]string(nil), before...), "after"))
	var ce *wstest.CloseError
	if _, _, err := closer.ReadMessage(); !errors.As(err, &ce) || ce.Code != 4000 || ce.Reason != "bye" {
		t.Fatalf("closer: after its messages: %v, want the close frame 4000 \"bye\"", err)
	}
	if n := s.hub.Stats().SlowConsumerCloses; n != 0 {
		t.Fatalf("%d slow-consumer closes, want 0", n)
	}
}

// TestParkedBound: parked connections that never read are closed 1008
// once what their room's backlog holds for them, with their queue and
// the writer's batch, would pass SendQueueBytes; the backlog then holds
// nothing for them, and a member that reads gets everything.
func TestParkedBound(t *testing.T) {
	s, reader, stalled := parkBoundSetup(t, wsroom.Options{}, 5, "r")
	room := s.hub.Room("r")
	var want []string
	for i := range 2000 { // 2 MiB: several times the bound
		tag := strconv.Itoa(i)
		if err := room.Broadcast(parkPayload(tag)); err != nil {
			t.Fatal(err)
		}
		want = append(want, tag)
		if i%50 == 49 {
			readTags(t, "reader", reader, want)
			want = want[:0]
		}
	}
	readTags(t, "reader", reader, want)
	// A slow consumer is closed during the send that passes its bound.
	if st := s.hub.Stats(); st.SlowConsumerCloses != 5 || st.Parks < 5 {
		t.Fatalf("after the sends: %d slow-consumer closes, %d parks; want 5 closes of parked connections",
			st.SlowConsumerCloses, st.Parks)
	}
	for i, c := range stalled {
		// What reached the socket, then the close: its bound was reached
		// well before the 2,000 messages (about 250 fit).
		drainTags(t, fmt.Sprintf("stalled %d", i), c, 2000)
	}
	wstest.WaitFor(t, "the stalled connections to leave", func() bool { return room.Len() == 1 })
	if p := s.hub.Stats().Parked; p != 0 {
		t.Errorf("%d connections still parked after the stalled ones left", p)
	}
}

// TestParkedForms: members that negotiated different compression
// settings (none, the full window, a 512-byte window) park in one room,
// whose backlog then keeps a frame form for each; a member joining after
// a form's first use parks too. Each gets every broadcast, in order, in
// its own form (compressed above the threshold, inflating to the payload).
func TestParkedForms(t *testing.T) {
	st := newStash()
	s := newServer(t, parkOptions(st, wsroom.Options{Compression: wsroom.CompressionOptions{Enabled: true}}))
	room := s.hub.Room("r")
	kinds := []struct {
		name, offer string
		compressed  bool
	}{
		{"plain", "", false},
		{"full", "permessage-deflate; client_max_window_bits", true},
		{"window9", "permessage-deflate; server_max_window_bits=9", true},
	}
	type member struct {
		c          *wstest.Conn
		compressed bool
		from       int // the first message it is to get
	}
	var members []member
	join := func(i, from int) {
		k := kinds[i%len(kinds)]
		var extra []string
		if k.offer != "" {
			extra = []string{"Sec-WebSocket-Extensions", k.offer}
		}
		c, _ := pausedClient(t, s, st, k.name+strconv.Itoa(i), "u", "r", extra...)
		members = append(members, member{c, k.compressed, from})
	}
	payload := func(i int) []byte {
		return append([]byte(strconv.Itoa(i)+":"), jsonDoc(2048)...)
	}
	const n = 1500 // well past parkBytes for every member, within SendQueueBytes
	for i := range 2 * len(kinds) {
		join(i, 0)
	}
	for i := range n {
		if i == n/2 {
			for j := range len(kinds) {
				join(len(members)+j, i) // a form already in the backlog, and ones that are not
			}
		}
		if err := room.Broadcast(wsroom.Text(string(payload(i)))); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.hub.Stats(); st.Parks < uint64(len(members)) || st.SlowConsumerCloses != 0 {
		t.Fatalf("%d parks for %d paused members, %d slow-consumer closes; want each parked, none closed",
			st.Parks, len(members), st.SlowConsumerCloses)
	}
	for mi, m := range members {
		m.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := m.from; i < n; i++ {
			f, err := m.c.ReadFrame()
			if err != nil {
				t.Fatalf("member %d, message %d: %v", mi, i, err)
			}
			got := f.Payload
			if m.compressed {
				if f.RSV != wstest.RSV1 {
					t.Fatalf("member %d, message %d: an uncompressed frame to a compressing member", mi, i)
				}
				got = inflate(t, got)
			} else if f.RSV != 0 {
				t.Fatalf("member %d, message %d: a compressed frame to a plain member", mi, i)
			}
			if want := payload(i); !bytes.Equal(got, want) {
				t.Fatalf("member %d: message %d is %.12q…, want %.12q… (lost, duplicated, out of order or in another form)", mi, i, got, want)
			}
		}
	}
}

// TestParkedConcurrent: senders on several goroutines send room and
// hub-wide broadcasts, user sends and Conn.Sends while clients that read
// in bursts with pauses park and unpark, and another goroutine makes them
// join and leave a second room (which unparks them). Every client must
// get every broadcast and every message sent to it, once, each sender's
// in the order sent — and nothing may deadlock (run it with -race). In
// "two rooms" the clients are in rooms "r" and "q", and the senders send
// to both: a parked client merges the two rooms' backlogs and the hub's,
// and must still get each sender's messages in the order sent.
func TestParkedConcurrent(t *testing.T) {
	t.Run("one room", func(t *testing.T) { testParkedConcurrent(t, "r") })
	t.Run("two rooms", func(t *testing.T) { testParkedConcurrent(t, "r", "q") })
}

func testParkedConcurrent(t *testing.T, rooms ...string) {
	const (
		clients = 6
		senders = 4
		each    = 1200 // messages per sender
		size    = 512
	)
	st := newStash()
	s := newServer(t, parkOptions(st, wsroom.Options{}))
	var cls []*wstest.Conn
	var conns []*wsroom.Conn
	for i := range clients {
		name := "c" + strconv.Itoa(i)
		c, wc := pausedClient(t, s, st, name, name, strings.Join(rooms, "&room="))
		cls, conns = append(cls, c), append(conns, wc)
	}
	// What each client must get from each sender: the sequence numbers.
	want := make([][senders][]int, clients)
	var wg sync.WaitGroup
	for sd := range senders {
		rng := rand.New(rand.NewPCG(uint64(sd), 3))
		plan := make([]int, each) // -1: a room, -2: hub, else a client
		for n := range plan {
			switch k := rng.IntN(10); {
			case k < 6:
				plan[n] = -1
			case k < 7:
				plan[n] = -2
			default:
				plan[n] = rng.IntN(clients)
			}
			for ci := range clients {
				if plan[n] < 0 || plan[n] == ci {
					want[ci][sd] = append(want[ci][sd], n)
				}
			}
		}
		wg.Go(func() {
			pad := strings.Repeat("x", size)
			for n, to := range plan {
				m := wsroom.Text(fmt.Sprintf("%d:%d:%s", sd, n, pad))
				var err error
				switch {
				case to == -1:
					err = s.hub.Room(rooms[n%len(rooms)]).Broadcast(m)
				case to == -2:
					err = s.hub.Broadcast(m)
				case n%2 == 0:
					err = s.hub.SendTo(m, "c"+strconv.Itoa(to))
				default:
					err = conns[to].Send(m)
				}
				if err != nil {
					t.Errorf("sender %d, message %d: %v", sd, n, err)
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c := conns[i%clients]
			if err := c.Join("r2"); err != nil {
				t.Errorf("Join: %v", err)
				return
			}
			if err := c.Leave("r2"); err != nil {
				t.Errorf("Leave: %v", err)
				return
			}
			runtime.Gosched()
		}
	})
	g := wstest.Go(t, cls, func(ci int, c *wstest.Conn) error {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		got := [senders]int{}
		for read := 0; ; read++ {
			if read%200 == 199 && ci%2 == 0 {
				time.Sleep(5 * time.Millisecond) // a reader that pauses: it parks
			}
			_, b, err := c.NextMessage()
			if err != nil {
				return fmt.Errorf("client %d after %d messages: %w", ci, read, err)
			}
			if string(b) == "end" {
				break
			}
			var sd, n int
			if _, err := fmt.Sscanf(string(b), "%d:%d:", &sd, &n); err != nil || sd < 0 || sd >= senders {
				return fmt.Errorf("client %d: message %.20q", ci, b)
			}
			w := want[ci][sd]
			if got[sd] >= len(w) || w[got[sd]] != n {
				return fmt.Errorf("client %d: from sender %d got %d after %d of its messages, want %v (lost, duplicated or out of order)",
					ci, sd, n, got[sd], w[got[sd]:min(got[sd]+3, len(w))])
			}
			got[sd]++
		}
		for sd := range senders {
			if got[sd] != len(want[ci][sd]) {
				return fmt.Errorf("client %d: %d of sender %d's %d messages", ci, got[sd], sd, len(want[ci][sd]))
			}
		}
		return nil
	})
	wg.Wait()
	close(stop)
	churn.Wait()
	for _, c := range conns {
		if err := c.Send(wsroom.Text("end")); err != nil {
			t.Fatalf("Send(end): %v", err)
		}
	}
	g.Wait(t, "clients")
	st2 := s.hub.Stats()
	t.Logf("%d parks, %d slow-consumer closes", st2.Parks, st2.SlowConsumerCloses)
	if st2.Parks == 0 || st2.SlowConsumerCloses != 0 {
		t.Errorf("%d parks, %d slow-consumer closes; want parking exercised and no close", st2.Parks, st2.SlowConsumerCloses)
	}
}
