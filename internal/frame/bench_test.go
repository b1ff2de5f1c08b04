package frame

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

type discard struct{}

func (discard) OnMessage(Opcode, []byte) error { return nil }
func (discard) OnControl(Opcode, []byte) error { return nil }

func BenchmarkFeedSmallText(b *testing.B) {
	// 64 text frames of 64 bytes each per chunk. The masking key and the
	// payload are ASCII, so the payload stays valid ASCII whether it is
	// masked or not: unmasking in place twice restores it, and the same
	// chunk can be fed again without copying.
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	payload := []byte(strings64)
	var chunk []byte
	for range 64 {
		chunk = append(chunk, frameWithKey(0x81, payload, key)...)
	}
	var p Parser
	p.Init(discard{}, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Feed(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

const strings64 = "The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGH"

func BenchmarkFeedLargeBinary(b *testing.B) {
	chunk := mk(true, OpBinary, make([]byte, 1<<20))
	var p Parser
	p.Init(discard{}, 0)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < len(chunk); i += 64 << 10 {
			if err := p.Feed(chunk[i:min(i+64<<10, len(chunk))]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkUTF8(b *testing.B) {
	ascii := bytes.Repeat([]byte("Hello, world! 0123456789 abcdefghijklmnopqrstuvwxyz. "), 1300)[:64<<10]
	mixed := bytes.Repeat([]byte("Hello κόσμε, € and 😀 — ascii mostly, ok? "), 1600)[:64<<10]
	for len(mixed) > 0 && !utf8.Valid(mixed) {
		mixed = mixed[:len(mixed)-1]
	}
	cjk := bytes.Repeat([]byte("日本語のテキスト"), 3000)[:48000]
	for _, tc := range []struct {
		name string
		data []byte
	}{{"ascii", ascii}, {"mixed", mixed}, {"cjk", cjk}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.data)))
			for b.Loop() {
				var v UTF8
				if !v.Write(tc.data) || !v.Complete() {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(tc.name+"/stdlib", func(b *testing.B) {
			b.SetBytes(int64(len(tc.data)))
			for b.Loop() {
				if !utf8.Valid(tc.data) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
