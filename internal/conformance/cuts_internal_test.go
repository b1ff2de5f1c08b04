package conformance

import (
	"slices"
	"testing"
	"time"
)

// TestCuts checks where sends are cut into writes.
func TestCuts(t *testing.T) {
	frames := []Frame{
		{Op: OpText, Payload: []byte("abc")},
		{Fin: true, Op: OpContinuation, Payload: []byte("\xed\xa0\x80")},
	}
	wire, starts := encodeFrames(frames) // two frames of 6+3 bytes
	if len(wire) != 18 || !slices.Equal(starts, []int{0, 9}) {
		t.Fatalf("wire %d bytes, starts %v", len(wire), starts)
	}
	// The first invalid byte is 0xa0, at wire offset 9+6+1.
	if got := strictCut(frames, starts); got != 17 {
		t.Errorf("strictCut = %d, want 17", got)
	}
	for _, tc := range []struct {
		ch    Chunking
		extra int
		want  []int
	}{
		{Whole, -1, []int{18}},
		{Whole, 17, []int{17, 18}},
		{PerFrame, -1, []int{9, 18}},
		{PerFrame, 9, []int{9, 18}},
		{Chops(5, 0), 17, []int{5, 10, 15, 17, 18}},
		{PerByte, 18, seq(1, 18)},
		{Chunking{PayloadCuts: []int{1, 2}, Delay: time.Second}, 4, []int{4, 7, 8, 18}},
	} {
		if got := cuts(frames, wire, starts, tc.ch, tc.extra); !slices.Equal(got, tc.want) {
			t.Errorf("cuts(%+v, %d) = %v, want %v", tc.ch, tc.extra, got, tc.want)
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestMaskRoundTrip checks the word-wise masking against the plain one.
func TestMaskRoundTrip(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for n := range 20 {
		p := repeat("abcdefg", n)
		q := append([]byte(nil), p...)
		mask(q, key)
		for i := range p {
			if q[i] != p[i]^key[i&3] {
				t.Fatalf("n=%d: byte %d masked wrong", n, i)
			}
		}
	}
}
