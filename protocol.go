package wsroom

// The wsroom.v1 subprotocol (docs/protocol.md): a JSON header before each
// message's data, positions for rooms with history, resume, and join and
// leave requests.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/wsroom/wsroom/internal/frame"
)

// ProtocolV1 is the subprotocol a client offers to get message headers,
// positions and resume (docs/protocol.md). The Hub always accepts it;
// Conn.Subprotocol reports it.
const ProtocolV1 = "wsroom.v1"

// ResumeParam is the query parameter that carries a wsroom.v1 client's
// resume positions in its handshake (docs/protocol.md).
const ResumeParam = "wsroom_resume"

// Limits on what a client may ask for.
const (
	maxResumeParam = 64 << 10 // bytes of the ResumeParam value
	maxResumeRooms = 1024
)

// emptyHeader is the header of a send that concerns no room.
var emptyHeader = []byte("{}")

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r < 0x20:
			dst = append(dst, `\u00`...)
			dst = append(dst, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&0xf])
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// appendRoomHeader appends the header of a send to room: with its position
// when pos is not nil.
func appendRoomHeader(dst []byte, room string, pos *Position) []byte {
	dst = append(dst, `{"r":`...)
	dst = appendJSONString(dst, room)
	if pos != nil {
		dst = appendPosition(dst, *pos)
	}
	return append(dst, '}')
}

func appendPosition(dst []byte, pos Position) []byte {
	dst = append(dst, `,"e":`...)
	dst = appendJSONString(dst, pos.Epoch)
	dst = append(dst, `,"o":`...)
	return strconv.AppendUint(dst, pos.Offset, 10)
}

// appendV1Frame appends a complete server frame of type op holding header,
// a newline and data.
func appendV1Frame(dst []byte, op frame.Opcode, header, data []byte) []byte {
	n := len(header) + 1 + len(data)
	dst = slices.Grow(dst, frame.HeaderLen(n)+n)
	dst = frame.AppendHeader(dst, op, n)
	dst = append(dst, header...)
	dst = append(dst, '\n')
	return append(dst, data...)
}

// controlFrame returns a control message: a text frame of header and
// newline.
func controlFrame(header []byte) *[]byte {
	return newFrame(appendV1Frame(nil, frame.OpText, header, nil))
}

// helloHeader is the first thing a wsroom.v1 client receives.
func (c *Conn) helloHeader() []byte {
	b := append([]byte(nil), `{"t":"hello","u":`...)
	b = appendJSONString(b, c.id)
	b = append(b, `,"c":`...)
	b = appendJSONString(b, c.ConnID())
	return append(b, '}')
}

// joinedHeader is the answer to a join: pos is nil for a room without
// history; resumed counts the messages replayed before it; lost says why
// a resume was impossible; id answers a request.
func joinedHeader(room string, pos *Position, resumed int, lost lostReason, id string) []byte {
	b := append([]byte(nil), `{"t":"joined","r":`...)
	b = appendJSONString(b, room)
	if pos != nil {
		b = appendPosition(b, *pos)
	}
	switch {
	case lost != "":
		b = append(b, `,"lost":`...)
		b = appendJSONString(b, string(lost))
	case resumed >= 0:
		b = append(b, `,"resumed":`...)
		b = strconv.AppendInt(b, int64(resumed), 10)
	}
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, id)
	}
	return append(b, '}')
}

func leftHeader(room, id string) []byte {
	b := append([]byte(nil), `{"t":"left","r":`...)
	b = appendJSONString(b, room)
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, id)
	}
	return append(b, '}')
}

func errorHeader(id, reason string) []byte {
	b := append([]byte(nil), `{"t":"error","error":`...)
	b = appendJSONString(b, reason)
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, id)
	}
	return append(b, '}')
}

// sendControl queues a control message for a wsroom.v1 connection.
func (c *Conn) sendControl(header []byte) {
	c.enqueue(controlFrame(header), false)
}

// v1Form is a send's frames for wsroom.v1 recipients, made on first use.
type v1Form struct {
	plain *[]byte
	z     *compressedForms
}

// resumeSet is what a wsroom.v1 client's handshake asks to resume: the
// rooms' last positions and the client's previous connection.
type resumeSet struct {
	prev  string
	rooms map[string]Position
}

// parseResume decodes the ResumeParam value.
func parseResume(v string) (*resumeSet, error) {
	if len(v) > maxResumeParam {
		return nil, errors.New("wsroom_resume is too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, errors.New("wsroom_resume is not base64url")
	}
	var in struct {
		C string                     `json:"c"`
		R map[string]json.RawMessage `json:"r"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, errors.New("wsroom_resume is not the expected JSON object")
	}
	if len(in.R) > maxResumeRooms {
		return nil, errors.New("wsroom_resume names too many rooms")
	}
	rs := &resumeSet{prev: in.C, rooms: make(map[string]Position, len(in.R))}
	for room, p := range in.R {
		var pair []json.RawMessage
		var pos Position
		if json.Unmarshal(p, &pair) != nil || len(pair) != 2 ||
			json.Unmarshal(pair[0], &pos.Epoch) != nil || json.Unmarshal(pair[1], &pos.Offset) != nil {
			return nil, errors.New("wsroom_resume: a room's position must be [epoch, offset]")
		}
		rs.rooms[room] = pos
	}
	return rs, nil
}

// clientHeader is the header of a frame from a wsroom.v1 client.
type clientHeader struct {
	T  string  `json:"t"`
	R  string  `json:"r"`
	E  string  `json:"e"`
	O  *uint64 `json:"o"`
	C  string  `json:"c"`
	ID string  `json:"id"`
}

// errV1 closes a wsroom.v1 connection that broke the protocol.
func errV1(reason string) error {
	return &frame.Error{Code: frame.CodeProtocolError, Reason: "wsroom.v1: " + reason}
}

// onV1Message handles a data message from a wsroom.v1 client: an
// application message goes to OnMessage without its header; a request is
// answered. It runs on the reader.
func (c *Conn) onV1Message(op frame.Opcode, payload []byte) error {
	i := bytes.IndexByte(payload, '\n')
	if i < 0 {
		return errV1("a frame needs a header line")
	}
	header, data := payload[:i], payload[i+1:]
	if bytes.Equal(header, emptyHeader) {
		c.deliverData(op, data)
		return nil
	}
	var ch clientHeader
	if err := json.Unmarshal(header, &ch); err != nil {
		return errV1("the header is not a JSON object")
	}
	switch ch.T {
	case "":
		c.deliverData(op, data)
	case "join":
		if ch.R == "" {
			return errV1(`"join" needs "r"`)
		}
		var from *Position
		if ch.O != nil {
			from = &Position{Epoch: ch.E, Offset: *ch.O}
		}
		c.joinRequest(ch.R, from, ch.C, ch.ID)
	case "leave":
		if ch.R == "" {
			return errV1(`"leave" needs "r"`)
		}
		c.leaveRequest(ch.R, ch.ID)
	default:
		return errV1("unknown request " + strconv.Quote(ch.T))
	}
	return nil
}

// errJoinNotAllowed refuses join and leave requests when the app did not
// set Options.AuthorizeJoin.
var errJoinNotAllowed = errors.New("joining rooms from the client is not enabled")

// joinRequest answers a client's request to join room, resuming from pos
// if it is not nil.
func (c *Conn) joinRequest(room string, from *Position, prev, id string) {
	h := c.hub
	err := errJoinNotAllowed
	if f := h.opts.AuthorizeJoin; f != nil {
		err = c.authorize(f, room)
	}
	if err == nil {
		err = c.join(room, joinOpts{from: from, prev: prev, id: id, request: true})
	}
	if err != nil {
		c.sendControl(errorHeader(id, err.Error()))
	}
}

// leaveRequest answers a client's request to leave room. A client may
// always leave a room.
func (c *Conn) leaveRequest(room, id string) {
	if err := c.leave(room, id); err != nil {
		c.sendControl(errorHeader(id, err.Error()))
	}
}

// authorize runs AuthorizeJoin, turning a panic into a refusal.
func (c *Conn) authorize(f func(*Conn, string) error, room string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			c.hub.stats.panics.Add(1)
			c.log().Error("wsroom: panic in AuthorizeJoin", "panic", v)
			err = errors.New("internal error")
		}
	}()
	return f(c, room)
}

// What a connection speaks (Conn.proto).
const (
	protoPlain uint8 = iota
	protoV1
)
