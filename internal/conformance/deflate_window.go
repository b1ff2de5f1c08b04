package conformance

import (
	"errors"
	"fmt"
)

// maxBackRef walks the raw deflate data of one message (RFC 1951) and
// returns the largest back-reference distance in it, so that the runner
// can check a server_max_window_bits answer (compress/flate's reader
// accepts any distance up to 32 KiB). It decodes codes only, writes no
// output, and stops at the end of p or at a final block.
func maxBackRef(p []byte) (int, error) {
	br := &bitReader{p: p}
	maxDist := 0
	for {
		if br.left() < 3 {
			return maxDist, nil // the stripped sync flush ends the data
		}
		final := br.bits(1)
		switch br.bits(2) {
		case 0:
			br.align()
			if br.left() == 0 {
				return maxDist, nil // the header of the stripped sync flush
			}
			n := br.bits(16)
			if br.bits(16) != ^n&0xFFFF {
				return maxDist, errors.New("stored block length mismatch")
			}
			if br.left() < n*8 {
				return maxDist, errors.New("stored block truncated")
			}
			br.pos += n * 8
		case 1:
			d, err := walkCodes(br, &fixedLit, &fixedDist)
			if err != nil {
				return maxDist, err
			}
			maxDist = max(maxDist, d)
		case 2:
			lit, dist, err := readDynamic(br)
			if err != nil {
				return maxDist, err
			}
			d, err := walkCodes(br, lit, dist)
			if err != nil {
				return maxDist, err
			}
			maxDist = max(maxDist, d)
		default:
			return maxDist, errors.New("reserved block type")
		}
		if br.err != nil {
			return maxDist, br.err
		}
		if final == 1 {
			return maxDist, nil
		}
	}
}

type bitReader struct {
	p   []byte
	pos int // in bits
	err error
}

func (b *bitReader) left() int { return len(b.p)*8 - b.pos }

// bits reads n bits, least significant first (0 past the end, with err).
func (b *bitReader) bits(n int) int {
	v := 0
	for i := range n {
		if b.pos >= len(b.p)*8 {
			b.err = errors.New("deflate data truncated")
			return 0
		}
		v |= int(b.p[b.pos>>3]>>(b.pos&7)&1) << i
		b.pos++
	}
	return v
}

func (b *bitReader) align() { b.pos = (b.pos + 7) &^ 7 }

// huffman is a canonical code as counts per length and symbols in code
// order (the decoding of zlib's puff.c).
type huffman struct {
	count  [16]int
	symbol []int
}

func newHuffman(lengths []int) (*huffman, error) {
	h := &huffman{symbol: make([]int, 0, len(lengths))}
	for _, l := range lengths {
		h.count[l]++
	}
	h.count[0] = 0
	left := 1
	for l := 1; l < 16; l++ {
		left = left<<1 - h.count[l]
		if left < 0 {
			return nil, errors.New("over-subscribed code")
		}
	}
	for l := 1; l < 16; l++ {
		for s, sl := range lengths {
			if sl == l {
				h.symbol = append(h.symbol, s)
			}
		}
	}
	return h, nil
}

func (h *huffman) decode(b *bitReader) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		code |= b.bits(1)
		if b.err != nil {
			return 0, b.err
		}
		n := h.count[l]
		if code-n < first {
			return h.symbol[index+code-first], nil
		}
		index += n
		first = (first + n) << 1
		code <<= 1
	}
	return 0, errors.New("invalid Huffman code")
}

var (
	lenExtra = [29]int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
		4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [30]int{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}

	fixedLit, fixedDist = func() (huffman, huffman) {
		l := make([]int, 288)
		for i := range l {
			switch {
			case i < 144:
				l[i] = 8
			case i < 256:
				l[i] = 9
			case i < 280:
				l[i] = 7
			default:
				l[i] = 8
			}
		}
		d := make([]int, 30)
		for i := range d {
			d[i] = 5
		}
		lit, _ := newHuffman(l)
		dist, _ := newHuffman(d)
		return *lit, *dist
	}()
)

// walkCodes decodes one block's codes and returns its largest distance.
func walkCodes(b *bitReader, lit, dist *huffman) (int, error) {
	maxDist := 0
	for {
		sym, err := lit.decode(b)
		switch {
		case err != nil:
			return maxDist, err
		case sym < 256:
			continue
		case sym == 256:
			return maxDist, nil
		case sym > 285:
			return maxDist, fmt.Errorf("invalid length symbol %d", sym)
		}
		b.bits(lenExtra[sym-257]) // the length itself does not matter
		ds, err := dist.decode(b)
		if err != nil || ds > 29 {
			return maxDist, fmt.Errorf("invalid distance symbol %d (%v)", ds, err)
		}
		maxDist = max(maxDist, distBase[ds]+b.bits(distExtra[ds]))
	}
}

// readDynamic reads a dynamic block's code tables.
func readDynamic(b *bitReader) (lit, dist *huffman, err error) {
	nlen, ndist, ncode := b.bits(5)+257, b.bits(5)+1, b.bits(4)+4
	order := [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	var cl [19]int
	for i := range ncode {
		cl[order[i]] = b.bits(3)
	}
	clh, err := newHuffman(cl[:])
	if err != nil {
		return nil, nil, err
	}
	lengths := make([]int, 0, nlen+ndist)
	for len(lengths) < nlen+ndist {
		sym, err := clh.decode(b)
		if err != nil {
			return nil, nil, err
		}
		rep, val := 1, sym
		switch sym {
		case 16:
			if len(lengths) == 0 {
				return nil, nil, errors.New("repeat with no previous length")
			}
			rep, val = 3+b.bits(2), lengths[len(lengths)-1]
		case 17:
			rep, val = 3+b.bits(3), 0
		case 18:
			rep, val = 11+b.bits(7), 0
		}
		if len(lengths)+rep > nlen+ndist {
			return nil, nil, errors.New("too many code lengths")
		}
		for range rep {
			lengths = append(lengths, val)
		}
	}
	if lit, err = newHuffman(lengths[:nlen]); err != nil {
		return nil, nil, err
	}
	if dist, err = newHuffman(lengths[nlen:]); err != nil {
		return nil, nil, err
	}
	return lit, dist, b.err
}
