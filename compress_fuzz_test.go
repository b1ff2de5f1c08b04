package wsroom

import (
	"bytes"
	"errors"
	"testing"

	"github.com/wsroom/wsroom/internal/frame"
)

// FuzzInflate feeds arbitrary bytes to the inbound decompression path, as
// a peer's compressed message and as the prefix of a fragmented one: it
// never panics, never returns more than ReadLimit bytes, and fails only
// with 1009 or 1007. The same bytes, compressed by the outbound path,
// inflate back to themselves.
func FuzzInflate(f *testing.F) {
	for _, s := range [][]byte{
		{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, // "hello"
		{0x00, 0x00, 0xff, 0xff},
		{0xff, 0xff, 0xff},
		bytes.Repeat([]byte{0}, 64),
		[]byte(`{"room":"lobby","data":{"text":"hello hello hello hello"}}`),
	} {
		f.Add(byte(0), s)
		f.Add(byte(3), s)
	}
	limits := [4]int64{16, 100, 4096, 1 << 20}
	f.Fuzz(func(t *testing.T, sel byte, data []byte) {
		limit := limits[sel&3]
		h := New(Options{ReadLimit: limit})
		c := &Conn{hub: h}
		check := func(what string, err error) {
			var fe *frame.Error
			if err != nil && (!errors.As(err, &fe) || (fe.Code != frame.CodeTooBig && fe.Code != frame.CodeInvalidData)) {
				t.Fatalf("%s: %v, want nil, 1009 or 1007", what, err)
			}
		}
		out, err := c.inflate(frame.OpBinary, data)
		check("inflate", err)
		if int64(len(out)) > limit {
			t.Fatalf("inflate returned %d bytes, limit %d", len(out), limit)
		}
		check("prefix", (*frameHandler)(c).CheckCompressedPrefix(data))

		// Outbound, then inbound: the bytes come back.
		if int64(len(data)) > limit {
			return
		}
		fr := compressFrame(frame.OpBinary, data, DefaultCompressionLevel)
		if fr == nil {
			return // would not shrink: sent plain
		}
		payload := fr[len(fr)-payloadLen(fr):]
		back, err := c.inflate(frame.OpBinary, payload)
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("round trip of %d bytes: %d bytes back, %v", len(data), len(back), err)
		}
	})
}

// payloadLen returns the payload size of a server frame (unmasked).
func payloadLen(frame []byte) int {
	switch n := frame[1] & 0x7f; n {
	case 126:
		return len(frame) - 4
	case 127:
		return len(frame) - 10
	default:
		return int(n)
	}
}
