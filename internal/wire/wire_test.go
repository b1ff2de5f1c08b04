package wire_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/wsroom/wsroom/internal/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoundTrip(t *testing.T) {
	node := wire.NodeID{1, 2, 3}
	for _, m := range []wire.Message{
		{Type: wire.Text, Node: node, Sent: 1764750000123456789, Data: []byte("hello")},
		{Type: wire.Binary, Node: node, Data: []byte{}},
		{Type: wire.Binary, Node: node, Users: []string{"alice", "", "bob"}, Data: []byte{0, 1}},
		{Type: wire.Text, Node: node, Rooms: []string{"lobby"}, Data: []byte("x")},
		{Type: wire.Text, Node: node, Users: []string{}, Rooms: []string{"a", "b"}, Data: []byte("both")},
		{Type: wire.Binary, Node: node, Except: "3f9a1c2b7d11-1a", Data: []byte("except")},
	} {
		got, err := wire.Decode(wire.Append(nil, &m))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !equal(got, m) {
			t.Fatalf("round trip of %+v gave %+v", m, got)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	node := strings.Repeat("n", wire.NodeIDLen) + "\x00\x00\x00\x00\x00\x00\x00\x01" // and sent
	for _, p := range []string{
		"",
		"\x02",
		"\x01\x00\x01" + node + "version 1",
		"\x03\x00\x01" + node + "version 3",
		"\x02\x08\x01" + node + "unknown flag",
		"\x02\x00\x07" + node + "bad type",
		"\x02\x00\x00" + node + "type 0",
		"\x02\x01\x01" + node, // users flag, no count
		"\x02\x01\x01" + node + "\xff\xff\xff\xff\x0f",     // 4 G names declared
		"\x02\x01\x01" + node + "\x02\x05alice\x7fbob",     // a name overruns
		"\x02\x03\x01" + node + "\x01\x01a",                // rooms flag, list missing
		"\x02\x02\x01" + node + "\x80\x80\x80\x80\x80\x80", // unterminated uvarint
	} {
		if m, err := wire.Decode([]byte(p)); err == nil {
			t.Errorf("Decode(%q) = %+v, want an error", p, m)
		}
	}
}

func TestTopics(t *testing.T) {
	for _, c := range []struct {
		topic string
		kind  wire.TopicKind
		name  string
	}{
		{wire.RoomTopic("a:b"), wire.TopicRoom, "a:b"},
		{wire.UserTopic(""), wire.TopicUser, ""},
		{wire.TopicAll, wire.TopicHub, ""},
		{"alls", wire.TopicUnknown, ""},
	} {
		if k, n := wire.ParseTopic(c.topic); k != c.kind || n != c.name {
			t.Errorf("ParseTopic(%q) = %v %q, want %v %q", c.topic, k, n, c.kind, c.name)
		}
	}
	if got := wire.UserTopics([]string{"b", "a", "b"}); !slices.Equal(got, []string{"user:b", "user:a"}) {
		t.Errorf("UserTopics = %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(byte(wire.Text), []byte("alice\x00bob"), []byte("lobby"), []byte("hello"), byte(3))
	f.Add(byte(wire.Binary), []byte(""), []byte(""), []byte{}, byte(0))
	f.Fuzz(func(t *testing.T, typ byte, users, rooms, data []byte, flags byte) {
		wire.Decode(data) // arbitrary bytes: never panics
		m := wire.Message{Type: wire.Text + typ%2, Node: wire.NodeID{typ}, Sent: int64(len(data)) << 40, Data: data}
		if flags&1 != 0 {
			m.Users = strings.Split(string(users), "\x00")
		}
		if flags&2 != 0 {
			m.Rooms = strings.Split(string(rooms), "\x00")
		}
		got, err := wire.Decode(wire.Append(nil, &m))
		if err != nil || !equal(got, m) {
			t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
		}
	})
}

func equal(a, b wire.Message) bool {
	return a.Type == b.Type && a.Node == b.Node && a.Sent == b.Sent && a.Except == b.Except && bytes.Equal(a.Data, b.Data) &&
		(a.Users == nil) == (b.Users == nil) && slices.Equal(a.Users, b.Users) &&
		(a.Rooms == nil) == (b.Rooms == nil) && slices.Equal(a.Rooms, b.Rooms)
}
