package redisbroker

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
)

// FuzzCallReplies feeds arbitrary bytes from "Redis" to the parsers of
// the history and presence replies, as the pipeline's reader hands them
// over (the first line read): none may panic, and what they keep never
// exceeds the bytes given.
func FuzzCallReplies(f *testing.F) {
	for _, s := range []string{
		"*2\r\n$13\r\nABCDEFGHIJKLM\r\n:42\r\n",
		"*6\r\n$4\r\nEPOC\r\n:9\r\n$0\r\n\r\n:8\r\n$15\r\n1700000000000ab\r\n$14\r\n1700000000000c\r\n",
		"*2\r\n$7\r\nu1\x002:A\r\n$5\r\nu2\x001:\r\n",
		"*4\r\n$2\r\nu1\r\n$1\r\nx\r\n$2\r\nu2\r\n$0\r\n\r\n",
		"*2\r\n$1\r\n0\r\n*2\r\n$2\r\nr1\r\n$2\r\nr2\r\n",
		"*2\r\n$1\r\nn\r\n$1\r\n3\r\n",
		"$5\r\nnode1\r\n$-1\r\n",
		"*99999999\r\n",
	} {
		f.Add([]byte(s))
	}
	b := New(Options{Logger: nil, MaxPayload: 1 << 10})
	defer b.Close()
	parsers := map[string]func(*call, *respReader, []byte) (reply, error){
		"position": parsePosition, "read": b.parseHistoryRead, "room": b.parseRoomPresence,
		"left": b.parseLeft, "scan": parseScan, "counts": parseCounts, "strings": parseStrings, "optstring": parseOptString,
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for name, parse := range parsers {
			r := newRESPReader(bytes.NewReader(in))
			for range 10 {
				l, err := r.line()
				if err != nil {
					break
				}
				c := &call{}
				if _, err := parse(c, r, l); err != nil {
					break
				}
				if k := kept(c.val); k > len(in) {
					t.Fatalf("%s kept %d bytes from %d", name, k, len(in))
				}
			}
		}
	})
}

// kept counts the bytes of strings and slices in a parser's result.
func kept(v any) int {
	n := 0
	switch v := v.(type) {
	case nil:
	case string:
		n = len(v)
	case []string:
		for _, s := range v {
			n += len(s)
		}
	case scanResult:
		n = len(v.cursor) + kept(v.items)
	case map[string]int:
		for k := range v {
			n += len(k)
		}
	default:
		n = len(fmt.Sprint(v)) / 4 // positions, reads, presence: bounded by their printed form
	}
	return n
}

// FuzzFrame: parsePositioned never panics, and what it returns is a
// frame's parts.
func FuzzFrame(f *testing.F) {
	f.Add([]byte("42 ABCDEFGHIJKLM\npayload"))
	f.Add([]byte("1 E\n"))
	f.Add([]byte("99999999999999999999 E\nx"))
	f.Fuzz(func(t *testing.T, in []byte) {
		off, epoch, payload, err := parsePositioned(in)
		if err != nil {
			return
		}
		again := append(append(append([]byte(strconv.FormatUint(off, 10)+" "), epoch...), '\n'), payload...)
		if len(epoch) == 0 || len(epoch) > maxEpochLen || bytes.ContainsAny(epoch, " \n") || !bytes.HasSuffix(in, payload) || len(again) > len(in)+20 {
			t.Fatalf("%q parsed as %d %q %q", in, off, epoch, payload)
		}
	})
}
