package redisbroker_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// TestRoomPresenceDelta: a kept room changed between queries by random
// SetPresence calls from three brokers at once, by a dead node's
// cleanup, by a node leaving, by bursts longer than the room's change
// log and (on one Redis) by Redis losing its data: every answer of a
// broker that keeps rooms equals a whole read by one that keeps none,
// which equals what the writers set; answers after small changes come
// from the change log, those after a burst or a lost log from a whole
// read.
func TestRoomPresenceDelta(t *testing.T) {
	t.Run("OneRedis", func(t *testing.T) {
		srv := redistest.Start(t)
		roomPresenceDelta(t, redisbroker.Options{Addrs: []string{srv.Addr}}, []string{srv.Addr}, srv)
	})
	t.Run("Cluster", func(t *testing.T) {
		addrs := redistest.StartCluster(t, 3).Addrs()
		roomPresenceDelta(t, redisbroker.Options{Addrs: addrs[:1], Cluster: true}, addrs, nil)
	})
}

// deltaRoom is the room of roomPresenceDelta, with the brokers that
// change and read it and what the writers set.
type deltaRoom struct {
	t       *testing.T
	addrs   []string // the Redis servers
	rng     *rand.Rand
	q, ref  *redisbroker.Broker   // keeps rooms (PresenceCacheMin 2), keeps none
	writers []*redisbroker.Broker // a, b, c
	counts  []map[string]int      // per writer: user → count
	buf     []wsroom.Presence     // AppendRoomPresence's, reused from check to check
}

const deltaRoomName = "delta"

func roomPresenceDelta(t *testing.T, bo redisbroker.Options, addrs []string, srv *redistest.Server) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	start := func(name string, cacheMin int) *redisbroker.Broker {
		o := bo
		o.Logger, o.PresenceCacheMin = quietLogger(), cacheMin
		b := redisbroker.New(o)
		b.Start(func(string, []byte) {})
		b.StartPresence(name, testTTL, nil)
		t.Cleanup(func() { b.Close() })
		return b
	}
	r := &deltaRoom{t: t, addrs: addrs, rng: rand.New(rand.NewPCG(seed, 1)), q: start("q", 2), ref: start("ref", -1)}
	for _, name := range []string{"a", "b", "c"} {
		r.writers = append(r.writers, start(name, 0))
		r.counts = append(r.counts, map[string]int{})
	}
	for i := range 150 { // a room of 150, whose log keeps 37 entries
		r.set(r.rng.IntN(3), fmt.Sprintf("u%03d", i), 1+r.rng.IntN(2), nil)
	}
	r.check("first read", "whole")
	r.rounds(30)
	for range 2 { // more changes than the log keeps
		for range 80 {
			r.randomSet(r.rng.IntN(3))
		}
		r.check("after a burst", "whole")
		r.rounds(3)
	}

	// A node dies with 10 users in the room: its cleanup (one script)
	// changes 10 members at one version. Then changes of one user trim
	// the log in the middle of the cleanup's entries: the kept answer,
	// from before the cleanup, cannot be brought up to date.
	dead := start("dead", 0)
	r.nodeUsers(dead, "dead", 10)
	r.check("dead node's users in", "delta")
	dead.Close()
	waitUntil(t, "the dead node's presence removed", func() bool {
		p, err := r.ref.RoomPresence(context.Background(), deltaRoomName)
		return err == nil && !strings.Contains(fmt.Sprint(p), "dead")
	})
	for i := 0; ; i++ {
		// The log starts with some of the cleanup's 10 entries, not all.
		if r.logEntryOf(0, "dead") && !r.logEntryOf(9, "dead") {
			break
		}
		if i == 400 {
			t.Fatal("the log was never trimmed inside the cleanup's entries")
		}
		r.set(0, "t", 1+i%2, nil)
	}
	r.check("dead node cleaned up, log trimmed", "whole")
	r.rounds(5)

	// A node with n users leaves (LeavePresence): with 10, the changes of
	// its cleanup come from the log; with 60, more than the log keeps,
	// the cleanup deletes it.
	for _, c := range []struct {
		name     string
		n        int
		in, left string
	}{{"small", 10, "delta", "delta"}, {"leaving", 60, "any", "whole"}} {
		b := start(c.name, 0)
		r.nodeUsers(b, c.name, c.n)
		r.check(c.name+" node's users in", c.in)
		if _, err := b.LeavePresence(context.Background()); err != nil {
			t.Fatal(err)
		}
		r.check(c.name+" node left", c.left)
		r.rounds(3)
	}

	if srv != nil {
		srv.Stop()
		srv.Restart()
		waitUntil(t, "the writers' presence written again", func() bool { return r.refText() == r.want() })
		r.check("Redis lost its data", "whole")
		r.rounds(10)
	}
}

// command runs a Redis command on the server that has the room's keys.
func (r *deltaRoom) command(args ...string) (string, error) {
	var err error
	for _, a := range r.addrs {
		var s string
		if s, err = redistest.Command(a, args...); err == nil {
			return s, nil
		}
	}
	return "", err
}

// logEntryOf reports whether the room's change log's i-th entry
// ("<prev> <version> <member>") is of a user whose ID starts with prefix.
func (r *deltaRoom) logEntryOf(i int, prefix string) bool {
	e, err := r.command("LINDEX", r.q.PresenceLogKey(deltaRoomName), strconv.Itoa(i))
	if err != nil {
		r.t.Fatal(err)
	}
	f := strings.SplitN(e, " ", 3)
	return len(f) == 3 && strings.HasPrefix(f[2], prefix)
}

// set sets writer w's count of user, in Redis and in r.counts.
func (r *deltaRoom) set(w int, user string, count int, info []byte) {
	r.t.Helper()
	if _, err := r.writers[w].SetPresence(context.Background(), deltaRoomName, user, count, info); err != nil {
		r.t.Fatalf("SetPresence: %v", err)
	}
	r.counts[w][user] = count
}

// nodeUsers has n users prefix0… enter the room on b (not a writer).
func (r *deltaRoom) nodeUsers(b *redisbroker.Broker, prefix string, n int) {
	r.t.Helper()
	for i := range n {
		if _, err := b.SetPresence(context.Background(), deltaRoomName, prefix+strconv.Itoa(i), 1, []byte(prefix)); err != nil {
			r.t.Fatalf("SetPresence: %v", err)
		}
	}
}

func (r *deltaRoom) randomSet(w int) {
	r.set(w, fmt.Sprintf("u%03d", r.rng.IntN(200)), r.rng.IntN(4), r.randomInfo())
}

// randomInfo is nil (keep the user's) half of the time.
func (r *deltaRoom) randomInfo() []byte {
	if r.rng.IntN(2) == 0 {
		return nil
	}
	return []byte("i" + strconv.Itoa(r.rng.IntN(100)))
}

// rounds makes n rounds of 0 to 12 random changes, up to 4 per writer,
// the three writers at once, each followed by a query answered from the
// kept room or its changes.
func (r *deltaRoom) rounds(n int) {
	r.t.Helper()
	type op struct {
		user  string
		count int
		info  []byte
	}
	for range n {
		ops := make([][]op, len(r.writers))
		for w := range ops {
			for range r.rng.IntN(5) {
				ops[w] = append(ops[w], op{fmt.Sprintf("u%03d", r.rng.IntN(200)), r.rng.IntN(4), r.randomInfo()})
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, len(r.writers))
		for w, b := range r.writers {
			wg.Go(func() {
				for _, o := range ops[w] {
					if _, err := b.SetPresence(context.Background(), deltaRoomName, o.user, o.count, o.info); err != nil {
						errs[w] = err
						return
					}
				}
			})
		}
		wg.Wait()
		for w := range ops {
			if errs[w] != nil {
				r.t.Fatalf("SetPresence: %v", errs[w])
			}
			for _, o := range ops[w] {
				r.counts[w][o.user] = o.count
			}
		}
		r.check("random changes", "kept")
	}
}

// check queries the room from r.q and r.ref and fails unless both
// answer the same, r.ref what the writers set (for their users), and
// r.q answered as how says: "whole" (a whole read), "delta" (from the
// change log), "kept" (from the kept answer or its changes) or "any".
func (r *deltaRoom) check(what, how string) {
	r.t.Helper()
	ctx := context.Background()
	hits, deltas := r.q.Stats().PresenceHits, r.q.Stats().PresenceDeltas
	got, err := r.q.RoomPresence(ctx, deltaRoomName)
	if err != nil {
		r.t.Fatalf("%s: RoomPresence: %v", what, err)
	}
	dh, dd := r.q.Stats().PresenceHits-hits, r.q.Stats().PresenceDeltas-deltas
	want, err := r.ref.RoomPresence(ctx, deltaRoomName)
	if err != nil {
		r.t.Fatalf("%s: RoomPresence: %v", what, err)
	}
	if d := presenceDiff(got, want); d != "" {
		r.t.Fatalf("%s: the broker that keeps rooms answered (%d from the kept answer, %d from changes) %d users, the one that keeps none %d: %s", what, dh, dd, len(got), len(want), d)
	}
	if s, w := usersText(got, "u"), r.want(); s != w {
		r.t.Fatalf("%s: presence of the writers' users\n%s\nwant\n%s", what, s, w)
	}
	if len(got) < 100 {
		r.t.Fatalf("%s: %d users: the room is too small for this test", what, len(got))
	}
	ok := true
	switch how {
	case "whole":
		ok = dh == 0 && dd == 0
	case "delta":
		ok = dh == 0 && dd == 1
	case "kept":
		ok = dh+dd == 1
	}
	if !ok {
		r.t.Fatalf("%s: %d answers from the kept answer and %d from changes; want %s", what, dh, dd, how)
	}
	// AppendRoomPresence, into the last answer's slice after one entry,
	// answers the same.
	r.buf = append(r.buf[:0], wsroom.Presence{UserID: "-"})
	if r.buf, err = r.q.AppendRoomPresence(ctx, r.buf, deltaRoomName); err != nil {
		r.t.Fatalf("%s: AppendRoomPresence: %v", what, err)
	}
	if r.buf[0].UserID != "-" {
		r.t.Fatalf("%s: AppendRoomPresence overwrote dst's entry: %v", what, r.buf[0])
	}
	if d := presenceDiff(r.buf[1:], want); d != "" {
		r.t.Fatalf("%s: AppendRoomPresence answered %d users, RoomPresence of the broker that keeps none %d: %s", what, len(r.buf)-1, len(want), d)
	}
	// What the caller does with its answer does not reach the next.
	for i := range got {
		got[i].UserID, got[i].Conns = "changed", -1
		if len(got[i].Info) > 0 {
			got[i].Info[0] = '!'
		}
	}
}

// want returns the writers' users as presenceText shows them.
func (r *deltaRoom) want() string {
	total := map[string]int{}
	for _, c := range r.counts {
		for u, n := range c {
			total[u] += n
		}
	}
	var p []wsroom.Presence
	for u, n := range total {
		if n > 0 {
			p = append(p, wsroom.Presence{UserID: u, Conns: n})
		}
	}
	slices.SortFunc(p, func(x, y wsroom.Presence) int { return strings.Compare(x.UserID, y.UserID) })
	return usersText(p, "u")
}

func (r *deltaRoom) refText() string {
	p, err := r.ref.RoomPresence(context.Background(), deltaRoomName)
	if err != nil {
		return "error: " + err.Error()
	}
	return usersText(p, "u")
}

// presenceText shows the users whose ID starts with prefix as
// "user:conns …".
func usersText(p []wsroom.Presence, prefix string) string {
	var s []string
	for _, e := range p {
		if strings.HasPrefix(e.UserID, prefix) {
			s = append(s, e.UserID+":"+strconv.Itoa(e.Conns))
		}
	}
	return strings.Join(s, " ")
}

// presenceDiff describes the first difference between x and y ("" if
// none).
func presenceDiff(x, y []wsroom.Presence) string {
	for i := range max(len(x), len(y)) {
		if i >= len(x) || i >= len(y) || x[i].UserID != y[i].UserID || x[i].Conns != y[i].Conns || !bytes.Equal(x[i].Info, y[i].Info) {
			at := func(p []wsroom.Presence) string {
				if i >= len(p) {
					return "nothing"
				}
				return fmt.Sprintf("%s:%d:%q", p[i].UserID, p[i].Conns, p[i].Info)
			}
			return fmt.Sprintf("at %d, %s instead of %s", i, at(x), at(y))
		}
	}
	return ""
}
