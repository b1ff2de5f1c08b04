package wsroom

import (
	"compress/flate"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
	"github.com/wsroom/wsroom/internal/frame"
)

// permessage-deflate (RFC 7692): negotiation, inbound inflation and
// outbound compression. docs/compression.md explains the decisions.

// maxWindowBits is the LZ77 window of deflate: 2^15 bytes.
const maxWindowBits = 15

// deflateStats counts compression work; tests read them.
type deflateStats struct {
	compressions atomic.Uint64 // messages compressed (once per broadcast and setting)
	inflated     atomic.Uint64 // bytes produced by inflating inbound messages
}

// negotiateDeflate picks the first acceptable permessage-deflate offer among
// the Sec-WebSocket-Extensions lines and returns the response header value
// and the window bits our compressor must respect (8–15), or "" and 0 to
// proceed without compression.
//
// RFC 7692 §5.1: an offer with an unknown parameter, an invalid value or a
// repeated parameter is declined, which means trying the next offer, not
// failing the handshake. A header line that is not valid extension syntax
// declines every offer.
func negotiateDeflate(lines []string) (answer string, bits uint8) {
	var offers []httphead.Option
	for _, line := range lines {
		var ok bool
		if offers, ok = httphead.ParseOptions([]byte(line), offers); !ok {
			return "", 0
		}
	}
	for _, o := range offers {
		if !strings.EqualFold(string(o.Name), wsflate.ExtensionName) || badParams(o) {
			continue
		}
		var p wsflate.Parameters
		if p.Parse(o) != nil {
			continue
		}
		// §7.1.1.1 and §7.1.1.2: the server may always ask for no context
		// takeover in both directions. §7.1.2.1: server_max_window_bits is
		// accepted by echoing it (we compress within it). §7.1.2.2:
		// client_max_window_bits only bounds what the client sends; we
		// inflate any window, so it needs no answer.
		resp := wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}
		bits = maxWindowBits
		if p.ServerMaxWindowBits.Defined() {
			resp.ServerMaxWindowBits = p.ServerMaxWindowBits
			bits = uint8(p.ServerMaxWindowBits)
		}
		var b strings.Builder
		httphead.WriteOptions(&b, []httphead.Option{resp.Option()})
		return b.String(), bits
	}
	return "", 0
}

// badParams reports what wsflate's parser lets through: a parameter named
// twice (a repeated valueless client_max_window_bits) or a value with a
// leading zero, which RFC 7692 §7.1.2 does not allow ("010").
func badParams(o httphead.Option) bool {
	seen := make(map[string]bool, o.Parameters.Size())
	bad := false
	o.Parameters.ForEach(func(k, v []byte) bool {
		bad = seen[string(k)] || (len(v) > 0 && v[0] == '0')
		seen[string(k)] = true
		return !bad
	})
	return bad
}

// negotiateCompression returns the Sec-WebSocket-Extensions answer to r
// ("" for none) and the window bits for the connection (0: none).
func (h *Hub) negotiateCompression(r *http.Request) (answer string, bits uint8) {
	if !h.opts.Compression.Enabled {
		return "", 0
	}
	return negotiateDeflate(r.Header.Values("Sec-WebSocket-Extensions"))
}

// deflateTail is the end of a sync flush, stripped by the sender (RFC 7692
// §7.2.1) and appended again by the receiver (§7.2.2).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

var (
	errInflateTooBig = &frame.Error{Code: frame.CodeTooBig, Reason: "message too big"}
	errInflateData   = &frame.Error{Code: frame.CodeInvalidData, Reason: "invalid compressed data"}
	errInflateUTF8   = &frame.Error{Code: frame.CodeInvalidData, Reason: "invalid utf-8 in text message"}
)

// inflater is a pooled decompressor with its input.
type inflater struct {
	src tailReader
	fr  io.ReadCloser // a flate reader over src; implements flate.Resetter
}

var inflaters = sync.Pool{New: func() any {
	f := &inflater{}
	f.fr = flate.NewReader(&f.src)
	return f
}}

// tailReader reads b and then deflateTail. It is an io.ByteReader so that
// flate reads it directly instead of wrapping it in a new bufio.Reader.
type tailReader struct {
	b    []byte
	tail []byte
}

func (r *tailReader) reset(b []byte) { r.b, r.tail = b, deflateTail }

func (r *tailReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		r.b, r.tail = r.tail, nil
		if len(r.b) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func (r *tailReader) ReadByte() (byte, error) {
	if len(r.b) == 0 {
		r.b, r.tail = r.tail, nil
		if len(r.b) == 0 {
			return 0, io.EOF
		}
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, nil
}

// inflate decompresses a message that arrived with RSV1. It never produces
// more than limit+1 bytes (limit <= 0: no limit) and grows its output only
// as bytes are actually produced, never by a size the peer declared. Text
// is UTF-8-checked after inflating. Errors are *frame.Error: 1009 over the
// limit, 1007 for invalid compressed data or invalid UTF-8.
func (c *Conn) inflate(op frame.Opcode, payload []byte) ([]byte, error) {
	limit := c.hub.opts.ReadLimit
	f := inflaters.Get().(*inflater)
	f.src.reset(payload)
	f.fr.(flate.Resetter).Reset(&f.src, nil)
	out, err := readBounded(f.fr, limit, len(payload))
	f.src.reset(nil)
	inflaters.Put(f)
	c.hub.deflateStats.inflated.Add(uint64(len(out)))
	if err != nil {
		return nil, err
	}
	if op == frame.OpText && !utf8.Valid(out) {
		return nil, errInflateUTF8
	}
	return out, nil
}

// CheckCompressedPrefix implements frame.PrefixChecker: it inflates the
// part of a fragmented compressed message received so far, discarding the
// output, and fails with 1009 as soon as that part alone inflates past
// ReadLimit, or with 1007 if it is not valid deflate data.
func (fh *frameHandler) CheckCompressedPrefix(prefix []byte) error {
	c := (*Conn)(fh)
	limit := c.hub.opts.ReadLimit
	if limit <= 0 {
		return nil
	}
	f := inflaters.Get().(*inflater)
	f.src.b, f.src.tail = prefix, nil // cut mid-stream: no sync-flush tail
	f.fr.(flate.Resetter).Reset(&f.src, nil)
	n, err := io.CopyN(io.Discard, f.fr, limit+1)
	f.src.reset(nil)
	inflaters.Put(f)
	c.hub.deflateStats.inflated.Add(uint64(n))
	switch {
	case n > limit:
		return errInflateTooBig
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil // the rest of the message is still to come
	default:
		return errInflateData
	}
}

// readBounded reads r to its end into a buffer of at most limit+1 bytes
// (limit <= 0: unbounded), starting from a capacity guessed from the
// compressed size.
func readBounded(r io.Reader, limit int64, compressed int) ([]byte, error) {
	most := -1 // the most bytes we let r produce
	if limit > 0 {
		most = int(limit) + 1
	}
	n := 2*compressed + 64
	if most > 0 && n > most {
		n = most
	}
	out := make([]byte, 0, n)
	for {
		if len(out) == cap(out) {
			grow := cap(out)
			if most > 0 && len(out)+grow > most {
				grow = most - len(out)
			}
			out = slices.Grow(out, grow)
		}
		end := cap(out)
		if most > 0 && end > most {
			end = most
		}
		k, err := r.Read(out[len(out):end])
		out = out[:len(out)+k]
		if most > 0 && len(out) >= most {
			return out, errInflateTooBig
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			// The stream ends at our appended sync-flush tail (no final
			// block), which flate reports as an unexpected EOF.
			return out, nil
		default:
			return out, errInflateData
		}
	}
}

// deflater is a pooled compressor writing into its own scratch buffer.
type deflater struct {
	fw  *flate.Writer
	buf []byte
}

func (d *deflater) Write(p []byte) (int, error) {
	d.buf = append(d.buf, p...)
	return len(p), nil
}

// deflaters holds a pool per level, indexed by level - flate.HuffmanOnly.
var deflaters [flate.BestCompression - flate.HuffmanOnly + 1]sync.Pool

// maxScratch is the largest scratch buffer a pooled deflater keeps.
const maxScratch = 256 << 10

// compressFrame returns a complete server frame (FIN and RSV1 set) holding
// data compressed at level with an empty window, or nil if compressing
// would not make the payload smaller.
func compressFrame(op frame.Opcode, data []byte, level int) []byte {
	pool := &deflaters[level-flate.HuffmanOnly]
	d, _ := pool.Get().(*deflater)
	if d == nil {
		d = &deflater{}
		d.fw, _ = flate.NewWriter(d, level) // level is validated by New
	} else {
		d.fw.Reset(d)
	}
	d.buf = d.buf[:0]
	d.fw.Write(data)
	d.fw.Flush() // a sync flush: the output ends with deflateTail
	var b []byte
	if z := d.buf[:len(d.buf)-len(deflateTail)]; len(z) < len(data) {
		b = slices.Grow([]byte(nil), frame.HeaderLen(len(z))+len(z))
		b = frame.AppendHeader(b, op, len(z))
		b[0] |= frame.RSV1
		b = append(b, z...)
	}
	if cap(d.buf) > maxScratch {
		d.buf = nil
	}
	pool.Put(d)
	return b
}

// compressedForms holds the compressed frames of one message. Form 0 uses
// the hub's level; form 1 uses HuffmanOnly (no back-references) for
// recipients whose negotiated window is smaller than the message.
type compressedForms struct {
	op    frame.Opcode
	data  []byte
	level int
	stats *deflateStats
	form  [2]struct {
		once sync.Once
		b    *[]byte // nil: send plain
	}
}

// frame returns the compressed frame for a recipient whose negotiated
// server window is 2^bits bytes, compressing on first use, or plain if
// compression does not pay. Go's compressor always uses a 32 KiB window;
// with no context takeover its back-references never reach before the
// message, so it respects any window at least as large as the message.
// Larger messages to a smaller window use HuffmanOnly, which has none.
func (z *compressedForms) frame(bits uint8, plain *[]byte) *[]byte {
	i, level := 0, z.level
	if bits < maxWindowBits && len(z.data) > 1<<bits && level != flate.HuffmanOnly {
		i, level = 1, flate.HuffmanOnly
	}
	f := &z.form[i]
	f.once.Do(func() {
		if b := compressFrame(z.op, z.data, level); b != nil {
			f.b = newFrame(b)
		}
		z.stats.compressions.Add(1)
	})
	if f.b == nil {
		return plain
	}
	return f.b
}
