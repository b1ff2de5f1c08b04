// Package frame is an incremental (push) parser for client-to-server
// WebSocket frames (RFC 6455 §5) and the encoder for unmasked server frames.
//
// The parser is fed with bytes that were already read ([Parser.Feed]), so the
// same code serves a goroutine that blocks in Read and a readiness poller that
// reads whatever is available. It keeps no buffer of its own except the data
// message being assembled: frame payloads are unmasked in place in the fed
// slice and copied once into the message.
package frame

import (
	"encoding/binary"
	"strconv"

	"github.com/gobwas/ws"
)

// Opcode is a WebSocket frame opcode (RFC 6455 §5.2).
type Opcode uint8

// Opcodes defined by RFC 6455.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// IsControl reports whether op is a control opcode (close, ping, pong or a
// reserved control opcode).
func (op Opcode) IsControl() bool { return op&0x8 != 0 }

// String returns a short lowercase name for op.
func (op Opcode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "opcode(" + strconv.Itoa(int(op)) + ")"
}

// Close status codes used by the parser (RFC 6455 §7.4.1).
const (
	CodeNormal        = 1000
	CodeGoingAway     = 1001
	CodeProtocolError = 1002
	CodeNoStatus      = 1005
	CodeInvalidData   = 1007
	CodePolicy        = 1008
	CodeTooBig        = 1009
	CodeInternal      = 1011
)

// MaxControlPayload is the largest payload a control frame may carry.
const MaxControlPayload = 125

// Error is a protocol failure; the connection must be failed with Code
// (1002, 1007 or 1009). Reason is short, lowercase ASCII, at most 123 bytes,
// so it fits in a close frame as it is.
type Error struct {
	Code   uint16
	Reason string
}

func (e *Error) Error() string {
	return "websocket: " + e.Reason + " (" + strconv.Itoa(int(e.Code)) + ")"
}

// The parser's errors. They are shared values: callers must not modify them.
var (
	errUnmasked        = &Error{CodeProtocolError, "unmasked client frame"}
	errRSV             = &Error{CodeProtocolError, "reserved bits set"}
	errRSV1            = &Error{CodeProtocolError, "rsv1 set on a continuation or control frame"}
	errOpcode          = &Error{CodeProtocolError, "reserved opcode"}
	errControlTooLong  = &Error{CodeProtocolError, "control frame too long"}
	errControlFrag     = &Error{CodeProtocolError, "fragmented control frame"}
	errUnexpectedCont  = &Error{CodeProtocolError, "unexpected continuation frame"}
	errExpectedCont    = &Error{CodeProtocolError, "expected continuation frame"}
	errLength          = &Error{CodeProtocolError, "invalid frame length"}
	errTooBig          = &Error{CodeTooBig, "message too big"}
	errUTF8            = &Error{CodeInvalidData, "invalid utf-8 in text message"}
	errCloseLen        = &Error{CodeProtocolError, "invalid close payload length"}
	errCloseCode       = &Error{CodeProtocolError, "invalid close code"}
	errCloseReasonUTF8 = &Error{CodeInvalidData, "invalid utf-8 in close reason"}
)

// Handler receives what the parser assembles, in wire order.
type Handler interface {
	// OnMessage receives a complete data message (op is OpText or OpBinary).
	// payload is owned by the callee: freshly allocated per message, never
	// reused or touched by the parser again. An empty message is delivered
	// as a non-nil slice of length 0. Text payloads are valid UTF-8.
	OnMessage(op Opcode, payload []byte) error
	// OnControl receives a complete ping, pong or close frame (unmasked).
	// payload is valid only during the call (at most 125 bytes, it may alias
	// the slice given to Feed or the parser's own scratch space). Close
	// payloads are already validated with ParseClose.
	OnControl(op Opcode, payload []byte) error
}

// PrefixChecker is an optional interface of a Handler that receives
// compressed messages. While a fragmented compressed message arrives, the
// parser calls CheckCompressedPrefix with the compressed bytes received so
// far, each time they have doubled since the last call (from 1 KiB on), so
// that a decompression bomb or corrupt data is refused before the final
// frame and the total extra work stays a small multiple of one inflation.
// prefix is valid only during the call. An error fails the parser.
type PrefixChecker interface {
	CheckCompressedPrefix(prefix []byte) error
}

// firstPrefixCheck is the compressed size at which a fragmented compressed
// message is first checked.
const firstPrefixCheck = 1 << 10

// Parser states.
const (
	stHeader  uint8 = iota // reading a frame header
	stPayload              // reading a frame payload
)

// Parser is an incremental parser of client frames. The zero value is
// unusable: call Init. It is not safe for concurrent use.
type Parser struct {
	h     Handler
	err   error  // sticky error; non-nil means the parser is dead
	msg   []byte // data message being assembled (nil if none or empty so far)
	limit int64  // maximum message size; 0 means no limit

	remain int64 // payload bytes still to come in the current frame

	utf8    UTF8    // validator for the text message in progress
	mask    [4]byte // masking key of the current frame
	maskOff uint8   // position in mask of the next payload byte (0..3)
	state   uint8
	op      Opcode // opcode of the current frame
	fin     bool   // FIN bit of the current frame
	msgOp   Opcode // OpText or OpBinary while a data message is in progress, else 0
	rsv1    bool   // RSV1 may mark a data message as compressed (AllowCompressed)
	deflate bool   // the current (or just delivered) data message had RSV1 set
	zCheck  int    // compressed size at which to call CheckCompressedPrefix next
	n       uint8  // bytes held in scratch

	// scratch holds a partial frame header while in stHeader and the
	// payload of a control frame that did not arrive in one piece while in
	// stPayload.
	scratch [MaxControlPayload]byte
}

// Init (re)initialises p. limit is the maximum message size in bytes (the
// sum of all fragments' payloads); limit <= 0 means no limit.
func (p *Parser) Init(h Handler, limit int64) {
	if limit < 0 {
		limit = 0
	}
	*p = Parser{h: h, limit: limit}
}

// AllowCompressed lets RSV1 mark the first frame of a data message as
// compressed (permessage-deflate, RFC 7692 §6). Call it after Init, before
// the first Feed, once the extension has been negotiated. RSV1 stays a
// protocol error (1002) on continuation and control frames, and RSV2/RSV3
// always are. The parser does not inflate: it hands the compressed message
// to OnMessage as it arrived and Compressed reports it. Text messages that
// are compressed are not UTF-8-checked here (the caller checks them after
// inflating), and their size on the wire may reach CompressedLimit(limit).
func (p *Parser) AllowCompressed(allow bool) { p.rsv1 = allow }

// Compressed reports whether the data message being delivered to
// OnMessage had RSV1 set. It is meaningful only during OnMessage.
func (p *Parser) Compressed() bool { return p.deflate }

// CompressedLimit is how many bytes a compressed message may take on the
// wire when its inflated size is limited to limit: limit plus 1/8, the worst
// expansion of deflate's fixed Huffman code, plus 64 bytes of block headers.
// The caller enforces limit itself after inflating. limit <= 0 means none.
func CompressedLimit(limit int64) int64 {
	if limit <= 0 {
		return 0
	}
	return limit + limit/8 + 64
}

// msgLimit is the wire limit for the data message in progress.
func (p *Parser) msgLimit() int64 {
	if p.deflate {
		return CompressedLimit(p.limit)
	}
	return p.limit
}

// InMessage reports whether the parser is in the middle of a frame or of a
// fragmented message, i.e. holds partial state.
func (p *Parser) InMessage() bool {
	return p.state != stHeader || p.n != 0 || p.msgOp != 0
}

// Idle reports whether the parser holds no partial state: !InMessage().
func (p *Parser) Idle() bool { return !p.InMessage() }

// Err returns the error that killed the parser, or nil.
func (p *Parser) Err() error { return p.err }

func (p *Parser) fail(err error) error {
	p.err = err
	p.msg = nil
	return err
}

// frameHeaderLen returns the length of a client frame header (including the
// masking key) given its second byte.
func frameHeaderLen(b1 byte) int {
	switch b1 & 0x7f {
	case 126:
		return 2 + 2 + 4
	case 127:
		return 2 + 8 + 4
	}
	return 2 + 4
}

// checkHead validates what the first two header bytes say on their own.
func (p *Parser) checkHead(b0, b1 byte) error {
	if b0&0x70 != 0 {
		if b0&0x30 != 0 || !p.rsv1 {
			return errRSV
		}
		if op := Opcode(b0 & 0x0f); op == OpContinuation || op.IsControl() {
			return errRSV1 // only the first frame of a data message
		}
	}
	if b1&0x80 == 0 {
		return errUnmasked
	}
	switch op := Opcode(b0 & 0x0f); op {
	case OpText, OpBinary:
		if p.msgOp != 0 {
			return errExpectedCont
		}
	case OpContinuation:
		if p.msgOp == 0 {
			return errUnexpectedCont
		}
	case OpClose, OpPing, OpPong:
		if b0&0x80 == 0 {
			return errControlFrag
		}
		if b1&0x7f > MaxControlPayload {
			return errControlTooLong
		}
	default:
		return errOpcode
	}
	return nil
}

// startFrame sets up the parser for the payload of the frame whose full
// header (already checked by checkHead) is h.
func (p *Parser) startFrame(h []byte) error {
	var length uint64
	i := 2
	switch l7 := h[1] & 0x7f; l7 {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:4]))
		i = 4
	case 127:
		length = binary.BigEndian.Uint64(h[2:10])
		if length>>63 != 0 {
			return errLength
		}
		i = 10
	default:
		length = uint64(l7)
	}
	op := Opcode(h[0] & 0x0f)
	if !op.IsControl() {
		if op != OpContinuation {
			p.msgOp = op
			p.msg = nil
			p.utf8.Reset()
			p.deflate = h[0]&0x40 != 0
			p.zCheck = firstPrefixCheck
		}
		// len(p.msg) and length are both < 2^63: the sum cannot overflow.
		if l := p.msgLimit(); l > 0 && uint64(len(p.msg))+length > uint64(l) {
			return errTooBig
		}
	}
	p.op = op
	p.fin = h[0]&0x80 != 0
	copy(p.mask[:], h[i:i+4])
	p.maskOff = 0
	p.remain = int64(length)
	p.state = stPayload
	p.n = 0
	return nil
}

// Feed consumes all of b, calling the handler for every complete message and
// control frame, in order. It unmasks payload bytes in place, so b is
// modified. It returns the first error: a *Error for protocol violations, or
// whatever error a Handler method returned, unchanged. After any error the
// parser is dead and later calls return that same error without calling the
// handler.
func (p *Parser) Feed(b []byte) error {
	if p.err != nil {
		return p.err
	}
	for len(b) > 0 {
		if p.state == stHeader {
			if p.n == 0 && len(b) >= 2 {
				// Fast path: the header starts at b[0].
				if err := p.checkHead(b[0], b[1]); err != nil {
					return p.fail(err)
				}
				hl := frameHeaderLen(b[1])
				if len(b) < hl {
					p.n = uint8(copy(p.scratch[:], b))
					return nil
				}
				if err := p.startFrame(b[:hl]); err != nil {
					return p.fail(err)
				}
				b = b[hl:]
			} else {
				// Slow path: the header arrives in pieces.
				if p.n < 2 {
					p.scratch[p.n] = b[0]
					p.n++
					b = b[1:]
					if p.n < 2 {
						continue
					}
					if err := p.checkHead(p.scratch[0], p.scratch[1]); err != nil {
						return p.fail(err)
					}
				}
				hl := frameHeaderLen(p.scratch[1])
				k := copy(p.scratch[p.n:hl], b)
				p.n += uint8(k)
				b = b[k:]
				if int(p.n) < hl {
					continue
				}
				if err := p.startFrame(p.scratch[:hl]); err != nil {
					return p.fail(err)
				}
			}
			if p.remain == 0 {
				if err := p.endFrame(nil); err != nil {
					return err
				}
			}
			continue
		}

		// stPayload
		k := len(b)
		if int64(k) > p.remain {
			k = int(p.remain)
		}
		chunk := b[:k]
		b = b[k:]
		ws.Cipher(chunk, p.mask, int(p.maskOff))
		p.maskOff = uint8((int(p.maskOff) + k) & 3)
		p.remain -= int64(k)

		if p.op.IsControl() {
			if p.n == 0 && p.remain == 0 {
				// The whole payload is in chunk.
				if err := p.endFrame(chunk); err != nil {
					return err
				}
				continue
			}
			p.n += uint8(copy(p.scratch[p.n:], chunk))
			if p.remain == 0 {
				if err := p.endFrame(p.scratch[:p.n]); err != nil {
					return err
				}
			}
			continue
		}

		if p.msgOp == OpText && !p.deflate && !p.utf8.Write(chunk) {
			return p.fail(errUTF8)
		}
		p.appendMsg(chunk)
		if p.remain == 0 {
			if err := p.endFrame(nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// appendMsg appends chunk to the message being assembled. The buffer grows
// only by what has actually arrived: the peer-declared length bounds the
// growth but never drives it.
func (p *Parser) appendMsg(chunk []byte) {
	if len(chunk) == 0 {
		return
	}
	if p.msg == nil && p.fin && p.remain == 0 {
		// A whole single-frame message: an exact copy (which the compiler
		// does without zeroing the new slice first).
		m := make([]byte, len(chunk))
		copy(m, chunk)
		p.msg = m
		return
	}
	l := len(p.msg)
	need := l + len(chunk)
	if need > cap(p.msg) {
		c := 2 * cap(p.msg)
		if c < 512 {
			c = 512
		}
		if c < need {
			c = need
		}
		// Never beyond what the message can still become: the rest of the
		// final frame, or the limit.
		if p.fin && int64(c) > int64(need)+p.remain {
			c = need + int(p.remain)
		}
		if l := p.msgLimit(); l > 0 && int64(c) > l {
			c = int(l)
		}
		m := make([]byte, l, c)
		copy(m, p.msg)
		p.msg = m
	}
	p.msg = append(p.msg, chunk...)
}

// endFrame is called once the current frame's payload is complete. For a
// control frame, payload is its unmasked payload.
func (p *Parser) endFrame(payload []byte) error {
	p.state = stHeader
	p.n = 0
	op := p.op
	if op.IsControl() {
		if op == OpClose {
			if _, _, err := ParseClose(payload); err != nil {
				return p.fail(err)
			}
		}
		if err := p.h.OnControl(op, payload); err != nil {
			return p.fail(err)
		}
		return nil
	}
	if !p.fin {
		if p.deflate && len(p.msg) >= p.zCheck {
			p.zCheck = 2 * len(p.msg)
			if pc, ok := p.h.(PrefixChecker); ok {
				if err := pc.CheckCompressedPrefix(p.msg); err != nil {
					return p.fail(err)
				}
			}
		}
		return nil
	}
	msgOp := p.msgOp
	if msgOp == OpText && !p.deflate && !p.utf8.Complete() {
		return p.fail(errUTF8)
	}
	m := p.msg
	if m == nil {
		m = []byte{}
	}
	p.msg = nil
	p.msgOp = 0
	if err := p.h.OnMessage(msgOp, m); err != nil {
		return p.fail(err)
	}
	return nil
}
