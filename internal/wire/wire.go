// Package wire encodes and decodes the messages Hubs exchange through a
// Broker: one send, published once on each of its topics and decoded once
// by each node that receives it.
//
// A node message is
//
//	version  1 byte   Version
//	flags    1 byte   FlagUsers, FlagRooms
//	type     1 byte   1 text, 2 binary, 3 a wsroom.v1 control message, 4 a request between Hubs
//	node     16 bytes the publishing Hub's random ID (a node ignores its own echo)
//	sent     8 bytes  when it was published: Unix nanoseconds, big-endian
//	users    if FlagUsers: uvarint count, then count × (uvarint length, bytes)
//	rooms    if FlagRooms: the same
//	except   if FlagExcept: uvarint length, then the ConnID BroadcastExcept left out
//	data     the rest: the message's payload, not yet framed
//
// Who receives it is the topic it arrives on ("room:<name>", "user:<id>"
// or "all"), narrowed by the optional lists: on a room topic, Users keeps
// only those users' connections in the room; on a user topic, Rooms keeps
// only that user's connections that are in one of the rooms. The
// connection a BroadcastExcept leaves out is on the publishing node, so a
// message never names it.
//
// Decode never panics, rejects anything malformed (an unknown version or
// flag, a type other than Text, Binary, V1Control or Control, a list that
// overruns the message), and allocates only the names, at most one per
// byte actually present. It does not check that text is UTF-8: the receiving Hub does
// when it frames the message, as for any send.
package wire

import (
	"encoding/binary"
	"errors"
	"slices"
)

// Version is the format version this package writes and reads.
const Version = 2

// NodeIDLen is the length of a node ID.
const NodeIDLen = 16

// headerLen is the fixed part: version, flags, type, node, sent.
const headerLen = 3 + NodeIDLen + 8

// Flags say which optional lists a message carries.
const (
	FlagUsers  = 1 << iota // a room send narrowed to these users
	FlagRooms              // a user send narrowed to connections in these rooms
	FlagExcept             // a room send that left a connection of the publisher out

	knownFlags = FlagUsers | FlagRooms | FlagExcept
)

// Message types: text and binary as in RFC 6455, and a wsroom.v1 control
// message (a header for wsroom.v1 connections only).
const (
	Text      = 1
	Binary    = 2
	V1Control = 3
	Control   = 4 // a request between Hubs (disconnect a user…); its data is the Hub's to read
)

// NodeID identifies a publishing Hub.
type NodeID [NodeIDLen]byte

// Message is a decoded node message. Data, and after Decode the names,
// refer to or are copied from the encoded bytes (see Decode).
type Message struct {
	Type   byte     // Text, Binary, V1Control or Control
	Node   NodeID   // the publisher
	Sent   int64    // when it was published, in Unix nanoseconds (the publisher's clock)
	Users  []string // with FlagUsers; nil otherwise
	Rooms  []string // with FlagRooms; nil otherwise
	Except string   // with FlagExcept: the ConnID left out ("" otherwise)
	Data   []byte
}

// ErrMalformed is returned by Decode for bytes that are not a node message
// of this version.
var ErrMalformed = errors.New("wire: malformed node message")

// Append appends the encoding of m to dst. Users and Rooms are written
// when non-nil (an empty non-nil list is kept as empty).
func Append(dst []byte, m *Message) []byte {
	n := headerLen + len(m.Data) + 3*binary.MaxVarintLen64 + len(m.Except)
	for _, s := range m.Users {
		n += binary.MaxVarintLen64 + len(s)
	}
	for _, s := range m.Rooms {
		n += binary.MaxVarintLen64 + len(s)
	}
	dst = slices.Grow(dst, n)
	var flags byte
	if m.Users != nil {
		flags |= FlagUsers
	}
	if m.Rooms != nil {
		flags |= FlagRooms
	}
	if m.Except != "" {
		flags |= FlagExcept
	}
	dst = append(dst, Version, flags, m.Type)
	dst = append(dst, m.Node[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Sent))
	if m.Users != nil {
		dst = appendNames(dst, m.Users)
	}
	if m.Rooms != nil {
		dst = appendNames(dst, m.Rooms)
	}
	if m.Except != "" {
		dst = binary.AppendUvarint(dst, uint64(len(m.Except)))
		dst = append(dst, m.Except...)
	}
	return append(dst, m.Data...)
}

func appendNames(dst []byte, names []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, s := range names {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// Decode decodes p. The returned Data aliases p; names are copied.
func Decode(p []byte) (Message, error) {
	var m Message
	if len(p) < headerLen || p[0] != Version {
		return m, ErrMalformed
	}
	flags := p[1]
	m.Type = p[2]
	if flags&^knownFlags != 0 || m.Type < Text || m.Type > Control {
		return m, ErrMalformed
	}
	copy(m.Node[:], p[3:3+NodeIDLen])
	m.Sent = int64(binary.BigEndian.Uint64(p[3+NodeIDLen : headerLen]))
	p = p[headerLen:]
	var ok bool
	if flags&FlagUsers != 0 {
		if m.Users, p, ok = names(p); !ok {
			return Message{}, ErrMalformed
		}
	}
	if flags&FlagRooms != 0 {
		if m.Rooms, p, ok = names(p); !ok {
			return Message{}, ErrMalformed
		}
	}
	if flags&FlagExcept != 0 {
		l, n := binary.Uvarint(p)
		if n <= 0 || l == 0 || l > uint64(len(p)-n) {
			return Message{}, ErrMalformed
		}
		m.Except, p = string(p[n:n+int(l)]), p[n+int(l):]
	}
	m.Data = p // text is checked for UTF-8 when the receiver frames it
	return m, nil
}

// names decodes a list of names from the front of p.
func names(p []byte) (list []string, rest []byte, ok bool) {
	count, n := binary.Uvarint(p)
	if n <= 0 || count > uint64(len(p)-n) { // each name takes at least a byte
		return nil, nil, false
	}
	p = p[n:]
	list = make([]string, 0, count)
	for range count {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return nil, nil, false
		}
		list = append(list, string(p[n:n+int(l)]))
		p = p[n+int(l):]
	}
	return list, p, true
}
