//go:build linux

package main

import (
	"context"

	"log"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/internal/benchenv"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// setPresencePart drives SetPresence directly from three brokers (in this
// process), each with several goroutines on disjoint users (as one Hub's
// updates of a user are sequential, but different users' need not be),
// so that the broker pipelines them: what the broker and Redis sustain,
// beside the Hub's one update at a time. Then presence must equal the
// truth and, per room and user, joins − leaves reported to the callers
// must be 1 if present, else 0.
func setPresencePart(r *benchenv.Report, srv *redistest.Server) {
	const workers = 16
	n := *flagCycles
	r.Line("## SetPresence from 3 brokers, %d goroutines each, no Hub\n", workers)
	type key struct{ room, user string }
	var brokers []*redisbroker.Broker
	for i := range 3 {
		b := redisbroker.New(redisbroker.Options{Addrs: []string{srv.Addr}, Logger: slog.New(slog.DiscardHandler)})
		b.Start(func(string, []byte) {})
		b.StartPresence("sp"+strconv.Itoa(i), *flagTTL, nil)
		defer b.Close()
		brokers = append(brokers, b)
	}
	var mu sync.Mutex
	final := make([]map[key]int, 3)
	balance := map[key]int{}
	var joins, leaves int
	cpu0 := benchenv.ProcCPU(srv.PID())
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, b := range brokers {
		final[i] = map[key]int{}
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(i), uint64(w)))
				ctx := context.Background()
				for range n / 3 / workers {
					// Users w, w+workers, …: this goroutine's own on this broker.
					k := key{"sr" + strconv.Itoa(rng.IntN(*flagRooms)), "su" + strconv.Itoa(w+workers*rng.IntN(max(*flagUsers/workers, 1)))}
					count := rng.IntN(3)
					ch, err := b.SetPresence(ctx, k.room, k.user, count, nil)
					if err != nil {
						log.Fatalf("SetPresence: %v", err)
					}
					mu.Lock()
					final[i][k] = count
					switch ch {
					case wsroom.PresenceJoined:
						balance[k]++
						joins++
					case wsroom.PresenceLeft:
						balance[k]--
						leaves++
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	el := time.Since(t0)
	cpu := benchenv.ProcCPU(srv.PID()) - cpu0
	calls := n / 3 / workers * workers * 3
	truth := map[key]int{}
	for _, f := range final {
		for k, c := range f {
			truth[k] += c
		}
	}
	mismatched := 0
	for k, c := range truth {
		if want := min(c, 1); balance[k] != want {
			mismatched++
		}
	}
	wrong := 0
	for room := range *flagRooms {
		p, err := brokers[0].RoomPresence(context.Background(), "sr"+strconv.Itoa(room))
		if err != nil {
			log.Fatal(err)
		}
		got := map[string]int{}
		for _, e := range p {
			got[e.UserID] = e.Conns
		}
		for k, c := range truth {
			if k.room == "sr"+strconv.Itoa(room) && got[k.user] != c {
				wrong++
			}
		}
	}
	r.Line("%d calls in %v: **%.0f/s** over the 3 brokers; redis-server CPU %.1f µs per call. %d joins and %d leaves reported; %d (room, user) pairs whose joins − leaves differ from their end state, %d whose presence differs from the truth.\n",
		calls, el.Round(time.Millisecond), float64(calls)/el.Seconds(), float64(cpu.Microseconds())/float64(calls), joins, leaves, mismatched, wrong)
}
