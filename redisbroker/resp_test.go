package redisbroker

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func TestPushes(t *testing.T) {
	in := "*3\r\n$7\r\nmessage\r\n$4\r\nch:1\r\n$5\r\nhello\r\n" +
		"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:7\r\n" +
		"*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$0\r\n\r\n" +
		"*2\r\n$4\r\npong\r\n$0\r\n\r\n" +
		"+PONG\r\n" +
		"-MOVED 12 127.0.0.1:7000\r\n" +
		"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$11\r\nhello world\r\n" +
		"*3\r\n$7\r\nmessage\r\n$1\r\nd\r\n$2\r\nok\r\n"
	r := newRESPReader(strings.NewReader(in))
	var p push
	check := func(kind, ch, payload string, count int64, tooBig bool, rerr string) {
		t.Helper()
		if err := r.push(&p, 10); err != nil {
			t.Fatal(err)
		}
		got := ""
		if p.rerr != nil {
			got = string(p.rerr.(RedisError))
		}
		if p.kind != kind || string(p.channel) != ch || string(p.payload) != payload || p.count != count || p.tooBig != tooBig || got != rerr {
			t.Fatalf("got %+v, want %s %s %q %d %v %q", p, kind, ch, payload, count, tooBig, rerr)
		}
	}
	check("message", "ch:1", "hello", 0, false, "")
	check("subscribe", "ch", "", 7, false, "")
	check("smessage", "c", "", 0, false, "")
	check("pong", "", "", 0, false, "")
	check("pong", "", "", 0, false, "")
	check("", "", "", 0, false, "MOVED 12 127.0.0.1:7000")
	check("message", "c", "", 0, true, "") // 11 bytes over the limit of 10: discarded
	check("message", "d", "ok", 0, false, "")
	if err := r.push(&p, 10); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}

func TestStatusReplies(t *testing.T) {
	r := newRESPReader(strings.NewReader(":3\r\n+OK\r\n-ERR no\r\n$3\r\nabc\r\n"))
	for i, want := range []string{"", "", "ERR no"} {
		rerr, err := r.status()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if got := ""; rerr != nil {
			got = string(rerr.(RedisError))
			if got != want {
				t.Fatalf("reply %d: %q, want %q", i, got, want)
			}
		} else if want != "" {
			t.Fatalf("reply %d: no error, want %q", i, want)
		}
	}
	if _, err := r.status(); !errors.Is(err, errProtocol) {
		t.Fatalf("a bulk reply to PUBLISH: %v, want a protocol error", err)
	}
}

func TestValueBounds(t *testing.T) {
	for _, in := range []string{
		"*2000000\r\n",                         // more elements than allowed
		"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", // too deep
		"$100000\r\n",                          // bulk over the limit
		"$5\r\nab\r\n",                         // short
		":12x\r\n",                             // bad integer
		"?\r\n",                                // unknown type
		"*1\n",                                 // no CR
	} {
		if _, err := newRESPReader(strings.NewReader(in)).value(); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// FuzzRESP feeds arbitrary bytes from "Redis" to each reader: none may
// panic, and none may allocate more than the bytes given allow.
func FuzzRESP(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$7\r\nmessage\r\n$4\r\nch:1\r\n$5\r\nhello\r\n",
		"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:7\r\n",
		":1\r\n+OK\r\n-ERR x\r\n",
		"*1\r\n*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n",
		"$-1\r\n*-1\r\n",
		"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$999999999\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := newRESPReader(bytes.NewReader(in))
		var p push
		for range 100 {
			if err := r.push(&p, 1<<10); err != nil {
				break
			}
			if len(p.payload) > len(in) || len(p.channel) > len(in) {
				t.Fatalf("read %d+%d bytes from %d", len(p.channel), len(p.payload), len(in))
			}
		}
		r = newRESPReader(bytes.NewReader(in))
		for range 100 {
			if _, err := r.value(); err != nil {
				break
			}
		}
		r = newRESPReader(bytes.NewReader(in))
		for range 100 {
			if _, err := r.status(); err != nil {
				break
			}
		}
		if c := cap(r.body) + cap(r.ch) + cap(r.kind); c > 2*len(in)+3*(64<<10) {
			t.Fatalf("buffers of %d bytes for %d bytes of input", c, len(in))
		}
	})
}
