package wsroom

import (
	"bytes"
	"strconv"
	"testing"
)

// queueOf queues frames (whose sizes are given) and returns the queue and
// the bytes they hold in order.
func queueOf(sizes ...int) (*frameQueue, []byte) {
	q := new(frameQueue)
	var all []byte
	for i, n := range sizes {
		f := bytes.Repeat([]byte{byte('a' + i%26)}, n)
		q.push(&f, false)
		all = append(all, f...)
	}
	return q, all
}

// queued adds up the frames' costs.
func queued(q *frameQueue) int {
	n := 0
	for ch := q.head; ch != nil; ch = ch.next {
		for _, f := range ch.frames[:ch.n] {
			n += cap(*f) + entryCost
		}
	}
	return n
}

// rest returns what the cursor has not passed yet.
func rest(cur cursor) []byte {
	var b []byte
	for ch, i, off := cur.ch, cur.i, cur.off; ch != nil; ch, i = ch.next, 0 {
		for ; i < ch.n; i++ {
			b = append(b, (*ch.frames[i])[off:]...)
			off = 0
		}
	}
	return b
}

func TestQueueAccounting(t *testing.T) {
	sizes := make([]int, 3*chunkFrames+5) // several chunks
	for i := range sizes {
		sizes[i] = i%7 + 1
	}
	q, all := queueOf(sizes...)
	if int(q.len) != len(sizes) || int(q.bytes) != queued(q) {
		t.Fatalf("queue of %d frames, %d bytes: len %d, accounted %d bytes", len(sizes), len(all), q.len, q.bytes)
	}
	q.drop()
	if q.len != 0 || q.bytes != 0 || q.head != nil {
		t.Fatalf("after drop: %+v", q)
	}
}

// TestCursorAdvance moves a cursor by every possible step over frames
// spread across chunks: what is left is always the rest of the bytes, and
// the shared frames are never modified.
func TestCursorAdvance(t *testing.T) {
	sizes := make([]int, chunkFrames+3)
	for i := range sizes {
		sizes[i] = i%5 + 1
	}
	for _, step := range []int{1, 2, 3, 7, 64, 1000} {
		q, all := queueOf(sizes...)
		orig := bytes.Clone(all)
		cur := cursor{ch: q.head}
		for pos := 0; !cur.done(); pos += step {
			if got := rest(cur); !bytes.Equal(got, all[pos:]) {
				t.Fatalf("step %d at %d: rest is %d bytes, want the %d after", step, pos, len(got), len(all)-pos)
			}
			cur.advance(min(step, len(all)-pos))
		}
		if got := rest(cursor{ch: q.head}); !bytes.Equal(got, orig) {
			t.Fatalf("step %d: the frames were modified", step)
		}
		q.drop()
	}
}

// TestPongsBounded: pongs beyond maxQueuedPongs replace the last queued
// one; the ones before it stay, in order.
func TestPongsBounded(t *testing.T) {
	h := New(Options{})
	c := &Conn{hub: h, writing: true} // a writer "runs": nothing is taken
	for i := range 1000 {
		c.enqueuePong([]byte("pong" + strconv.Itoa(i)))
	}
	var got []string
	for cur := (cursor{ch: c.q.head}); !cur.done(); cur.advance(len(*cur.ch.frames[cur.i])) {
		got = append(got, string(*cur.ch.frames[cur.i]))
	}
	if len(got) != maxQueuedPongs || got[0] != "pong0" || got[maxQueuedPongs-2] != "pong"+strconv.Itoa(maxQueuedPongs-2) || got[maxQueuedPongs-1] != "pong999" {
		t.Fatalf("after 1000 pings the queue holds %q; want the first %d and the last", got, maxQueuedPongs-1)
	}
	c.takeBatchLocked()
	c.enqueuePong([]byte("next"))
	if c.q.len != 1 || string(*c.pong) != "next" {
		t.Fatalf("a pong after the writer took the others: %d queued", c.q.len)
	}
}
