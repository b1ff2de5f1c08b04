package frame

import (
	"encoding/binary"
	"unicode/utf8"
)

// RSV1 is the first-byte bit that marks a compressed message
// (permessage-deflate, RFC 7692 §6); set it on a header from AppendHeader.
const RSV1 = 0x40

// HeaderLen returns the length of the header of an unmasked server frame
// carrying payloadLen bytes: 2, 4 or 10.
func HeaderLen(payloadLen int) int {
	switch {
	case payloadLen <= 125:
		return 2
	case payloadLen <= 0xffff:
		return 4
	}
	return 10
}

// AppendHeader appends the header of an unmasked server frame (FIN set, RSV
// clear) with opcode op and a payload of payloadLen bytes to dst. It uses the
// shortest length encoding. payloadLen must not be negative.
func AppendHeader(dst []byte, op Opcode, payloadLen int) []byte {
	b0 := 0x80 | byte(op&0x0f)
	switch {
	case payloadLen <= 125:
		return append(dst, b0, byte(payloadLen))
	case payloadLen <= 0xffff:
		return append(dst, b0, 126, byte(payloadLen>>8), byte(payloadLen))
	}
	dst = append(dst, b0, 127)
	return binary.BigEndian.AppendUint64(dst, uint64(payloadLen))
}

// AppendFrame appends an unmasked server frame (FIN set, RSV clear) with
// opcode op and the given payload to dst.
func AppendFrame(dst []byte, op Opcode, payload []byte) []byte {
	dst = AppendHeader(dst, op, len(payload))
	return append(dst, payload...)
}

// AppendClose appends a close frame to dst. Code 0 yields an empty payload
// (no status code, no reason). Otherwise the payload is the code followed by
// reason, cut at a UTF-8 boundary to at most 123 bytes so that the frame
// stays within the control frame limit.
func AppendClose(dst []byte, code uint16, reason string) []byte {
	if code == 0 {
		return AppendHeader(dst, OpClose, 0)
	}
	if len(reason) > MaxControlPayload-2 {
		cut := MaxControlPayload - 2
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = AppendHeader(dst, OpClose, 2+len(reason))
	dst = append(dst, byte(code>>8), byte(code))
	return append(dst, reason...)
}
