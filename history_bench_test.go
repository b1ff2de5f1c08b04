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
// message, beyond its payload, for several payload sizes: in one room
// keeping 20,000 messages and in 1,000 rooms keeping 10 each. It
// broadcasts twice what the histories keep (so that they are full and
// turning over), forces a collection and divides the heap's growth by the
// messages kept. The figure includes everything a history holds: its
// ring of entries and its chunks of payload bytes.
func BenchmarkHistoryMemory(b *testing.B) {
	for _, shape := range []struct{ rooms, kept int }{{1, 20000}, {1000, 10}} {
		for _, size := range []int{64, 100, 1024, 4096} {
			b.Run(fmt.Sprintf("rooms=%d/kept=%d/payload=%d", shape.rooms, shape.kept, size), func(b *testing.B) {
				msg := wsroom.Binary(make([]byte, size))
				var overhead float64
				for range b.N { // a fresh hub each time: a full history stops growing
					hub := newHub(wsroom.Options{History: func(string) wsroom.History {
						return wsroom.History{Messages: shape.kept, Bytes: shape.kept * size}
					}})
					rooms := make([]*wsroom.Room, shape.rooms)
					for i := range rooms {
						rooms[i] = hub.Room(fmt.Sprintf("r%d", i))
					}
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					for range 2 * shape.kept {
						for _, room := range rooms {
							if err := room.Broadcast(msg); err != nil {
								b.Fatal(err)
							}
						}
					}
					runtime.GC()
					runtime.ReadMemStats(&after)
					kept := shape.rooms * shape.kept
					overhead = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(kept) - float64(size)
					for _, room := range rooms {
						if n := wsroom.HistoryLen(hub, room.Name()); n != shape.kept {
							b.Fatalf("the history keeps %d messages, want %d", n, shape.kept)
						}
					}
					hub.Shutdown(b.Context())
				}
				b.ReportMetric(overhead, "B/kept-msg-beyond-payload")
			})
		}
	}
}
