package wsroom_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/wsroom/wsroom"
)

// BenchmarkHistoryBroadcast compares a room broadcast with and without
// history on one node, end to end (every subscriber has read it), as
// BenchmarkRoomBroadcast does: what keeping history costs a publisher.
func BenchmarkHistoryBroadcast(b *testing.B) {
	for _, subs := range []int{1, 100} {
		for _, keep := range []bool{false, true} {
			b.Run(fmt.Sprintf("subscribers=%d/history=%v", subs, keep), func(b *testing.B) {
				var opts wsroom.Options
				if keep {
					opts.History = func(string) wsroom.History { return wsroom.History{Messages: 1000} }
				}
				benchBroadcast(b, benchHubWith(b, opts), subs)
			})
		}
	}
}

// BenchmarkHistoryMemory reports the heap a room's history holds per kept
// message, beyond its payload, for several payload sizes: it fills a
// history of `kept` messages (and the room's ring), forces a collection
// and divides the heap's growth. The figure includes the frame's header
// and the allocator's rounding of the frame to its size class.
func BenchmarkHistoryMemory(b *testing.B) {
	const kept = 20000
	for _, size := range []int{64, 100, 1024, 4096} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			msg := wsroom.Binary(make([]byte, size))
			var overhead float64
			for range b.N { // a fresh hub each time: a full history stops growing
				hub := newHub(wsroom.Options{History: func(string) wsroom.History {
					return wsroom.History{Messages: kept, Bytes: kept * size}
				}})
				room := hub.Room("r")
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for range kept {
					if err := room.Broadcast(msg); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				overhead = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/kept - float64(size)
				if n := wsroom.HistoryLen(hub, "r"); n != kept {
					b.Fatalf("the history keeps %d messages, want %d", n, kept)
				}
				hub.Shutdown(b.Context())
			}
			b.ReportMetric(overhead, "B/kept-msg-beyond-payload")
		})
	}
}
