package frame

import (
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// extendable reports whether s is a prefix of some valid UTF-8 string. An
// unfinished code point needs at most three more bytes, and repeating one of
// 0x80, 0x90 or 0xA0 always satisfies the range its next byte must be in.
func extendable(s []byte) bool {
	if utf8.Valid(s) {
		return true
	}
	buf := make([]byte, len(s), len(s)+3)
	copy(buf, s)
	for _, c := range []byte{0x80, 0x90, 0xa0} {
		for n := 1; n <= 3; n++ {
			b := buf[:len(s)]
			for range n {
				b = append(b, c)
			}
			if utf8.Valid(b) {
				return true
			}
		}
	}
	return false
}

// checkStream feeds s to a validator one byte at a time and checks that it
// fails exactly at the first byte after which s cannot be valid, and that
// Complete agrees with utf8.Valid.
func checkStream(t *testing.T, s []byte) {
	t.Helper()
	var v UTF8
	for i := range s {
		ok := v.Write(s[i : i+1])
		if want := extendable(s[:i+1]); ok != want {
			t.Fatalf("%x: Write of byte %d = %v, want %v", s, i, ok, want)
		}
		if !ok {
			if v.Write(nil) || v.Complete() {
				t.Fatalf("%x: not sticky", s)
			}
			return
		}
	}
	if v.Complete() != utf8.Valid(s) {
		t.Fatalf("%x: Complete %v, utf8.Valid %v", s, v.Complete(), utf8.Valid(s))
	}
}

// whole validates s in one Write.
func whole(s []byte) bool {
	var v UTF8
	return v.Write(s) && v.Complete()
}

func TestUTF8Exhaustive(t *testing.T) {
	var b [3]byte
	for i := range 256 {
		b[0] = byte(i)
		if whole(b[:1]) != utf8.Valid(b[:1]) {
			t.Fatalf("%x", b[:1])
		}
		checkStream(t, b[:1])
		for j := range 256 {
			b[1] = byte(j)
			if whole(b[:2]) != utf8.Valid(b[:2]) {
				t.Fatalf("%x", b[:2])
			}
			checkStream(t, b[:2])
			if i < 0x80 {
				continue // covered by the two-byte case
			}
			for k := range 256 {
				b[2] = byte(k)
				if whole(b[:3]) != utf8.Valid(b[:3]) {
					t.Fatalf("%x", b[:3])
				}
			}
		}
	}
}

// boundary bytes: every range edge the validator distinguishes.
var boundary = []byte{
	0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
	0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf7, 0xf8, 0xff,
}

func TestUTF8FourBytes(t *testing.T) {
	var s [4]byte
	for _, a := range boundary {
		for _, b := range boundary {
			for _, c := range boundary {
				for _, d := range boundary {
					s = [4]byte{a, b, c, d}
					checkStream(t, s[:])
					if whole(s[:]) != utf8.Valid(s[:]) {
						t.Fatalf("%x", s)
					}
				}
			}
		}
	}
	// All four-byte sequences with a four-byte lead and continuation-range
	// bytes after it.
	for a := 0xf0; a <= 0xf4; a++ {
		for b := 0x7f; b <= 0xc0; b++ {
			for c := 0x7f; c <= 0xc0; c++ {
				for d := 0x7f; d <= 0xc0; d++ {
					s = [4]byte{byte(a), byte(b), byte(c), byte(d)}
					if whole(s[:]) != utf8.Valid(s[:]) {
						t.Fatalf("%x", s)
					}
				}
			}
		}
	}
}

func TestUTF8Random(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	runes := []rune{'a', 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff, 'é', '€', '😀'}
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		var s []byte
		for range rng.IntN(40) {
			switch rng.IntN(10) {
			case 0:
				s = append(s, byte(rng.IntN(256)))
			case 1, 2, 3:
				s = append(s, byte('a'+rng.IntN(26)))
			default:
				s = utf8.AppendRune(s, runes[rng.IntN(len(runes))])
			}
		}
		checkStream(t, s)
		if whole(s) != utf8.Valid(s) {
			t.Fatalf("%x", s)
		}
		// Random splits agree with the whole.
		var v UTF8
		ok := true
		for rest := s; len(rest) > 0 && ok; {
			k := rng.IntN(len(rest) + 1)
			ok = v.Write(rest[:k])
			rest = rest[k:]
		}
		if (ok && v.Complete()) != utf8.Valid(s) {
			t.Fatalf("%x: split result differs", s)
		}
	}
	// Long mostly-ASCII strings exercise the 8-byte path at every alignment.
	for range 2000 {
		s := make([]byte, 8+rng.IntN(64))
		for i := range s {
			s[i] = byte('a' + rng.IntN(26))
		}
		i := rng.IntN(len(s))
		s[i] = byte(0x80 + rng.IntN(128))
		var v UTF8
		ok := v.Write(s[:i])
		if !ok {
			t.Fatalf("%x: ASCII prefix rejected", s)
		}
		checkStream(t, s)
		if whole(s) != utf8.Valid(s) {
			t.Fatalf("%x", s)
		}
	}
}

func TestUTF8Reset(t *testing.T) {
	var v UTF8
	if v.Write([]byte{0xff}) {
		t.Fatal("0xff accepted")
	}
	if v.Write([]byte("a")) {
		t.Fatal("not sticky")
	}
	v.Reset()
	if !v.Write([]byte("a")) || !v.Complete() {
		t.Fatal("Reset did not reset")
	}
	if !v.Write([]byte{0xe2}) || v.Complete() {
		t.Fatal("unfinished code point reported complete")
	}
	if !v.Write([]byte{0x82, 0xac}) || !v.Complete() {
		t.Fatal("€ split across writes")
	}
}
