package envelope

import (
	"encoding/json"
	"testing"
)

func FuzzEnvelope(f *testing.F) {
	seeds := []string{
		`{"to":["bob"],"data":1}`,
		`{"room":"lobby","data":"hi"}`,
		`{"id":"7","room":"r","to":["a","b","a"],"data":{"k":[1,2]}}`,
		`{"room":"r","data":null}`,
		" {\"room\" : \"r\",\n\"data\": [ 1, 2 ] } ",
		`{"to":[],"room":"r","data":1}`,
		`{"to":["a",""],"data":1}`,
		`{"too":["a"],"data":1}`,
		`{"to":["a"],"to":["b"],"data":1}`,
		`{"room":"r","data":1}{}`,
		`{"room":"r","data":1,}`,
		`{"room":"\u2028\"}\\\u0000","data":"\ud800"}`,
		"{\"room\":\"\xff\",\"data\":1}",
		`[{"room":"r","data":1}]`,
		`{"data":1}`,
		`{"room":"r"}`,
		`{"room":"r","data":[[[[[[[[[[]]]]]]]]]]}`,
		`{"room":"r","data":1e999}`,
		``,
		`null`,
	}
	hostileStrs := []string{"alice", `"}`, `\`, "\x00", "\xff", "</script>", "\u2028"}
	for i, s := range seeds {
		f.Add([]byte(s), i%5-1, hostileStrs[i%len(hostileStrs)], hostileStrs[(i+3)%len(hostileStrs)], hostileStrs[(i+5)%len(hostileStrs)])
	}

	f.Fuzz(func(t *testing.T, in []byte, max int, from, reason, id string) {
		max %= 1000 // keep the bound meaningful; negatives exercise the default
		env, err := Parse(in, max)

		if out := AppendError(nil, reason, id); !json.Valid(out) {
			t.Fatalf("AppendError(%q, %q) invalid: %q", reason, id, out)
		}
		if out := AppendError(nil, reason, env.ID); !json.Valid(out) {
			t.Fatalf("AppendError with env.ID %q invalid: %q", env.ID, out)
		}
		if got, want := string(appendString(nil, from)), mustMarshal(t, from); got != want {
			t.Fatalf("appendString(%q) = %s, json.Marshal = %s", from, got, want)
		}

		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if env.To != nil || env.Room != "" || env.Data != nil {
				t.Fatalf("non-empty envelope %+v with error %v", env, err)
			}
			if len(env.ID) > MaxIDLen {
				t.Fatalf("ID too long on error")
			}
			if out := AppendError(nil, err.Error(), env.ID); !json.Valid(out) {
				t.Fatalf("error reply invalid: %q", out)
			}
			return
		}

		limit := max
		if limit <= 0 {
			limit = DefaultMaxRecipients
		}
		if len(env.To) > limit {
			t.Fatalf("len(To) = %d > %d", len(env.To), limit)
		}
		if env.To != nil && len(env.To) == 0 {
			t.Fatalf("To is non-nil but empty")
		}
		if len(env.To) == 0 && env.Room == "" {
			t.Fatalf("neither To nor Room: %+v", env)
		}
		seen := map[string]bool{}
		for _, u := range env.To {
			if u == "" || len(u) > MaxUserIDLen {
				t.Fatalf("bad user ID %q", u)
			}
			if seen[u] {
				t.Fatalf("duplicate user ID %q in %q", u, env.To)
			}
			seen[u] = true
		}
		if len(env.Room) > MaxRoomLen || len(env.ID) > MaxIDLen {
			t.Fatalf("room/id too long: %+v", env)
		}
		if !json.Valid(env.Data) {
			t.Fatalf("Data not valid JSON: %q", env.Data)
		}
		if len(env.Data) > len(in) {
			t.Fatalf("Data longer than input")
		}

		out := AppendRelay(nil, from, env.Room, env.Data)
		if !json.Valid(out) {
			t.Fatalf("AppendRelay(%q, %q, %q) invalid: %q", from, env.Room, env.Data, out)
		}
		var got struct {
			Room string          `json:"room"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if got.Room != env.Room || string(got.Data) != string(env.Data) {
			t.Fatalf("round trip: got room %q data %s, want %q %s", got.Room, got.Data, env.Room, env.Data)
		}
	})
}

func mustMarshal(t *testing.T, s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
