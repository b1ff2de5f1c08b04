package conformance

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// kosme is the Greek word "κόσμε", Markus Kuhn's first test string.
const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

// utf8Sequences are the subgroups 6.5–6.23: Autobahn's selection from
// Markus Kuhn's "UTF-8 decoder capability and stress test", in Autobahn's
// order, so that the case IDs match. Validity is not listed: Go's
// utf8.Valid agrees with RFC 3629 on every one of them.
func utf8Sequences() [][]string {
	prefixes := make([]string, len(kosme))
	for i := range prefixes {
		prefixes[i] = kosme[:i+1]
	}
	cont := make([]byte, 0, 63)
	for c := 0x80; c < 0xbf; c++ {
		cont = append(cont, byte(c))
	}
	lonely := func(from, to int) string {
		var b []byte
		for c := from; c < to; c++ {
			b = append(b, byte(c), ' ')
		}
		return string(b)
	}
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	concat := ""
	for _, m := range missing {
		concat += m
	}
	nonChars := []string{"\xef\xbf\xbe", "\xef\xbf\xbf"}
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue // above U+10FFFF
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				if z1 == 0xf0 && z2 == 0x8f {
					continue // overlong
				}
				nonChars = append(nonChars, string([]byte{z1, z2, 0xbf, z3}))
			}
		}
	}
	return [][]string{
		{"hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld", "hello\xf0\xa4\xad\xa2world", kosme}, // 6.5
		prefixes, // 6.6
		{"\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"},                                 // 6.7
		{"\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80"},                                     // 6.8
		{"\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"},                                 // 6.9
		{"\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf"},                 // 6.10
		{"\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80"}, // 6.11
		{"\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80",
			"\x80\xbf\x80\xbf\x80\xbf", string(cont)}, // 6.12
		{lonely(0xc0, 0xdf), lonely(0xe0, 0xef), lonely(0xf0, 0xf7), lonely(0xf8, 0xfb), lonely(0xfc, 0xfd)}, // 6.13
		missing,                              // 6.14
		{concat},                             // 6.15
		{"\xfe", "\xff", "\xfe\xfe\xff\xff"}, // 6.16
		{"\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf"},             // 6.17
		{"\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf"},             // 6.18
		{"\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80"},             // 6.19
		{"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"}, // 6.20
		{"\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
			"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf"}, // 6.21
		nonChars, // 6.22
		{"\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf"}, // 6.23
	}
}

// perByteFragments splits a text message into one frame per byte.
func perByteFragments(p []byte) []Frame {
	if len(p) == 0 {
		return []Frame{Text(nil)}
	}
	return Fragments(OpText, p, 1)
}

// utf8Cases is group 6.
func utf8Cases() []Case {
	hello := []byte("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!")
	invalid := []byte(kosme + "\xed\xa0\x80" + "edited")
	p1, p2, p3 := []byte(kosme), []byte("\xf4\x90\x80\x80"), []byte("edited")
	frag := func(fin bool, op byte, p []byte) Frame { return Frame{Fin: fin, Op: op, Payload: p} }
	three := func(a, b, c []byte) []Frame {
		return []Frame{frag(false, OpText, a), frag(false, OpContinuation, b), frag(true, OpContinuation, c)}
	}
	cat := func(ps ...[]byte) []byte {
		var b []byte
		for _, p := range ps {
			b = append(b, p...)
		}
		return b
	}
	slow := Chunking{PerFrame: true, Delay: time.Second}
	cs := []Case{
		newCase("6.1.1", "empty text message", Send(Whole, Text(nil)), ExpectMessage(OpText, nil)),
		newCase("6.1.2", "text message of 3 empty fragments", Send(Whole, three(nil, nil, nil)...), ExpectMessage(OpText, nil)),
		newCase("6.1.3", "text in 3 fragments, first and last empty",
			Send(Whole, three(nil, []byte("middle frame payload"), nil)...), ExpectMessage(OpText, []byte("middle frame payload"))),
		newCase("6.2.1", "valid UTF-8 in one frame", Send(Whole, Text(hello)), ExpectMessage(OpText, hello)),
		newCase("6.2.2", "valid UTF-8 in 2 fragments split on a code point boundary",
			Send(Whole, frag(false, OpText, hello[:14]), frag(true, OpContinuation, hello[14:])), ExpectMessage(OpText, hello)),
		newCase("6.2.3", "valid UTF-8 in one fragment per byte", Send(Whole, perByteFragments(hello)...), ExpectMessage(OpText, hello)),
		newCase("6.2.4", "valid UTF-8 (kosme) in one fragment per byte",
			Send(Whole, perByteFragments([]byte(kosme))...), ExpectMessage(OpText, []byte(kosme))),
		newCase("6.3.1", "invalid UTF-8 (surrogate) in one frame", SendStrict(Whole, Text(invalid)), ExpectInvalidUTF8()),
		newCase("6.3.2", "invalid UTF-8 (surrogate) in one fragment per byte",
			SendStrict(PerFrame, perByteFragments(invalid)...), ExpectInvalidUTF8()),
		newCase("6.4.1", "fail fast: 3 fragments, the 2nd makes the text invalid (1 s pauses)",
			SendStrict(slow, three(p1, p2, p3)...), ExpectInvalidUTF8()),
		newCase("6.4.2", "fail fast: 3 fragments, the 2nd is the single invalid byte (1 s pauses)",
			SendStrict(slow, three(cat(p1, p2[:1]), p2[1:2], cat(p2[2:], p3))...), ExpectInvalidUTF8()),
		newCase("6.4.3", "fail fast: one frame in 3 chops (1 s pauses)",
			SendStrict(Chunking{PayloadCuts: []int{11, 15}, Delay: time.Second}, Text(cat(p1, p2, p3))), ExpectInvalidUTF8()),
		newCase("6.4.4", "fail fast: one frame in 3 chops, the 2nd the single invalid byte (1 s pauses)",
			SendStrict(Chunking{PayloadCuts: []int{12, 13}, Delay: time.Second}, Text(cat(p1, p2, p3))), ExpectInvalidUTF8()),
	}
	for i, seqs := range utf8Sequences() {
		for j, s := range seqs {
			id := fmt.Sprintf("6.%d.%d", i+5, j+1)
			p := []byte(s)
			if utf8.Valid(p) {
				cs = append(cs, newCase(id, "valid UTF-8 "+hexString(p), Send(Whole, Text(p)), ExpectMessage(OpText, p)))
				continue
			}
			cs = append(cs, newCase(id, "invalid UTF-8 "+hexString(p), SendStrict(Whole, Text(p)), ExpectInvalidUTF8()))
			if len(p) > 1 {
				c := newCase(id+"f", "invalid UTF-8 "+hexString(p)+", one fragment per byte",
					SendStrict(PerFrame, perByteFragments(p)...), ExpectInvalidUTF8())
				c.Extra = true
				cs = append(cs, c)
			}
		}
	}
	return cs
}

// hexString shows up to 16 bytes of p in hex.
func hexString(p []byte) string {
	s := ""
	for i, c := range p {
		if i == 16 {
			return s + "… (" + strconv.Itoa(len(p)) + " bytes)"
		}
		s += fmt.Sprintf("%02x", c)
	}
	return s
}
