package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseTable(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name string
		in   string
		max  int
		want Envelope // checked when reason == ""
		// reason is a substring of the expected error; "" means accept.
		reason string
	}{
		// Accepted.
		{name: "to only", in: `{"to":["bob"],"data":1}`,
			want: Envelope{To: []string{"bob"}, Data: json.RawMessage(`1`)}},
		{name: "room only", in: `{"room":"lobby","data":"hi"}`,
			want: Envelope{Room: "lobby", Data: json.RawMessage(`"hi"`)}},
		{name: "to and room and id", in: `{"id":"7","room":"r","to":["a","b"],"data":{"k":[1,2]}}`,
			want: Envelope{To: []string{"a", "b"}, Room: "r", ID: "7", Data: json.RawMessage(`{"k":[1,2]}`)}},
		{name: "null data", in: `{"room":"r","data":null}`,
			want: Envelope{Room: "r", Data: json.RawMessage(`null`)}},
		{name: "whitespace compacted", in: " \n{ \"room\" : \"r\" ,\t\"data\" : { \"a\" : [ 1 , \"x y\" ] } }\r\n ",
			want: Envelope{Room: "r", Data: json.RawMessage(`{"a":[1,"x y"]}`)}},
		{name: "data kept verbatim", in: `{"room":"r","data":{"b":1e3,"a":"\u00e9\n","a":2}}`,
			want: Envelope{Room: "r", Data: json.RawMessage(`{"b":1e3,"a":"\u00e9\n","a":2}`)}},
		{name: "empty id is absent", in: `{"room":"r","data":0,"id":""}`,
			want: Envelope{Room: "r", Data: json.RawMessage(`0`)}},
		{name: "escaped strings", in: `{"to":["\u0062ob","a\"b"],"room":"\u00e9","data":[]}`,
			want: Envelope{To: []string{"bob", `a"b`}, Room: "é", Data: json.RawMessage(`[]`)}},
		{name: "dedup", in: `{"to":["b","a","b","c","a"],"data":1}`,
			want: Envelope{To: []string{"b", "a", "c"}, Data: json.RawMessage(`1`)}},
		{name: "max exact", in: `{"to":["a","b","c"],"data":1}`, max: 3,
			want: Envelope{To: []string{"a", "b", "c"}, Data: json.RawMessage(`1`)}},
		{name: "max counts duplicates", in: `{"to":["a","a","a"],"data":1}`, max: 3,
			want: Envelope{To: []string{"a"}, Data: json.RawMessage(`1`)}},
		{name: "user id at limit", in: `{"to":["` + long(256) + `"],"data":1}`,
			want: Envelope{To: []string{long(256)}, Data: json.RawMessage(`1`)}},
		{name: "room at limit", in: `{"room":"` + long(256) + `","data":1}`,
			want: Envelope{Room: long(256), Data: json.RawMessage(`1`)}},
		{name: "id at limit", in: `{"room":"r","data":1,"id":"` + long(128) + `"}`,
			want: Envelope{Room: "r", ID: long(128), Data: json.RawMessage(`1`)}},

		// Rejected: not an object / not JSON.
		{name: "empty", in: ``, reason: "not valid JSON"},
		{name: "blank", in: "  \n", reason: "not valid JSON"},
		{name: "garbage", in: `hello`, reason: "not valid JSON"},
		{name: "array", in: `[{"room":"r","data":1}]`, reason: "must be a JSON object"},
		{name: "string", in: `"x"`, reason: "must be a JSON object"},
		{name: "null", in: `null`, reason: "must be a JSON object"},
		{name: "number", in: `12`, reason: "must be a JSON object"},
		{name: "truncated", in: `{"room":"r","data":1`, reason: "not valid JSON"},
		{name: "trailing object", in: `{"room":"r","data":1}{}`, reason: "not valid JSON"},
		{name: "trailing garbage", in: `{"room":"r","data":1} x`, reason: "not valid JSON"},
		{name: "trailing comma", in: `{"room":"r","data":1,}`, reason: "not valid JSON"},
		{name: "invalid data", in: `{"room":"r","data":[1,]}`, reason: "not valid JSON"},
		{name: "single quotes", in: `{'room':'r','data':1}`, reason: "not valid JSON"},
		{name: "invalid utf8", in: "{\"room\":\"r\xff\",\"data\":1}", reason: "not valid UTF-8"},
		{name: "invalid utf8 in data", in: "{\"room\":\"r\",\"data\":\"\xc3\"}", reason: "not valid UTF-8"},

		// Rejected: fields.
		{name: "missing data", in: `{"room":"r"}`, reason: `missing field "data"`},
		{name: "no target", in: `{"data":1}`, reason: `needs "to" or "room"`},
		{name: "empty object", in: `{}`, reason: `missing field "data"`},
		{name: "unknown field", in: `{"too":["a"],"data":1}`, reason: `unknown field "too"`},
		{name: "case sensitive", in: `{"To":["a"],"data":1}`, reason: `unknown field "To"`},
		{name: "unknown field truncated", in: `{"` + long(1000) + `":1}`, reason: `unknown field "` + long(64) + `"…`},
		{name: "dup to", in: `{"to":["a"],"to":["b"],"data":1}`, reason: `duplicate field "to"`},
		{name: "dup room", in: `{"room":"a","data":1,"room":"a"}`, reason: `duplicate field "room"`},
		{name: "dup data", in: `{"room":"a","data":1,"data":2}`, reason: `duplicate field "data"`},
		{name: "dup id", in: `{"room":"a","id":"1","data":1,"id":"1"}`, reason: `duplicate field "id"`},
		{name: "to not array", in: `{"to":"bob","data":1}`, reason: `"to" must be an array of strings`},
		{name: "to null", in: `{"to":null,"room":"r","data":1}`, reason: `"to" must be an array of strings`},
		{name: "to number entry", in: `{"to":["a",1],"data":1}`, reason: `"to" must be an array of strings`},
		{name: "to nested", in: `{"to":[["a"]],"data":1}`, reason: `"to" must be an array of strings`},
		{name: "to empty", in: `{"to":[],"room":"r","data":1}`, reason: `"to" must not be empty`},
		{name: "to empty id", in: `{"to":["a",""],"data":1}`, reason: "empty user ID"},
		{name: "to long id", in: `{"to":["` + long(257) + `"],"data":1}`, reason: "longer than 256 bytes"},
		{name: "to too many", in: `{"to":["a","b","c","d"],"data":1}`, max: 3, reason: `"to" has more than 3 recipients`},
		{name: "to too many dups", in: `{"to":["a","a","a","a"],"data":1}`, max: 3, reason: "more than 3 recipients"},
		{name: "room not string", in: `{"room":1,"data":1}`, reason: `"room" must be a string`},
		{name: "room null", in: `{"room":null,"to":["a"],"data":1}`, reason: `"room" must be a string`},
		{name: "room empty", in: `{"room":"","to":["a"],"data":1}`, reason: `"room" must not be empty`},
		{name: "room long", in: `{"room":"` + long(257) + `","data":1}`, reason: `"room" is longer than 256 bytes`},
		{name: "id not string", in: `{"room":"r","data":1,"id":7}`, reason: `"id" must be a string`},
		{name: "id long", in: `{"room":"r","data":1,"id":"` + long(129) + `"}`, reason: `"id" is longer than 128 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in), tt.max)
			if tt.reason != "" {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Parse(%q) error = %v, want *Error containing %q", tt.in, err, tt.reason)
				}
				if !strings.Contains(e.Reason, tt.reason) || e.Error() != e.Reason {
					t.Fatalf("Parse(%q) reason = %q, want substring %q", tt.in, e.Reason, tt.reason)
				}
				if got.To != nil || got.Room != "" || got.Data != nil {
					t.Fatalf("Parse(%q) returned %+v with error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseDefaultMax(t *testing.T) {
	mk := func(n int) []byte {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("u%d", i)
		}
		b, _ := json.Marshal(map[string]any{"to": ids, "data": 1})
		return b
	}
	for _, max := range []int{0, -1} {
		if env, err := Parse(mk(100), max); err != nil || len(env.To) != 100 {
			t.Fatalf("max=%d: 100 recipients: len=%d err=%v", max, len(env.To), err)
		}
		if _, err := Parse(mk(101), max); err == nil || !strings.Contains(err.Error(), "more than 100 recipients") {
			t.Fatalf("max=%d: 101 recipients: err=%v", max, err)
		}
	}
	if env, err := Parse(mk(500), 1000); err != nil || len(env.To) != 500 {
		t.Fatalf("max=1000: len=%d err=%v", len(env.To), err)
	}
}

func TestParseErrorKeepsID(t *testing.T) {
	env, err := Parse([]byte(`{"id":"abc","room":"r","to":[]}`), 0)
	if err == nil || env.ID != "abc" {
		t.Fatalf("got %+v, %v; want ID abc and an error", env, err)
	}
	env, err = Parse([]byte(`{"room":"r","to":[],"id":"abc"}`), 0)
	if err == nil || env.ID != "" {
		t.Fatalf("got %+v, %v; want no ID (not reached) and an error", env, err)
	}
	// Missing data is detected at the end, after id was read.
	env, err = Parse([]byte(`{"room":"r","id":"abc"}`), 0)
	if err == nil || env.ID != "abc" {
		t.Fatalf("got %+v, %v; want ID abc and an error", env, err)
	}
}

func TestDataDoesNotAliasInput(t *testing.T) {
	in := []byte(`{"room":"r","data":"abcdef"}`)
	env, err := Parse(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 'X'
	}
	if string(env.Data) != `"abcdef"` {
		t.Fatalf("Data changed with input: %s", env.Data)
	}
}

var hostile = []string{
	"", `"}`, `\`, "\x00", "\xff", "</script>", "\u2028", "\u2029", "a\"b\\c",
	"\b\f\n\r\t\x01\x1f\x7f", "&<>", "é日本\U0001F600", "\xc3", "\xed\xa0\x80", `","data":1,"x":"`,
	"\xf4\x90\x80\x80", "ok",
}

func TestAppendStringMatchesMarshal(t *testing.T) {
	for _, s := range hostile {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestAppendRelayEscaping(t *testing.T) {
	for _, from := range hostile {
		for _, room := range hostile {
			out := AppendRelay([]byte("prefix"), from, room, json.RawMessage(`{"x":1}`))
			if !bytes.HasPrefix(out, []byte("prefix")) {
				t.Fatalf("dst prefix lost: %q", out)
			}
			out = out[len("prefix"):]
			if !json.Valid(out) {
				t.Fatalf("AppendRelay(%q, %q) invalid JSON: %q", from, room, out)
			}
			if bytes.Contains(out, []byte("</script>")) || bytes.Contains(out, []byte("\u2028")) ||
				bytes.Contains(out, []byte("\u2029")) || bytes.ContainsAny(out, "\x00\xff") {
				t.Fatalf("AppendRelay(%q, %q) left unsafe bytes: %q", from, room, out)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			var gotFrom string
			if err := json.Unmarshal(m["from"], &gotFrom); err != nil {
				t.Fatal(err)
			}
			if want := strings.ToValidUTF8(from, "\uFFFD"); gotFrom != want && !invalidUTF8Equivalent(from, gotFrom) {
				t.Fatalf("from round trip: got %q want %q", gotFrom, want)
			}
			_, hasRoom := m["room"]
			if hasRoom != (room != "") {
				t.Fatalf("room presence = %v for room %q: %s", hasRoom, room, out)
			}
			if len(m) != 2+map[bool]int{true: 1}[hasRoom] {
				t.Fatalf("unexpected keys in %s", out)
			}
		}
	}
}

// invalidUTF8Equivalent reports whether got is s with each invalid byte
// replaced by U+FFFD (which is what encoding/json does, byte by byte, unlike
// strings.ToValidUTF8 which collapses runs).
func invalidUTF8Equivalent(s, got string) bool {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // ranging over a string yields U+FFFD per invalid byte
	}
	return b.String() == got
}

func TestAppendRelayShape(t *testing.T) {
	tests := []struct {
		from, room string
		data       json.RawMessage
		want       string
	}{
		{"alice", "lobby", json.RawMessage(`{"a":1}`), `{"from":"alice","room":"lobby","data":{"a":1}}`},
		{"alice", "", json.RawMessage(`null`), `{"from":"alice","data":null}`},
		{"alice", "", json.RawMessage(" [ 1 ,\n2 ] "), `{"from":"alice","data":[1,2]}`},
		{"alice", "", nil, `{"from":"alice","data":null}`},
		{"alice", "", json.RawMessage(`{"a":`), `{"from":"alice","data":null}`},
		{"alice", "", json.RawMessage(`1 2`), `{"from":"alice","data":null}`},
		{"a<b", "", json.RawMessage(`"</script>"`), `{"from":"a\u003cb","data":"</script>"}`},
	}
	for _, tt := range tests {
		got := string(AppendRelay(nil, tt.from, tt.room, tt.data))
		if got != tt.want {
			t.Errorf("AppendRelay(%q, %q, %q) = %s, want %s", tt.from, tt.room, tt.data, got, tt.want)
		}
	}
	// A failed compaction must not leave partial output in a dst with spare capacity.
	dst := make([]byte, 0, 256)
	got := string(AppendRelay(dst, "a", "", json.RawMessage(`[1, 2, {"x": `)))
	if got != `{"from":"a","data":null}` {
		t.Errorf("got %s", got)
	}
}

func TestAppendError(t *testing.T) {
	if got := string(AppendError(nil, "bad", "")); got != `{"error":"bad"}` {
		t.Errorf("got %s", got)
	}
	if got := string(AppendError([]byte("x"), `unknown field "too"`, "7")); got != `x{"error":"unknown field \"too\"","id":"7"}` {
		t.Errorf("got %s", got)
	}
	for _, r := range hostile {
		for _, id := range hostile {
			out := AppendError(nil, r, id)
			if !json.Valid(out) {
				t.Fatalf("AppendError(%q, %q) invalid: %q", r, id, out)
			}
		}
	}
	// Every reason Parse produces survives the trip.
	_, err := Parse([]byte(`{"`+"\u2028</script>\\\""+`":1}`), 0)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatal(err)
	}
	var m struct{ Error, ID string }
	if err := json.Unmarshal(AppendError(nil, e.Reason, "i"), &m); err != nil || m.Error != e.Reason || m.ID != "i" {
		t.Fatalf("got %+v, %v; reason %q", m, err, e.Reason)
	}
}

func TestRoundTrip(t *testing.T) {
	inputs := []string{
		`{"to":["bob"],"data":{"text":"hi","n":[1,2.5,-3e2,true,false,null]}}`,
		`{"room":"lobby \u2028 </script>","data":"\u0000\"\\ é \ud83d\ude00"}`,
		`{"room":"r","to":["a","b"],"data":null,"id":"x"}`,
		"{\"room\":\"r\",\"data\":\n  {\n    \"deep\": [[[{\"a\": \"b c\"}]]]\n  }\n}",
		`{"room":"r","data":12345678901234567890123456789}`,
	}
	for _, in := range inputs {
		env, err := Parse([]byte(in), 0)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		from := "alice\"}\x00\xff</script>\u2028"
		out := AppendRelay(nil, from, env.Room, env.Data)
		var got struct {
			From string          `json:"from"`
			Room *string         `json:"room"`
			Data json.RawMessage `json:"data"`
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("decode %s: %v", out, err)
		}
		if got.From != "alice\"}\x00\uFFFD</script>\u2028" {
			t.Errorf("from = %q", got.From)
		}
		if (got.Room == nil) != (env.Room == "") || (got.Room != nil && *got.Room != env.Room) {
			t.Errorf("room = %v, want %q", got.Room, env.Room)
		}
		// data semantically equal to the input's "data".
		var orig struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(in), &orig); err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, orig.Data, got.Data) {
			t.Errorf("data = %s, want %s", got.Data, orig.Data)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if err := da.Decode(&x); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := db.Decode(&y); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// TestParseAllocationBounded checks that memory allocated by Parse stays
// linear in the input size for a few adversarial shapes.
func TestParseAllocationBounded(t *testing.T) {
	const size = 1 << 20
	inputs := map[string][]byte{
		"deep data":    []byte(`{"room":"r","data":` + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + strings.Repeat(" ", size) + `}`),
		"big data":     []byte(`{"room":"r","data":"` + strings.Repeat("\\u0041", size/6) + `"}`),
		"many numbers": []byte(`{"room":"r","data":[` + strings.Repeat("1,", size/2) + `1]}`),
		"long key":     []byte(`{"` + strings.Repeat("k", size) + `":1}`),
		"long to":      []byte(`{"to":[` + strings.Repeat(`"aaaaaaaa",`, size/11) + `"a"],"data":1}`),
		"many spaces":  []byte(`{"room":"r","data":1` + strings.Repeat(" ", size) + `}`),
	}
	for name, in := range inputs {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _ = Parse(in, 0)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		if limit := uint64(12*len(in) + 1<<20); alloc > limit {
			t.Errorf("%s: Parse of %d bytes allocated %d bytes (limit %d)", name, len(in), alloc, limit)
		}
		t.Logf("%s: %d bytes in, %d bytes allocated", name, len(in), alloc)
	}
}
