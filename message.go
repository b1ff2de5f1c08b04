package wsroom

import (
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/wsroom/wsroom/internal/frame"
)

// MessageType is the kind of a WebSocket data message.
type MessageType uint8

// The two data message types of RFC 6455.
const (
	TextMessage   MessageType = 1
	BinaryMessage MessageType = 2
)

// v1Control is an internal type: a wsroom.v1 control message (its Data is
// the header), sent to wsroom.v1 connections only.
const v1Control MessageType = 3

// String returns "text", "binary" or "MessageType(n)".
func (t MessageType) String() string {
	switch t {
	case TextMessage:
		return "text"
	case BinaryMessage:
		return "binary"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one WebSocket data message. Text messages must hold valid
// UTF-8; sending one that does not returns ErrInvalidUTF8.
type Message struct {
	Type MessageType
	Data []byte
}

// Text returns a text message holding s.
func Text(s string) Message { return Message{Type: TextMessage, Data: []byte(s)} }

// Binary returns a binary message holding b. b is not copied until the
// message is sent; do not modify it before the send call returns.
func Binary(b []byte) Message { return Message{Type: BinaryMessage, Data: b} }

// String returns the payload as a string (handy for text messages).
func (m Message) String() string { return string(m.Data) }

// check returns ErrMessageType or ErrInvalidUTF8 for a message that
// cannot be sent.
func (m Message) check() error {
	switch m.Type {
	case TextMessage:
		if !utf8.Valid(m.Data) {
			return ErrInvalidUTF8
		}
	case BinaryMessage:
	default:
		return ErrMessageType
	}
	return nil
}

// encode returns m as one complete server frame. The result is immutable
// and shared by every recipient of a broadcast.
func (m Message) encode() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := slices.Grow([]byte(nil), frame.HeaderLen(len(m.Data))+len(m.Data)) // capacity: the allocation's size class
	return frame.AppendFrame(b, frame.Opcode(m.Type), m.Data), nil
}
