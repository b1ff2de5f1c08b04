package wsroom

import (
	"compress/flate"
	"strings"
	"testing"

	"github.com/wsroom/wsroom/internal/frame"
)

// BenchmarkCompressFrame measures compressing one 4 KiB JSON message into
// a frame: the cost a broadcast pays once.
func BenchmarkCompressFrame(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 4096; i++ {
		sb.WriteString(`{"id":` + strings.Repeat("7", i%5+1) + `,"user":"someone","text":"hello from the room"},`)
	}
	data := []byte(sb.String()[:4096])
	for _, level := range []int{flate.BestSpeed, flate.DefaultCompression, flate.HuffmanOnly} {
		b.Run(strings.ReplaceAll(flateLevelName(level), " ", ""), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			var n int
			for b.Loop() {
				n = len(compressFrame(frame.OpText, data, level))
			}
			b.ReportMetric(float64(n), "frameB")
		})
	}
}

func flateLevelName(level int) string {
	switch level {
	case flate.HuffmanOnly:
		return "huffman-only"
	case flate.DefaultCompression:
		return "level6"
	}
	return "level1"
}
