package conformance

import (
	"bytes"
	"compress/flate"
	"net/http"
	"strings"
	"testing"
)

// TestParseExtensions checks the Sec-WebSocket-Extensions parser.
func TestParseExtensions(t *testing.T) {
	got, err := parseExtensions(` permessage-deflate ; client_max_window_bits; server_max_window_bits="10" ,, x-foo;a=b `)
	if err != nil {
		t.Fatal(err)
	}
	want := []extElem{
		{pmdName, []extParam{{"client_max_window_bits", "", false}, {"server_max_window_bits", "10", true}}},
		{"x-foo", []extParam{{"a", "b", true}}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].Name != want[i].Name || len(got[i].Params) != len(want[i].Params) {
			t.Fatalf("element %d: got %+v, want %+v", i, got[i], want[i])
		}
		for j := range want[i].Params {
			if got[i].Params[j] != want[i].Params[j] {
				t.Errorf("element %d param %d: got %+v, want %+v", i, j, got[i].Params[j], want[i].Params[j])
			}
		}
	}
	for _, bad := range []string{"permessage-deflate; ", "permessage-deflate x", `a; b="c`, "a; b=", "; a"} {
		if _, err := parseExtensions(bad); err == nil {
			t.Errorf("parseExtensions(%q) accepted", bad)
		}
	}
}

// TestJudgeAnswer checks answers against offers (RFC 7692 section 7).
func TestJudgeAnswer(t *testing.T) {
	for _, tc := range []struct {
		offer, answer string
		ok, accepted  bool
	}{
		{DefaultOffer, "", true, false},
		{DefaultOffer, "permessage-deflate", true, true},
		{DefaultOffer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true, true},
		{DefaultOffer, "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12", true, true},
		{DefaultOffer, "permessage-deflate; client_max_window_bits", false, false},
		{DefaultOffer, "permessage-deflate; client_max_window_bits=16", false, false},
		{DefaultOffer, "permessage-deflate; server_max_window_bits=010", false, false},
		{DefaultOffer, "permessage-deflate; server_no_context_takeover; server_no_context_takeover", false, false},
		{DefaultOffer, "permessage-deflate; server_no_context_takeover=1", false, false},
		{DefaultOffer, "permessage-deflate; foo", false, false},
		{DefaultOffer, "permessage-deflate, permessage-deflate", false, false},
		{DefaultOffer, "x-webkit-deflate-frame", false, false},
		{"permessage-deflate", "permessage-deflate; client_max_window_bits=15", false, false},
		{"permessage-deflate; server_max_window_bits=10", "permessage-deflate", false, false},
		{"permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=11", false, false},
		{"permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=9", true, true},
		{"permessage-deflate; server_no_context_takeover", "permessage-deflate", false, false},
		{"permessage-deflate; client_max_window_bits=9", "permessage-deflate; client_max_window_bits=10", false, false},
		{"permessage-deflate; server_max_window_bits=7", "permessage-deflate", false, false},
		{"permessage-deflate; server_max_window_bits=7, permessage-deflate", "permessage-deflate", true, true},
		{"permessage-deflate; server_max_window_bits=9, permessage-deflate", `permessage-deflate; server_max_window_bits="15"`, true, true},
	} {
		resp := &http.Response{Header: http.Header{}}
		if tc.answer != "" {
			resp.Header.Set("Sec-WebSocket-Extensions", tc.answer)
		}
		neg, err := judgeAnswer(tc.offer, resp)
		if (err == nil) != tc.ok || neg.Accepted != tc.accepted {
			t.Errorf("offer %q, answer %q: accepted %v, err %v; want ok %v, accepted %v", tc.offer, tc.answer, neg.Accepted, err, tc.ok, tc.accepted)
		}
	}
}

// TestDeflateRoundTrip checks the runner's compressor against its
// inflater, with and without context takeover and small windows.
func TestDeflateRoundTrip(t *testing.T) {
	data := datasets()[0].Data
	for _, tc := range []struct{ takeover, smallWin bool }{{true, false}, {false, false}, {true, true}} {
		d := deflater{takeover: tc.takeover, smallWin: tc.smallWin}
		in := inflater{takeover: tc.takeover}
		at := 0
		for i := range 20 {
			msg := cyclic(data, &at, 4096)
			c := d.compress(msg)
			if bytes.HasSuffix(c, syncTail) {
				t.Fatalf("%+v: message %d keeps the sync flush tail", tc, i)
			}
			out, err := in.inflate(c)
			if err != nil || !bytes.Equal(out, msg) {
				t.Fatalf("%+v: message %d: %v", tc, i, err)
			}
			dist, err := maxBackRef(c)
			if err != nil {
				t.Fatalf("%+v: message %d: maxBackRef: %v", tc, i, err)
			}
			if tc.smallWin && dist != 0 {
				t.Fatalf("%+v: Huffman-only data refers back %d bytes", tc, dist)
			}
			if !tc.smallWin && dist <= 512 {
				t.Fatalf("%+v: JSON at level 1 refers back only %d bytes", tc, dist)
			}
		}
	}
	// Without takeover on the reading side, data that refers back to an
	// earlier message fails to inflate.
	d := deflater{takeover: true}
	d.compress(data[:4096])
	if _, err := (&inflater{}).inflate(d.compress(data[:4096])); err == nil {
		t.Error("inflating without the earlier message's context succeeded")
	}
}

// TestMaxBackRef checks distances on known and stored data.
func TestMaxBackRef(t *testing.T) {
	for _, tc := range []struct {
		in    string
		level int
		want  int
	}{
		{strings.Repeat("abc", 100), flate.BestCompression, 3},
		{strings.Repeat("x", 1000), flate.BestCompression, 1},
		{"abcdefgh", flate.NoCompression, 0},
		{"", flate.BestSpeed, 0},
	} {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, tc.level)
		w.Write([]byte(tc.in))
		w.Flush()
		got, err := maxBackRef(bytes.TrimSuffix(b.Bytes(), syncTail))
		if err != nil || got != tc.want {
			t.Errorf("%.10q at level %d: got %d, %v; want %d", tc.in, tc.level, got, err, tc.want)
		}
	}
	if _, err := maxBackRef([]byte{0xff, 0xff}); err == nil {
		t.Error("reserved block type accepted")
	}
}
