package wsroom

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestHistBytes pushes and drops payloads of random sizes (some larger
// than a chunk) and checks every kept payload reads back as pushed, and
// that the chunks hold no more than the kept bytes and two chunks.
func TestHistBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q histBytes
	type kept struct {
		at uint64
		p  []byte
	}
	var live []kept
	liveBytes := 0
	for step := range 20000 {
		if len(live) == 0 || rng.IntN(100) < 55 {
			n := rng.IntN(3000)
			if rng.IntN(50) == 0 {
				n = rng.IntN(3 * histChunkMax)
			}
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			live = append(live, kept{q.end, p})
			liveBytes += n
			q.push(p)
		} else {
			q.drop(len(live[0].p))
			liveBytes -= len(live[0].p)
			live = live[1:]
		}
		if q.end-q.head != uint64(liveBytes) {
			t.Fatalf("step %d: the queue holds %d bytes, want %d", step, q.end-q.head, liveBytes)
		}
		held := 0
		for _, c := range q.chunks {
			held += cap(c.b)
		}
		if held > liveBytes+2*histChunkMax {
			t.Fatalf("step %d: chunks hold %d bytes for %d kept", step, held, liveBytes)
		}
		if liveBytes == 0 && len(q.chunks) != 0 {
			t.Fatalf("step %d: empty, but %d chunks kept", step, len(q.chunks))
		}
		if step%97 == 0 {
			for i, k := range live {
				if got := q.read(k.at, len(k.p)); !bytes.Equal(got, k.p) {
					t.Fatalf("step %d: payload %d of %d (%d bytes at %d) reads back wrong", step, i, len(live), len(k.p), k.at)
				}
			}
		}
	}
	q.drop(int(q.end - q.head))
	if q.end != q.head || len(q.chunks) != 0 {
		t.Fatalf("after dropping everything: head %d, end %d, %d chunks", q.head, q.end, len(q.chunks))
	}
}
