package wsroom

import (
	"sync"
	"testing"
	"time"
)

// A callback ending while the heartbeat looks at its connection must
// never look like an hour of silence: whoever sees busy cleared sees the
// lastRead that leaveCallback stored before clearing it. One goroutine
// leaves the callback while this one reads silence in a tight loop, over
// many rounds. With the two loads in silence swapped, 20 runs with -race
// here each caught the old lastRead with busy already false, in rounds
// 0-408.
func TestSilenceSeesTheCallbackEnd(t *testing.T) {
	const rounds, longAgo = 5000, int64(time.Hour)
	c := &Conn{hub: &Hub{start: time.Now()}}
	leave := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range leave {
			c.leaveCallback()
		}
	})
	defer wg.Wait()
	defer close(leave)
	for round := range rounds {
		c.lastRead.Store(c.hub.now() - 2*longAgo) // silent for two hours...
		c.enterCallback()                         // ...but inside a callback
		leave <- struct{}{}
		for {
			silent, busy := c.silence(c.hub.now())
			if busy {
				continue
			}
			if silent >= longAgo {
				t.Fatalf("round %d: busy cleared, yet silent for %v: the lastRead from before the callback", round, time.Duration(silent))
			}
			break
		}
	}
}
