package frame

import "encoding/binary"

// UTF-8 validator states. Each non-zero state below stBad means "inside a
// code point"; it names the range the next byte must fall in and the state
// that follows it.
const (
	stAccept uint8 = iota // between code points
	stCont1               // one more byte in 80..BF
	stCont2               // two more bytes in 80..BF
	stCont3               // three more bytes in 80..BF
	stE0                  // after E0: A0..BF, then one more (no overlongs)
	stED                  // after ED: 80..9F, then one more (no surrogates)
	stF0                  // after F0: 90..BF, then two more (no overlongs)
	stF4                  // after F4: 80..8F, then two more (≤ U+10FFFF)
	stBad                 // invalid, sticky
)

// Per state: the allowed range of the next byte and the state after it.
var (
	utf8Lo   = [stBad]byte{0, 0x80, 0x80, 0x80, 0xA0, 0x80, 0x90, 0x80}
	utf8Hi   = [stBad]byte{0, 0xBF, 0xBF, 0xBF, 0xBF, 0x9F, 0xBF, 0x8F}
	utf8Next = [stBad]uint8{0, stAccept, stCont1, stCont2, stCont1, stCont1, stCont2, stCont2}
)

// utf8First maps a byte that starts a code point to the state after it.
var utf8First = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c < 0x80:
			t[c] = stAccept
		case c >= 0xC2 && c <= 0xDF:
			t[c] = stCont1
		case c == 0xE0:
			t[c] = stE0
		case c == 0xED:
			t[c] = stED
		case c >= 0xE1 && c <= 0xEF:
			t[c] = stCont2
		case c == 0xF0:
			t[c] = stF0
		case c >= 0xF1 && c <= 0xF3:
			t[c] = stCont3
		case c == 0xF4:
			t[c] = stF4
		default: // continuation bytes, C0, C1, F5..FF
			t[c] = stBad
		}
	}
	return t
}()

// utf8Lead describes, for each byte that starts a multi-byte code point,
// the allowed range of the second byte (bits 0-7: low, 8-15: high) and the
// length of the code point (bits 16 and up); 0 for bytes that cannot start
// one. It is derived from utf8First so that the two cannot disagree.
var utf8Lead = func() (t [256]uint32) {
	for c := 0x80; c < 256; c++ {
		s := utf8First[c]
		if s == stBad {
			continue
		}
		n := uint32(2)
		for st := utf8Next[s]; st != stAccept; st = utf8Next[st] {
			n++
		}
		t[c] = uint32(utf8Lo[s]) | uint32(utf8Hi[s])<<8 | n<<16
	}
	return t
}()

// UTF8 is an incremental UTF-8 validator that fails at the first invalid
// byte, also when a code point is split across calls. It accepts exactly what
// utf8.Valid accepts for the whole stream: no surrogates, no overlong forms,
// nothing above U+10FFFF. The zero value is ready to use.
type UTF8 struct {
	state uint8
}

// Write validates the next bytes of the stream. It returns false as soon as
// b makes the stream invalid; the validator then stays invalid until Reset.
func (v *UTF8) Write(b []byte) bool {
	s := v.state
	if s == stBad {
		return false
	}
	p := b[:len(b):len(b)]
	// Finish a code point left unfinished by the previous call.
	for s != stAccept && len(p) > 0 {
		if c := p[0]; c < utf8Lo[s] || c > utf8Hi[s] {
			v.state = stBad
			return false
		}
		s = utf8Next[s]
		p = p[1:]
	}
	for len(p) > 0 {
		c := p[0]
		if c < 0x80 {
			p = p[1:]
			// ASCII fast path: 8, then 32 bytes at a time.
			if len(p) >= 8 && word(p)&hiBits == 0 {
				p = p[8:]
				for len(p) >= 32 && (word(p)|word(p[8:])|word(p[16:])|word(p[24:]))&hiBits == 0 {
					p = p[32:]
				}
				for len(p) >= 8 && word(p)&hiBits == 0 {
					p = p[8:]
				}
			}
			continue
		}
		x := utf8Lead[c]
		lo, hi := byte(x), byte(x>>8)
		switch x >> 16 { // bytes in the code point, 0 if c cannot start one
		case 2:
			if len(p) >= 2 {
				if p[1] < lo || p[1] > hi {
					v.state = stBad
					return false
				}
				p = p[2:]
				continue
			}
		case 3:
			if len(p) >= 3 {
				if p[1] < lo || p[1] > hi || p[2] < 0x80 || p[2] > 0xBF {
					v.state = stBad
					return false
				}
				p = p[3:]
				continue
			}
		case 4:
			if len(p) >= 4 {
				if p[1] < lo || p[1] > hi || p[2] < 0x80 || p[2] > 0xBF || p[3] < 0x80 || p[3] > 0xBF {
					v.state = stBad
					return false
				}
				p = p[4:]
				continue
			}
		default:
			v.state = stBad
			return false
		}
		s = utf8First[c]
		// The code point is cut by the end of b: step through what is here
		// and keep the state for the next call.
		for _, c := range p[1:] {
			if c < utf8Lo[s] || c > utf8Hi[s] {
				v.state = stBad
				return false
			}
			s = utf8Next[s]
		}
		break
	}
	v.state = s
	return true
}

const hiBits = 0x8080808080808080

func word(p []byte) uint64 { return binary.LittleEndian.Uint64(p) }

// Complete reports whether the stream so far is valid and ends on a code
// point boundary.
func (v *UTF8) Complete() bool { return v.state == stAccept }

// Reset makes v ready for a new stream.
func (v *UTF8) Reset() { v.state = stAccept }
