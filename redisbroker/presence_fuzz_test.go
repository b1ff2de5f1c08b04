package redisbroker

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/wsroom/wsroom"
)

// FuzzPresenceDelta feeds arbitrary bytes from "Redis" to the parser of
// presDelta's reply, and applies what it accepts to a kept room: nothing
// panics, the parser keeps no more than the bytes given, and an applied
// answer is sorted by user ID, each user once, with connections.
func FuzzPresenceDelta(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$2\r\n10\r\n",
		"*3\r\n$2\r\n12\r\n$11\r\n10 11 b\x002:B\r\n$11\r\n11 12 a\x000:\r\n",
		"*3\r\n$2\r\n12\r\n$11\r\n10 12 c\x001:C\r\n$11\r\n12 12 b\x000:\r\n",
		"*2\r\n$2\r\n11\r\n$8\r\n9 11 a\x00\r\n",
		"*0\r\n",
		"*2\r\n$2\r\n11\r\n:1\r\n",
	} {
		f.Add([]byte(s))
	}
	b := New(Options{MaxPayload: 1 << 10})
	defer b.Close()
	base := &cachedRoom{version: "10", base: []wsroom.Presence{
		{UserID: "a", Conns: 1}, {UserID: "b", Conns: 2, Info: []byte("B")}, {UserID: "d", Conns: 1},
	}}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := newRESPReader(bytes.NewReader(in))
		l, err := r.line()
		if err != nil {
			return
		}
		c := &call{}
		if _, err := b.parseDelta(c, r, l); err != nil {
			return
		}
		d, _ := c.val.(roomDelta)
		n := len(d.version)
		for _, ch := range d.changes {
			n += len(ch.prev) + len(ch.version) + len(ch.user) + len(ch.info)
		}
		if n > len(in) {
			t.Fatalf("kept %d bytes from %d", n, len(in))
		}
		for ce := base; ; {
			next, ok := ce.apply(d)
			if !ok {
				break
			}
			got := next.answer()
			if !slices.IsSortedFunc(got, func(x, y wsroom.Presence) int { return strings.Compare(x.UserID, y.UserID) }) ||
				len(slices.CompactFunc(slices.Clone(got), func(x, y wsroom.Presence) bool { return x.UserID == y.UserID })) != len(got) ||
				slices.ContainsFunc(got, func(p wsroom.Presence) bool { return p.Conns <= 0 }) {
				t.Fatalf("%q applied to %v gave %v", in, base.base, got)
			}
			if ce != base {
				break
			}
			// Again, from a room with those changes pending.
			ce = next
			d.version = d.version + "x"
			for i := range d.changes {
				d.changes[i].prev, d.changes[i].version = d.version, d.version
			}
			if len(d.changes) > 0 {
				d.changes[0].prev = next.version
			}
		}
	})
}
