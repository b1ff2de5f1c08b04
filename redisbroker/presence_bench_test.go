package redisbroker_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// BenchmarkRoomPresence: RoomPresence of a room of 10,000 users on one
// broker, one query at a time, the room unchanged between queries or
// changed before each (by another broker, untimed): either way one
// script returns the room's version and its changes since the kept
// answer, applied to it; internal/presencebench measures it through
// three Hubs in three processes:
//
//	go test -run '^$' -bench RoomPresence -benchtime 300x .
func BenchmarkRoomPresence(b *testing.B) {
	srv := redistest.Start(b)
	start := func(name string) *redisbroker.Broker {
		br := redisbroker.New(redisbroker.Options{Addrs: []string{srv.Addr}, Logger: quietLogger()})
		br.Start(func(string, []byte) {})
		br.StartPresence(name, 10*time.Second, nil)
		b.Cleanup(func() { br.Close() })
		return br
	}
	br, other := start("bench"), start("other")
	ctx := context.Background()
	const users = 10000
	for i := range users {
		if _, err := br.SetPresence(ctx, "big", "member-"+strconv.Itoa(i), 1, nil); err != nil {
			b.Fatal(err)
		}
	}
	rk, nk := br.RoomKeys("bench", "big")
	var bytes int64
	for _, k := range []string{rk, nk} {
		s, err := redistest.Command(srv.Addr, "MEMORY", "USAGE", k, "SAMPLES", "0")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := strconv.ParseInt(strings.TrimPrefix(s, ":"), 10, 64)
		bytes += n
	}
	b.Logf("%d users of one node in a room (user IDs of 11 or 12 bytes): %d bytes in Redis, %.0f per user", users, bytes, float64(bytes)/users)
	for _, changing := range []bool{false, true} {
		name := "unchanged"
		if changing {
			name = "changing"
		}
		b.Run(name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := range b.N {
				if changing {
					b.StopTimer()
					if _, err := other.SetPresence(ctx, "big", "~churn", i%2, nil); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				t0 := time.Now()
				p, err := br.RoomPresence(ctx, "big")
				lat = append(lat, time.Since(t0))
				if err != nil || len(p) < users {
					b.Fatalf("RoomPresence: %d users, %v", len(p), err)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1e3, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1e3, "p99-ms")
		})
	}
}
