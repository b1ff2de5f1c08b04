// Package envelope parses and encodes the JSON envelopes of wsroom's relay handler.
//
// A client sends an inbound envelope naming its recipients:
//
//	{"to":["bob","carol"],"room":"lobby","data":{"text":"hi"},"id":"42"}
//
// and the server forwards an outbound message to each recipient, with "from"
// set to the sender's authenticated user ID:
//
//	{"from":"alice","room":"lobby","data":{"text":"hi"}}
//
// The recipient list is never part of the outbound message. Malformed
// envelopes are answered with {"error":"<reason>","id":"42"}.
//
// Parsing is strict: the whole input must be valid UTF-8 and exactly one JSON
// object, field names are case-sensitive, and unknown or duplicate fields are
// errors. Parse never panics and allocates O(len(input)).
package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// Limits on the fields of an inbound envelope, in bytes.
const (
	MaxUserIDLen = 256 // each entry of "to"
	MaxRoomLen   = 256 // "room"
	MaxIDLen     = 128 // "id"

	// DefaultMaxRecipients is used when Parse is given maxRecipients <= 0.
	DefaultMaxRecipients = 100
)

// maxFieldNameInError bounds how much of an unknown field name is quoted back
// in an error reason.
const maxFieldNameInError = 64

// Envelope is a parsed inbound envelope.
type Envelope struct {
	// To lists the recipient user IDs, deduplicated with the order of first
	// occurrence kept. It is nil when the envelope had no "to" field; when
	// present it is never empty and holds no empty strings.
	To []string
	// Room is the room name, or "" when the envelope had no "room" field.
	Room string
	// Data is the "data" value, compacted (insignificant whitespace removed,
	// everything else byte-for-byte as the client wrote it). It is a fresh
	// copy and never aliases the input passed to Parse, so the caller may
	// reuse its read buffer. An explicit null is kept as the 4 bytes "null".
	Data json.RawMessage
	// ID is the client's correlation string, or "" when absent (an explicit
	// "" is treated as absent). Echo it only in error replies.
	ID string
}

// Error is a malformed-envelope error; its message is safe to send back to the client.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

func errorf(format string, args ...any) *Error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

var (
	errNotUTF8     = &Error{Reason: "envelope is not valid UTF-8"}
	errInvalidJSON = &Error{Reason: "envelope is not valid JSON"}
	errNotObject   = &Error{Reason: "envelope must be a JSON object"}
	errNoTarget    = &Error{Reason: `envelope needs "to" or "room"`}
	errNoData      = &Error{Reason: `missing field "data"`}

	errToType    = &Error{Reason: `"to" must be an array of strings`}
	errToEmpty   = &Error{Reason: `"to" must not be empty`}
	errToEmptyID = &Error{Reason: `"to" contains an empty user ID`}
	errToLongID  = &Error{Reason: `"to" contains a user ID longer than ` + strconv.Itoa(MaxUserIDLen) + ` bytes`}
	errRoomType  = &Error{Reason: `"room" must be a string`}
	errRoomEmpty = &Error{Reason: `"room" must not be empty`}
	errRoomLong  = &Error{Reason: `"room" is longer than ` + strconv.Itoa(MaxRoomLen) + ` bytes`}
	errIDType    = &Error{Reason: `"id" must be a string`}
	errIDLong    = &Error{Reason: `"id" is longer than ` + strconv.Itoa(MaxIDLen) + ` bytes`}
	errTrailing  = &Error{Reason: "unexpected data after envelope"}
)

// Parse decodes one envelope. maxRecipients <= 0 means 100.
//
// Rules: b must be valid UTF-8 holding exactly one JSON object (surrounding
// whitespace allowed). "data" is required (null is accepted); at least one
// of "to" and "room" is required; "id" is optional. "to" must be a non-empty
// array of non-empty strings of at most 256 bytes, with at most maxRecipients
// entries counted before deduplication; "room" a non-empty string of at most
// 256 bytes; "id" a string of at most 128 bytes. Any other field, or any
// field given twice, is an error.
//
// Every error returned is an *Error. On error the returned Envelope is empty,
// except that ID is set if a valid "id" field was read before the problem
// was found, so the caller can echo it in the error reply.
func Parse(b []byte, maxRecipients int) (Envelope, error) {
	if maxRecipients <= 0 {
		maxRecipients = DefaultMaxRecipients
	}
	// Whole-input checks first, so that a syntax error is always reported
	// as such regardless of where it is, and so that invalid UTF-8 (which
	// encoding/json would silently replace) can never reach recipients.
	if !utf8.Valid(b) {
		return Envelope{}, errNotUTF8
	}
	if !json.Valid(b) {
		return Envelope{}, errInvalidJSON
	}
	env, err := parse(b, maxRecipients)
	if err != nil {
		return Envelope{ID: env.ID}, err
	}
	return env, nil
}

func parse(b []byte, maxRecipients int) (env Envelope, _ error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // never convert numbers; they are all rejected or kept raw anyway

	tok, err := dec.Token()
	if err != nil {
		return env, errInvalidJSON
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return env, errNotObject
	}

	var haveTo, haveRoom, haveData, haveID bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return env, errInvalidJSON
		}
		key, ok := tok.(string)
		if !ok {
			return env, errInvalidJSON
		}
		var dup bool
		switch key {
		case "to":
			dup, haveTo = haveTo, true
		case "room":
			dup, haveRoom = haveRoom, true
		case "data":
			dup, haveData = haveData, true
		case "id":
			dup, haveID = haveID, true
		default:
			return env, errorf("unknown field %s", quoteTruncated(key))
		}
		if dup {
			return env, errorf("duplicate field %q", key)
		}

		switch key {
		case "to":
			to, err := parseTo(dec, maxRecipients)
			if err != nil {
				return env, err
			}
			env.To = to
		case "room":
			s, err := parseString(dec, errRoomType)
			if err != nil {
				return env, err
			}
			switch {
			case s == "":
				return env, errRoomEmpty
			case len(s) > MaxRoomLen:
				return env, errRoomLong
			}
			env.Room = s
		case "id":
			s, err := parseString(dec, errIDType)
			if err != nil {
				return env, err
			}
			if len(s) > MaxIDLen {
				return env, errIDLong
			}
			env.ID = s
		case "data":
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return env, errInvalidJSON
			}
			// raw is already a copy of the input; compact it into a
			// buffer of the same capacity.
			var buf bytes.Buffer
			buf.Grow(len(raw))
			if err := json.Compact(&buf, raw); err != nil {
				return env, errInvalidJSON
			}
			env.Data = buf.Bytes()
		}
	}
	tok, err = dec.Token()
	if err != nil {
		return env, errInvalidJSON
	}
	if d, ok := tok.(json.Delim); !ok || d != '}' {
		return env, errInvalidJSON
	}
	// Nothing but whitespace may follow (json.Valid already guarantees
	// this; kept as a cheap second line of defence).
	if _, err := dec.Token(); err != io.EOF {
		return env, errTrailing
	}

	if !haveData {
		return env, errNoData
	}
	if !haveTo && !haveRoom {
		return env, errNoTarget
	}
	return env, nil
}

// parseString reads the next value, which must be a JSON string.
func parseString(dec *json.Decoder, typeErr *Error) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", errInvalidJSON
	}
	s, ok := tok.(string)
	if !ok {
		return "", typeErr
	}
	return s, nil
}

// parseTo reads the "to" array, validating and deduplicating its entries.
func parseTo(dec *json.Decoder, maxRecipients int) ([]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, errInvalidJSON
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errToType
	}
	var (
		to   []string
		seen map[string]struct{}
		n    int
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errInvalidJSON
		}
		s, ok := tok.(string)
		if !ok {
			return nil, errToType
		}
		n++
		switch {
		case n > maxRecipients:
			return nil, errorf(`"to" has more than %d recipients`, maxRecipients)
		case s == "":
			return nil, errToEmptyID
		case len(s) > MaxUserIDLen:
			return nil, errToLongID
		}
		if seen == nil {
			seen = make(map[string]struct{})
		}
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		to = append(to, s)
	}
	tok, err = dec.Token()
	if err != nil {
		return nil, errInvalidJSON
	}
	if d, ok := tok.(json.Delim); !ok || d != ']' {
		return nil, errInvalidJSON
	}
	if n == 0 {
		// An empty list is most likely a client bug (a filtered-to-nothing
		// recipient list); treating it as "whole room" would broadcast.
		return nil, errToEmpty
	}
	return to, nil
}

// quoteTruncated quotes s for an error message, truncating long (hostile)
// field names at a rune boundary.
func quoteTruncated(s string) string {
	if len(s) <= maxFieldNameInError {
		return strconv.Quote(s)
	}
	i := maxFieldNameInError
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return strconv.Quote(s[:i]) + "…"
}

// AppendRelay appends the outbound message {"from":…,["room":…,]"data":…}. from and room are
// JSON-string-escaped correctly (quotes, backslashes, control chars, invalid UTF-8 replaced).
//
// Strings are escaped exactly as encoding/json.Marshal does: invalid UTF-8
// becomes U+FFFD, and <, >, &, U+2028 and U+2029 are \u-escaped. "room" is
// omitted when room is "". data is appended compacted; if it is empty or not
// valid JSON (impossible for Data from Parse) "null" is written instead, so
// the output is always valid JSON.
func AppendRelay(dst []byte, from, room string, data json.RawMessage) []byte {
	dst = append(dst, `{"from":`...)
	dst = appendString(dst, from)
	if room != "" {
		dst = append(dst, `,"room":`...)
		dst = appendString(dst, room)
	}
	dst = append(dst, `,"data":`...)
	dst = appendCompact(dst, data)
	return append(dst, '}')
}

// AppendError appends {"error":reason[,"id":id]}. "id" is omitted when id is "".
// Both strings are escaped as in AppendRelay.
func AppendError(dst []byte, reason, id string) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendString(dst, reason)
	if id != "" {
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, id)
	}
	return append(dst, '}')
}

// appendCompact appends data with insignificant whitespace removed, or null
// if data is not a single valid JSON value.
func appendCompact(dst []byte, data []byte) []byte {
	n := len(dst)
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, data); err != nil {
		dst = buf.Bytes()[:n]
		return append(dst, "null"...)
	}
	return buf.Bytes()
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string, byte-for-byte as
// encoding/json.Marshal(s) would encode it.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				// Other control characters, and <, > and & so the output
				// is safe to embed in HTML.
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
