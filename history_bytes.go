package wsroom

// The bytes of a room's history: its payloads end to end in a queue of
// chunks, so that a kept message costs its payload and no allocation of
// its own (a frame of its own would be rounded up to its allocator size
// class: up to 18% more, 764 bytes for a 4 KiB payload).

// Chunk sizes: a thirty-second of the bytes kept, rounded up to a power of
// two, within these bounds. The two partly used chunks (the oldest and the
// newest) waste about one chunk between them: at most a sixteenth of what
// a large history keeps, and under 1 KiB in a small one. Smaller chunks
// would cost more in their own records (32 bytes each).
const (
	histChunkMin = 512
	histChunkMax = 64 << 10
)

// histBytes is a FIFO of bytes: payloads are pushed at the end and
// dropped from the start, in the order they were pushed. A payload may
// span chunks. Positions are counted from the first byte ever pushed.
// The zero value is empty and ready to use. Not safe for concurrent use
// (the history's mutex guards it).
type histBytes struct {
	chunks []histChunk // oldest first
	head   uint64      // position of the oldest byte kept
	end    uint64      // position after the newest byte
}

// histChunk is a chunk of the queue and the position of its first byte.
type histChunk struct {
	at uint64
	b  []byte // len: bytes written, cap: the chunk's size
}

// push appends p.
func (q *histBytes) push(p []byte) {
	for len(p) > 0 {
		last := len(q.chunks) - 1
		if last < 0 || len(q.chunks[last].b) == cap(q.chunks[last].b) {
			q.chunks = append(q.chunks, histChunk{at: q.end, b: make([]byte, 0, q.chunkSize())})
			last++
		}
		c := &q.chunks[last]
		n := min(len(p), cap(c.b)-len(c.b))
		c.b = append(c.b, p[:n]...)
		p = p[n:]
		q.end += uint64(n)
	}
}

// chunkSize is the size of the next chunk: a thirty-second of the bytes kept,
// rounded up to a power of two (an allocator size class) within
// [histChunkMin, histChunkMax].
func (q *histBytes) chunkSize() int {
	n := histChunkMin
	for n < histChunkMax && uint64(n) < (q.end-q.head)/32 {
		n *= 2
	}
	return n
}

// drop forgets the oldest n bytes, and the chunks that held only them.
func (q *histBytes) drop(n int) {
	q.head += uint64(n)
	if q.head == q.end {
		// Empty: keep no chunk (an idle room's history holds nothing).
		clear(q.chunks)
		q.chunks = q.chunks[:0]
		return
	}
	k := 0
	for k < len(q.chunks) && q.chunks[k].at+uint64(cap(q.chunks[k].b)) <= q.head {
		k++
	}
	if k == 0 {
		return
	}
	clear(q.chunks[:k])
	q.chunks = q.chunks[k:]
}

// read returns the n bytes from position at, which the queue holds: a
// slice of a chunk when they lie in one, a copy when they span several.
// The slice is valid until the queue's next change.
func (q *histBytes) read(at uint64, n int) []byte {
	if n == 0 {
		return nil
	}
	// The chunk holding at: the last one starting at or before it.
	lo, hi := 0, len(q.chunks)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if q.chunks[mid].at <= at {
			lo = mid
		} else {
			hi = mid
		}
	}
	c := q.chunks[lo]
	i := int(at - c.at)
	if i+n <= len(c.b) {
		return c.b[i : i+n : i+n]
	}
	out := make([]byte, 0, n)
	for k := lo; len(out) < n; k++ {
		c := q.chunks[k]
		out = append(out, c.b[i:min(len(c.b), i+n-len(out))]...)
		i = 0
	}
	return out
}
