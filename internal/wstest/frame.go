package wstest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Opcode is a frame's opcode (RFC 6455 §5.2).
type Opcode byte

// The opcodes RFC 6455 defines. Other values (3–7, 11–15) are reserved:
// use Opcode(n) to send one.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// The RSV bits, where they sit in a frame's first byte. permessage-deflate
// (RFC 7692) marks a compressed message with RSV1.
const (
	RSV1 byte = 0x40
	RSV2 byte = 0x20
	RSV3 byte = 0x10
)

// LengthForm chooses how a frame header encodes the payload length.
type LengthForm int

// Length forms. The zero value is the shortest form, the only one RFC 6455
// allows; Len16 and Len64 force a longer (non-minimal) one.
const (
	LenShortest LengthForm = 0
	Len16       LengthForm = 16
	Len64       LengthForm = 64
)

// Frame is one WebSocket frame: one to send (see Bytes and Header) or one
// read by Conn.ReadFrame.
type Frame struct {
	Fin     bool
	RSV     byte // RSV1|RSV2|RSV3 as set in the first byte
	Op      Opcode
	Masked  bool
	Payload []byte

	// Key is the masking key of a masked frame; nil means a random one
	// when building. ReadFrame sets it for a masked frame.
	Key *[4]byte
	// Form is the length encoding used when building (see LengthForm).
	Form LengthForm
}

// Header returns the frame's header as it goes on the wire, declaring a
// payload of length bytes (which need not be len(f.Payload): a test may
// send a header that announces more than it sends). A masked frame's
// header ends with its key; if f.Key is nil a random key is chosen, so
// call Bytes, not Header and Mask, to build a whole frame.
func (f Frame) Header(length uint64) []byte {
	b0 := byte(f.Op&0x0f) | f.RSV&0x70
	if f.Fin {
		b0 |= 0x80
	}
	var maskBit byte
	if f.Masked {
		maskBit = 0x80
	}
	h := make([]byte, 1, 14)
	h[0] = b0
	switch {
	case f.Form == Len64 || (f.Form == LenShortest && length > 0xffff):
		h = append(h, maskBit|127)
		h = binary.BigEndian.AppendUint64(h, length)
	case f.Form == Len16 || (f.Form == LenShortest && length > 125):
		h = append(h, maskBit|126)
		h = binary.BigEndian.AppendUint16(h, uint16(length))
	default:
		h = append(h, maskBit|byte(length))
	}
	if f.Masked {
		h = append(h, f.key()[:]...)
	}
	return h
}

// key returns f.Key, or a fresh random key if it is nil.
func (f Frame) key() *[4]byte {
	if f.Key != nil {
		return f.Key
	}
	k := new([4]byte)
	rand.Read(k[:])
	return k
}

// Bytes returns the whole frame as it goes on the wire: header, then the
// payload, masked with f.Key (a random key if nil) when f.Masked.
func (f Frame) Bytes() []byte {
	if f.Masked {
		f.Key = f.key()
	}
	b := f.Header(uint64(len(f.Payload)))
	if !f.Masked {
		return append(b, f.Payload...)
	}
	return append(b, mask(*f.Key, f.Payload)...)
}

// String describes the frame for failure messages.
func (f Frame) String() string {
	p := fmt.Sprintf("%q", f.Payload)
	if len(f.Payload) > 64 {
		p = fmt.Sprintf("(%d bytes, starting %q)", len(f.Payload), f.Payload[:32])
	}
	return fmt.Sprintf("op %d fin %v rsv %#x masked %v %s", f.Op, f.Fin, f.RSV, f.Masked, p)
}

// mask returns p masked (or unmasked: the operation is its own inverse)
// with key, in a new slice.
func mask(key [4]byte, p []byte) []byte {
	out := make([]byte, len(p))
	for i, c := range p {
		out[i] = c ^ key[i%4]
	}
	return out
}

// Final returns a final client frame (FIN set, masked with a random key,
// as every client frame must be) carrying payload.
func Final[P ~string | ~[]byte](op Opcode, payload P) []byte {
	return Frame{Fin: true, Op: op, Masked: true, Payload: []byte(payload)}.Bytes()
}

// Fragment returns a non-final masked client frame: the first frame of a
// fragmented message (op OpText or OpBinary) or a middle one
// (OpContinuation).
func Fragment[P ~string | ~[]byte](op Opcode, payload P) []byte {
	return Frame{Op: op, Masked: true, Payload: []byte(payload)}.Bytes()
}

// ClosePayload returns a close frame's payload: the code in two bytes,
// then the reason.
func ClosePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// CloseFrame returns a masked client close frame with code and reason.
func CloseFrame(code int, reason string) []byte {
	return Final(OpClose, ClosePayload(code, reason))
}

// Cat concatenates frames (or any byte slices) into one, to be sent in a
// single write.
func Cat(parts ...[]byte) []byte {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// CloseError is a close frame read where a message was expected: its code
// (1005 if the payload was empty) and reason.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("close frame %d %q", e.Code, e.Reason) }

// closeError parses a close frame's payload.
func closeError(payload []byte) *CloseError {
	if len(payload) < 2 {
		return &CloseError{Code: 1005}
	}
	return &CloseError{Code: int(binary.BigEndian.Uint16(payload)), Reason: string(payload[2:])}
}
