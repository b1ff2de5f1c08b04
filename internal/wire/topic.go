package wire

import "strings"

// Topics, as a Hub names them to its Broker. A broker may prefix or
// encode them on its own wire; it hands them back unchanged.
const (
	TopicAll   = "all"   // hub-wide sends; subscribed while a node has a connection
	RoomPrefix = "room:" // + room name: sends to a room
	UserPrefix = "user:" // + user ID: sends to a user's connections
)

// RoomTopic returns the topic of the room called name.
func RoomTopic(name string) string { return RoomPrefix + name }

// UserTopic returns the topic of the user id.
func UserTopic(id string) string { return UserPrefix + id }

// UserTopics returns the topics of the distinct users in ids, in order of
// first appearance.
func UserTopics(ids []string) []string {
	t := make([]string, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			t = append(t, UserTopic(id))
		}
	}
	return t
}

// TopicKind says what a topic addresses.
type TopicKind int

const (
	TopicUnknown TopicKind = iota
	TopicRoom
	TopicUser
	TopicHub
)

// ParseTopic returns what topic addresses and the room name or user ID.
func ParseTopic(topic string) (TopicKind, string) {
	if name, ok := strings.CutPrefix(topic, RoomPrefix); ok {
		return TopicRoom, name
	}
	if id, ok := strings.CutPrefix(topic, UserPrefix); ok {
		return TopicUser, id
	}
	if topic == TopicAll {
		return TopicHub, ""
	}
	return TopicUnknown, ""
}
