package conformance

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
)

// Deflate test data, in place of Autobahn's files (a JSON file, an HTML
// page, Goethe's Faust, the Lena bitmap and a PDF): deterministic
// generated data of similar size and character. The text data sets are
// ASCII, like Autobahn's, so that any slice of them is valid UTF-8.

// dataset is one body of test data; messages are consecutive slices of
// it, wrapping around, as Autobahn takes them.
type dataset struct {
	Name string
	Op   byte
	Data []byte
}

// datasets returns the five data sets of group 12, in case order.
var datasets = sync.OnceValue(func() []dataset {
	return []dataset{
		{"JSON records", OpText, jsonData()},
		{"grey-scale bitmap", OpBinary, imageData()},
		{"German verse, sent as binary", OpBinary, verseData()},
		{"HTML page", OpText, htmlData()},
		{"PDF-like document", OpBinary, pdfData()},
	}
})

var englishWords = strings.Fields(`the of and to in is was for on that with as by at from this be are or an
which have not has had were but all their one there been more its when who will would can about if no
out so what up into time than them some other only new could these two may first then do any like my now
over such our man me even most made after also did many before must through back years where much your
way well down should because each just those people how too little state good very make world still own
see men work long get here between both life being under never day same another know while last might
great old year off come since against go came right used take three`)

func pick(r *rand.Rand, words []string, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[r.IntN(len(words))]
	}
	return strings.Join(ws, " ")
}

// jsonData is an array of user records, about 192 KiB.
func jsonData() []byte {
	r := rand.New(rand.NewPCG(12, 1))
	var b bytes.Buffer
	b.WriteString("[\n")
	for i := 0; b.Len() < 192<<10; i++ {
		first, last := englishWords[r.IntN(len(englishWords))], englishWords[r.IntN(len(englishWords))]
		fmt.Fprintf(&b, `  {"id": %d, "guid": "%08x-%04x-%04x", "isActive": %t, "balance": "$%d,%03d.%02d", "age": %d, `,
			i, r.Uint32(), r.IntN(1<<16), r.IntN(1<<16), r.IntN(2) == 0, r.IntN(10), r.IntN(1000), r.IntN(100), 18+r.IntN(60))
		fmt.Fprintf(&b, `"name": "%s %s", "email": "%s.%s@example.com", "latitude": %.6f, "longitude": %.6f, `,
			first, last, first, last, r.Float64()*180-90, r.Float64()*360-180)
		fmt.Fprintf(&b, `"tags": ["%s", "%s", "%s"], "about": "%s."},`+"\n",
			englishWords[r.IntN(len(englishWords))], englishWords[r.IntN(len(englishWords))],
			englishWords[r.IntN(len(englishWords))], pick(r, englishWords, 8+r.IntN(20)))
	}
	b.WriteString("  {}\n]\n")
	return b.Bytes()
}

// htmlData is a page of nested markup, about 84 KiB.
func htmlData() []byte {
	r := rand.New(rand.NewPCG(12, 4))
	var b bytes.Buffer
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Test page</title>\n" +
		"<link rel=\"stylesheet\" href=\"/static/site.css\">\n</head>\n<body>\n<nav class=\"top\"><ul>\n")
	for i := range 12 {
		fmt.Fprintf(&b, "  <li class=\"nav-item\"><a href=\"/section/%d\">%s</a></li>\n", i, pick(r, englishWords, 2))
	}
	b.WriteString("</ul></nav>\n<main>\n")
	for i := 0; b.Len() < 84<<10; i++ {
		fmt.Fprintf(&b, "<section id=\"s%d\" class=\"article\">\n  <h2>%s</h2>\n", i, pick(r, englishWords, 4))
		for range 1 + r.IntN(3) {
			fmt.Fprintf(&b, "  <p>%s <a href=\"https://example.com/%s/%d\">%s</a> %s.</p>\n",
				pick(r, englishWords, 10+r.IntN(30)), englishWords[r.IntN(len(englishWords))], r.IntN(10000),
				pick(r, englishWords, 2), pick(r, englishWords, 5+r.IntN(15)))
		}
		if r.IntN(3) == 0 {
			b.WriteString("  <table class=\"data\">\n")
			for range 3 + r.IntN(4) {
				fmt.Fprintf(&b, "    <tr><td>%d</td><td>%s</td><td class=\"num\">%.2f</td></tr>\n", r.IntN(1000), pick(r, englishWords, 2), r.Float64()*100)
			}
			b.WriteString("  </table>\n")
		}
		b.WriteString("</section>\n")
	}
	b.WriteString("</main>\n</body>\n</html>\n")
	return b.Bytes()
}

var germanWords = strings.Fields(`ich du er sie es wir und der die das nicht mich mir dich dir wohl doch so was
wie hab habe nun ach Welt Himmel Erde Geist Nacht Zimmer über schön Mädchen Blüte Frühling grüß müssen
können Herz Straße größer Wälder Tür Schüler Türmer Lust Qual Tag Licht Gott Teufel Seele Natur Kraft
Wissen Buch Freund Brust Hände Gefühl Glück Leben Zeit früh spät wär hätt möcht heiß kühl süß`)

// verseData is German verse with speakers, about 216 KiB of UTF-8 (sent
// as binary, as Autobahn sends its Faust text).
func verseData() []byte {
	r := rand.New(rand.NewPCG(12, 3))
	speakers := []string{"FAUST", "MEPHISTOPHELES", "GRETCHEN", "WAGNER", "MARTHE", "CHOR"}
	var b bytes.Buffer
	for b.Len() < 216<<10 {
		fmt.Fprintf(&b, "\n%s:\n", speakers[r.IntN(len(speakers))])
		for range 2 + r.IntN(8) {
			line := pick(r, germanWords, 4+r.IntN(6))
			fmt.Fprintf(&b, "%s%s\n", strings.ToUpper(line[:1]), line[1:])
		}
	}
	return b.Bytes()
}

// imageData is a 512×512 8-bit grey-scale BMP: smooth shapes with noise,
// 263 222 bytes like Autobahn's Lena bitmap.
func imageData() []byte {
	r := rand.New(rand.NewPCG(12, 2))
	const w, h, hdr = 512, 512, 14 + 40 + 256*4
	b := make([]byte, hdr, hdr+w*h)
	copy(b, "BM")
	binary.LittleEndian.PutUint32(b[2:], hdr+w*h)
	binary.LittleEndian.PutUint32(b[10:], hdr)
	binary.LittleEndian.PutUint32(b[14:], 40)
	binary.LittleEndian.PutUint32(b[18:], w)
	binary.LittleEndian.PutUint32(b[22:], h)
	binary.LittleEndian.PutUint16(b[26:], 1)
	binary.LittleEndian.PutUint16(b[28:], 8)
	binary.LittleEndian.PutUint32(b[34:], w*h)
	binary.LittleEndian.PutUint32(b[46:], 256)
	for i := range 256 {
		b[54+4*i], b[55+4*i], b[56+4*i] = byte(i), byte(i), byte(i)
	}
	for y := range h {
		for x := range w {
			v := 128 + 60*math.Sin(float64(x)/37) + 50*math.Cos(float64(y)/23+float64(x)/91)
			v += float64(r.IntN(16)) - 8
			b = append(b, byte(min(255, max(0, v))))
		}
	}
	return b
}

// pdfData is PDF-like: text objects and content streams in ASCII, with
// binary streams of random (incompressible) bytes, about 512 KiB.
func pdfData() []byte {
	r := rand.New(rand.NewPCG(12, 5))
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	for obj := 1; b.Len() < 512<<10; obj++ {
		switch obj % 3 {
		case 0:
			n := 2<<10 + r.IntN(8<<10)
			fmt.Fprintf(&b, "%d 0 obj\n<< /Type /XObject /Subtype /Image /Width %d /Height %d /Filter /DCTDecode /Length %d >>\nstream\n", obj, 64+r.IntN(512), 64+r.IntN(512), n)
			for range n {
				b.WriteByte(byte(r.Uint32()))
			}
			b.WriteString("\nendstream\nendobj\n")
		default:
			var s bytes.Buffer
			for range 10 + r.IntN(30) {
				fmt.Fprintf(&s, "BT /F%d %d Tf %d %d Td (%s) Tj ET\n", 1+r.IntN(3), 8+r.IntN(8), r.IntN(600), r.IntN(800), pick(r, englishWords, 6+r.IntN(10)))
			}
			fmt.Fprintf(&b, "%d 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n", obj, s.Len(), s.Bytes())
		}
	}
	b.WriteString("trailer\n<< /Root 1 0 R >>\n%%EOF\n")
	return b.Bytes()
}

// cyclic returns the n bytes of data from *at on, wrapping around, and
// advances *at.
func cyclic(data []byte, at *int, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		k := min(n-len(out), len(data)-*at)
		out = append(out, data[*at:*at+k]...)
		*at = (*at + k) % len(data)
	}
	return out
}

// bombChunks returns deflate data for 1 MiB of zeros from a fresh
// stream (first) and for each further MiB (next): first followed by k
// copies of next inflates to k+1 MiB of zeros, each piece ending in a
// sync flush.
var bombChunks = sync.OnceValues(func() (first, next []byte) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	w.Write(zeros)
	w.Flush()
	first = bytes.Clone(buf.Bytes())
	buf.Reset()
	w.Write(zeros)
	w.Flush()
	return first, bytes.Clone(buf.Bytes())
})

// bombFrames returns a compressed message of mib MiB of zeros (in text
// frames of one chunk each, or one frame), RSV1 on the first.
func bombFrames(mib int, split bool) []Frame {
	first, next := bombChunks()
	chunks := [][]byte{first}
	for range mib - 1 {
		chunks = append(chunks, next)
	}
	last := len(chunks) - 1
	chunks[last] = bytes.TrimSuffix(chunks[last], syncTail)
	if !split {
		fs := []Frame{Text(bytes.Join(chunks, nil))}
		fs[0].Rsv = RSV1
		return fs
	}
	var fs []Frame
	for i, c := range chunks {
		f := Frame{Fin: i == last, Op: OpContinuation, Payload: c}
		if i == 0 {
			f.Op, f.Rsv = OpText, RSV1
		}
		fs = append(fs, f)
	}
	return fs
}
