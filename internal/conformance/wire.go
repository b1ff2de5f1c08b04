package conformance

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
)

// Opcodes of RFC 6455 section 5.2.
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// RSV bits as they sit in the first header byte, shifted down by 4.
const (
	RSV1 byte = 4
	RSV2 byte = 2
	RSV3 byte = 1
)

// maxServerFrame bounds the payload the runner accepts in one server frame,
// so that a broken server cannot make it allocate without limit.
const maxServerFrame = 64 << 20

// Frame is one WebSocket frame. The runner masks every frame it sends
// with a fresh random key; Masked is only reported for frames received.
type Frame struct {
	Fin     bool
	Rsv     byte // 0–7: RSV1<<2 | RSV2<<1 | RSV3
	Op      byte
	Payload []byte
	Masked  bool
}

// Text returns a single-frame text message.
func Text(p []byte) Frame { return Frame{Fin: true, Op: OpText, Payload: p} }

// Binary returns a single-frame binary message.
func Binary(p []byte) Frame { return Frame{Fin: true, Op: OpBinary, Payload: p} }

// Control returns a control frame (ping, pong or close) with payload p.
func Control(op byte, p []byte) Frame { return Frame{Fin: true, Op: op, Payload: p} }

// CloseBody returns a close frame payload: code then reason.
func CloseBody(code uint16, reason string) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	return append(b, reason...)
}

// Fragments splits one message into frames of at most size payload bytes
// (at least one frame; an empty message is one empty frame).
func Fragments(op byte, p []byte, size int) []Frame {
	var fs []Frame
	for first := true; first || len(p) > 0; first = false {
		n := min(size, len(p))
		f := Frame{Op: OpContinuation, Payload: p[:n]}
		if first {
			f.Op = op
		}
		p = p[n:]
		f.Fin = len(p) == 0
		fs = append(fs, f)
	}
	return fs
}

// headerLen is the length of a masked client frame header for n bytes.
func headerLen(n int) int {
	switch {
	case n <= 125:
		return 6
	case n <= 0xFFFF:
		return 8
	}
	return 14
}

// appendClientFrame appends f as a masked client frame.
func appendClientFrame(b []byte, f Frame) []byte {
	b0 := f.Rsv<<4 | f.Op&0xF
	if f.Fin {
		b0 |= 0x80
	}
	n := len(f.Payload)
	switch {
	case n <= 125:
		b = append(b, b0, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, b0, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, b0, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, f.Payload...)
	mask(b[start:], key)
	return b
}

// mask XORs p with key, eight bytes at a time where it can (this matters
// for 16 MiB messages under the race detector).
func mask(p []byte, key [4]byte) {
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

// encodeFrames returns the wire bytes of fs and the offset where each
// frame starts.
func encodeFrames(fs []Frame) (wire []byte, starts []int) {
	size := 0
	for _, f := range fs {
		size += headerLen(len(f.Payload)) + len(f.Payload)
	}
	wire = make([]byte, 0, size)
	for _, f := range fs {
		starts = append(starts, len(wire))
		wire = appendClientFrame(wire, f)
	}
	return wire, starts
}

// readServerFrame reads one frame from r, unmasking it if it is masked
// (which the caller then reports as a protocol error).
func readServerFrame(r *bufio.Reader) (Frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{Fin: h[0]&0x80 != 0, Rsv: h[0] >> 4 & 7, Op: h[0] & 0xF, Masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return Frame{}, unexpected(err)
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return Frame{}, unexpected(err)
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if n > maxServerFrame {
		return Frame{}, fmt.Errorf("server frame of %d bytes exceeds the runner's %d-byte limit", n, maxServerFrame)
	}
	var key [4]byte
	if f.Masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return Frame{}, unexpected(err)
		}
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return Frame{}, unexpected(err)
	}
	if f.Masked {
		mask(f.Payload, key)
	}
	return f, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// FailAt returns the index of the first byte of p at which a strict
// (fail-fast) UTF-8 validator must reject p, or -1 if p is valid UTF-8 or
// a valid prefix truncated at its end (then incomplete is true, and only
// the end of the message makes it invalid). It follows Table 3-7 of the
// Unicode Standard (well-formed byte sequences).
func FailAt(p []byte) (at int, incomplete bool) {
	need := 0            // continuation bytes still expected
	lo, hi := 0x80, 0xBF // range of the next continuation byte
	for i, c := range p {
		if need > 0 {
			if int(c) < lo || int(c) > hi {
				return i, false
			}
			need--
			lo, hi = 0x80, 0xBF
			continue
		}
		switch {
		case c < 0x80:
		case c >= 0xC2 && c <= 0xDF:
			need = 1
		case c == 0xE0:
			need, lo = 2, 0xA0
		case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
			need = 2
		case c == 0xED:
			need, hi = 2, 0x9F
		case c == 0xF0:
			need, lo = 3, 0x90
		case c >= 0xF1 && c <= 0xF3:
			need = 3
		case c == 0xF4:
			need, hi = 3, 0x8F
		default:
			return i, false
		}
	}
	return -1, need > 0
}
