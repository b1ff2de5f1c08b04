package natsbroker

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// MaxNameLen is the longest room name or user ID, in bytes, a Broker
// publishes or subscribes to. Its encoded subject stays well within
// nats-server's default max_control_line (4 KiB).
const MaxNameLen = 1024

// maxPrefixLen bounds Options.Prefix, for the same reason.
const maxPrefixLen = 256

// The Hub's topics (see wsroom.Broker) and their subject tokens.
const (
	topicAll        = "all"
	topicRoomPrefix = "room:"
	topicUserPrefix = "user:"

	kindRoom  = "room"
	kindUser  = "user"
	kindOther = "topic" // a topic of another form, encoded whole
	emptyName = "_"     // the token of the empty name: never an encoding's output
)

var nameEncoding = base64.RawURLEncoding.Strict()

// Subject returns the NATS subject a Broker with Options.Prefix prefix
// uses for a Hub topic ("room:<name>", "user:<id>" or "all"), for
// watching the traffic with other NATS tools, e.g.
// Subject("wsroom", "room:lobby") is "wsroom.room.bG9iYnk".
func Subject(prefix, topic string) (string, error) {
	if err := checkPrefix(prefix); err != nil {
		return "", err
	}
	return subjectOf(prefix+".", topic)
}

func (b *Broker) subject(topic string) (string, error) { return subjectOf(b.prefix, topic) }

// subjectOf returns the subject of topic; prefix ends with '.'.
func subjectOf(prefix, topic string) (string, error) {
	if topic == topicAll {
		return prefix + topicAll, nil
	}
	kind, name := kindOther, topic
	if n, ok := strings.CutPrefix(topic, topicRoomPrefix); ok {
		kind, name = kindRoom, n
	} else if n, ok := strings.CutPrefix(topic, topicUserPrefix); ok {
		kind, name = kindUser, n
	}
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%w (%d bytes): %.40q…", ErrNameTooLong, len(name), name)
	}
	s := make([]byte, 0, len(prefix)+len(kind)+1+nameEncoding.EncodedLen(len(name)))
	s = append(s, prefix...)
	s = append(s, kind...)
	s = append(s, '.')
	if name == "" {
		s = append(s, emptyName...)
	} else {
		s = nameEncoding.AppendEncode(s, []byte(name))
	}
	return string(s), nil
}

// topic returns the Hub topic of a subject made by subject. ok is false
// for a subject it cannot have made.
func (b *Broker) topic(subject string) (topic string, ok bool) {
	rest, ok := strings.CutPrefix(subject, b.prefix)
	if !ok {
		return "", false
	}
	if rest == topicAll {
		return topicAll, true
	}
	kind, enc, ok := strings.Cut(rest, ".")
	if !ok {
		return "", false
	}
	var name []byte
	if enc != emptyName {
		// The decoder skips '\r' and '\n', which subjectOf never writes:
		// a subject holding them is not one it made.
		if strings.ContainsAny(enc, "\r\n") {
			return "", false
		}
		var err error
		if name, err = nameEncoding.DecodeString(enc); err != nil || len(name) == 0 {
			return "", false
		}
	}
	switch kind {
	case kindRoom:
		return topicRoomPrefix + string(name), true
	case kindUser:
		return topicUserPrefix + string(name), true
	case kindOther:
		t := string(name)
		if t == topicAll || strings.HasPrefix(t, topicRoomPrefix) || strings.HasPrefix(t, topicUserPrefix) {
			return "", false // subjectOf never encodes these under kindOther
		}
		return t, true
	}
	return "", false
}

// checkPrefix reports whether p can start every subject: '.'-separated
// non-empty tokens, no wildcard token, no whitespace.
func checkPrefix(p string) error {
	if len(p) > maxPrefixLen {
		return fmt.Errorf("natsbroker: Prefix is %d bytes; at most %d", len(p), maxPrefixLen)
	}
	if strings.ContainsAny(p, " \t\r\n\x00") {
		return fmt.Errorf("natsbroker: Prefix %q holds whitespace", p)
	}
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return fmt.Errorf("natsbroker: Prefix %q is not a subject: tokens must be non-empty and not wildcards", p)
		}
	}
	return nil
}
