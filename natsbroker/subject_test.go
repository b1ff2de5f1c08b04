package natsbroker_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/wsroom/wsroom/natsbroker"
)

func TestSubjects(t *testing.T) {
	long := strings.Repeat("n", natsbroker.MaxNameLen)
	for _, c := range []struct{ topic, subject string }{
		{"room:lobby", "wsroom.room.bG9iYnk"},
		{"room:", "wsroom.room._"},
		{"user:", "wsroom.user._"},
		{"room:a.b", "wsroom.room.YS5i"},
		{"room:>", "wsroom.room.Pg"},
		{"room:*", "wsroom.room.Kg"},
		{"room:a b", "wsroom.room.YSBi"},
		{"room:ü", "wsroom.room.w7w"},
		{"room:\xff\x00", "wsroom.room._wA"},
		{"user:alice", "wsroom.user.YWxpY2U"},
		{"all", "wsroom.all"},
		{"other", "wsroom.topic.b3RoZXI"},
		{"room:" + long, "wsroom.room." + strings.Repeat("bm5u", natsbroker.MaxNameLen/3) + "bg"},
	} {
		got, err := natsbroker.Subject("wsroom", c.topic)
		if err != nil || got != c.subject {
			t.Errorf("Subject(%.20q) = %.40q, %v; want %.40q", c.topic, got, err, c.subject)
			continue
		}
		if back, ok := natsbroker.Topic("wsroom", got); !ok || back != c.topic {
			t.Errorf("Topic(%.40q) = %.20q, %v; want %.20q", got, back, ok, c.topic)
		}
	}
	if _, err := natsbroker.Subject("wsroom", "room:x"+long); !errors.Is(err, natsbroker.ErrNameTooLong) {
		t.Errorf("a name of MaxNameLen+1 bytes: %v, want ErrNameTooLong", err)
	}
	for _, s := range []string{"wsroom.room.bG9iYnl", "wsroom.room.", "wsroom.room", "wsroom.room.a", "wsroom.x.YQ", "other.room.YQ", "wsroom.room.YQ==", "wsroom.room.Y+Q"} {
		if topic, ok := natsbroker.Topic("wsroom", s); ok {
			t.Errorf("Topic(%q) = %q; want it refused (not a subject natsbroker makes)", s, topic)
		}
	}
}

func TestPrefixes(t *testing.T) {
	if s, err := natsbroker.Subject("app1.ws", "all"); err != nil || s != "app1.ws.all" {
		t.Errorf("Subject with prefix app1.ws: %q, %v", s, err)
	}
	for _, p := range []string{"", ".", "a.", ".a", "a..b", "a.*", ">", "a b", "a\tb", strings.Repeat("p", 257)} {
		if _, err := natsbroker.Subject(p, "all"); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(r.(error).Error(), "natsbroker: ") {
			t.Errorf("New with an invalid prefix: recovered %v, want a natsbroker: panic", r)
		}
	}()
	natsbroker.New(natsbroker.Options{Prefix: "a.>"})
}

// FuzzSubject checks that every topic maps to a valid subject that maps
// back to it, and that any received subject is either refused or the
// subject of the topic it decodes to.
func FuzzSubject(f *testing.F) {
	for _, s := range []string{"room:lobby", "user:a.b", "all", "room:", "x", "wsroom.room.YQ", "wsroom.room._", "wsroom.topic.YWxs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if subj, err := natsbroker.Subject("wsroom", s); err == nil {
			if strings.ContainsAny(subj, " \t\r\n") {
				t.Fatalf("subject %q of %q holds whitespace", subj, s)
			}
			for tok := range strings.SplitSeq(subj, ".") {
				if tok == "" || tok == "*" || tok == ">" {
					t.Fatalf("subject %q of %q has token %q", subj, s, tok)
				}
			}
			if back, ok := natsbroker.Topic("wsroom", subj); !ok || back != s {
				t.Fatalf("Topic(Subject(%q)) = %q, %v", s, back, ok)
			}
		} else if len(s) <= natsbroker.MaxNameLen {
			t.Fatalf("Subject(%q): %v", s, err)
		}
		if topic, ok := natsbroker.Topic("wsroom", s); ok {
			if subj, err := natsbroker.Subject("wsroom", topic); err != nil || subj != s {
				t.Fatalf("Topic(%q) = %q, whose subject is %q, %v", s, topic, subj, err)
			}
		}
	})
}
