package wsroom_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// adminServer serves a hub at /ws (user from ?user=, rooms joined from
// ?rooms=a,b) and its admin handler under /admin/wsroom/.
func adminServer(t *testing.T) *server {
	t.Helper()
	opts := wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			for name := range strings.SplitSeq(r.URL.Query().Get("rooms"), ",") {
				if name != "" {
					if err := c.Join(name); err != nil {
						return err
					}
				}
			}
			return nil
		},
		PingInterval: -1,
	}
	return newServerWith(t, opts, serverSetup{mount: func(h *wsroom.Hub) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("GET /ws", h)
		mux.Handle("/admin/wsroom/", http.StripPrefix("/admin/wsroom", h.AdminHandler()))
		return mux
	}})
}

// dialAs connects user to s, joining rooms.
func (s *server) dialAs(t *testing.T, user string, rooms ...string) *wstest.Conn {
	t.Helper()
	q := url.Values{"user": {user}, "rooms": {strings.Join(rooms, ",")}}
	return wstest.Dial(t, s.url+"?"+q.Encode(), nil)
}

// adminGet sends method to the admin path and decodes the JSON answer
// into v (if not nil). It returns the response, body read.
func adminGet(t *testing.T, s *server, method, path string, v any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+"/admin/wsroom"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	if method == http.MethodHead {
		if len(body) != 0 {
			t.Errorf("HEAD %s: %d body bytes", path, len(body))
		}
		return resp
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, body)
		}
	}
	return resp
}

type roomsAnswer struct {
	Rooms []struct {
		Name    string `json:"name"`
		Members int    `json:"members"`
	} `json:"rooms"`
	Total     int  `json:"total"`
	Truncated bool `json:"truncated"`
}

type connAnswer struct {
	ID          string   `json:"id"`
	User        string   `json:"user"`
	Remote      string   `json:"remote"`
	Subprotocol string   `json:"subprotocol"`
	Rooms       int      `json:"rooms"`
	RoomNames   []string `json:"room_names"`
}

type connsAnswer struct {
	Name        string       `json:"name"`
	User        string       `json:"user"`
	Members     int          `json:"members"`
	Connections int          `json:"connections"`
	Conns       []connAnswer `json:"conns"`
	Truncated   bool         `json:"truncated"`
}

func TestAdminRooms(t *testing.T) {
	s := adminServer(t)
	s.dialAs(t, "alice", "lobby", "team/ops 1")
	s.dialAs(t, "alice", "lobby")
	s.dialAs(t, "bob", "lobby", "zoo")

	var all roomsAnswer
	adminGet(t, s, "GET", "/rooms", &all)
	type entry struct {
		name    string
		members int
	}
	var got []entry
	for _, r := range all.Rooms {
		got = append(got, entry{r.Name, r.Members})
	}
	want := []entry{{"lobby", 3}, {"team/ops 1", 1}, {"zoo", 1}}
	if !slices.Equal(got, want) || all.Total != 3 || all.Truncated {
		t.Fatalf("GET /rooms: %+v total %d truncated %v, want %v total 3 not truncated", got, all.Total, all.Truncated, want)
	}

	// Pages of one: each continues after the last name of the previous.
	var names []string
	after := ""
	for range 4 {
		var page roomsAnswer
		adminGet(t, s, "GET", "/rooms?limit=1&after="+url.QueryEscape(after), &page)
		if len(page.Rooms) == 0 {
			if page.Truncated {
				t.Fatal("an empty page says truncated")
			}
			break
		}
		if len(page.Rooms) != 1 {
			t.Fatalf("limit=1 gave %d rooms", len(page.Rooms))
		}
		names = append(names, page.Rooms[0].Name)
		after = page.Rooms[0].Name
		if wantMore := len(names) < 3; page.Truncated != wantMore {
			t.Fatalf("page %d: truncated %v, want %v", len(names), page.Truncated, wantMore)
		}
	}
	if !slices.Equal(names, []string{"lobby", "team/ops 1", "zoo"}) {
		t.Fatalf("paged names %q", names)
	}
}

func TestAdminRoomMembers(t *testing.T) {
	s := adminServer(t)
	a1 := s.dialAs(t, "alice", "lobby", "team/ops 1")
	a2 := s.dialAs(t, "alice", "lobby")
	b := s.dialAs(t, "bob", "lobby")
	remotes := map[string]int{ // client address (the server's remote) → rooms
		a1.NetConn().LocalAddr().String(): 2,
		a2.NetConn().LocalAddr().String(): 1,
		b.NetConn().LocalAddr().String():  1,
	}

	var lobby connsAnswer
	adminGet(t, s, "GET", "/rooms/lobby", &lobby)
	if lobby.Name != "lobby" || lobby.Members != 3 || len(lobby.Conns) != 3 || lobby.Truncated {
		t.Fatalf("GET /rooms/lobby: %+v", lobby)
	}
	var ids []string
	users := map[string]int{}
	for _, c := range lobby.Conns {
		rooms, ok := remotes[c.Remote]
		if !ok {
			t.Fatalf("member with remote %q, not one of the clients %v", c.Remote, remotes)
		}
		if c.Rooms != rooms || c.RoomNames != nil {
			t.Errorf("member %s: rooms %d, names %q; want %d rooms and no names", c.Remote, c.Rooms, c.RoomNames, rooms)
		}
		ids = append(ids, c.ID)
		users[c.User]++
	}
	if !slices.IsSorted(ids) || users["alice"] != 2 || users["bob"] != 1 {
		t.Fatalf("members %v (want sorted IDs), users %v", ids, users)
	}

	// A name with a slash and a space, path-escaped, or with the slash
	// left as it is.
	for _, path := range []string{"/rooms/" + url.PathEscape("team/ops 1"), "/rooms/team/ops%201"} {
		var ops connsAnswer
		adminGet(t, s, "GET", path, &ops)
		if ops.Name != "team/ops 1" || len(ops.Conns) != 1 || ops.Conns[0].Remote != a1.NetConn().LocalAddr().String() {
			t.Fatalf("GET %s: %+v", path, ops)
		}
	}

	// Paging by connection ID.
	var first, second connsAnswer
	adminGet(t, s, "GET", "/rooms/lobby?limit=2", &first)
	adminGet(t, s, "GET", "/rooms/lobby?limit=2&after="+first.Conns[1].ID, &second)
	if len(first.Conns) != 2 || !first.Truncated || len(second.Conns) != 1 || second.Truncated || second.Conns[0].ID != ids[2] {
		t.Fatalf("pages: %+v then %+v; all IDs %v", first, second, ids)
	}

	// A room whose last member left is gone.
	a1.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "the room to empty", func() bool { return s.hub.Room("team/ops 1").Len() == 0 })
	var gone map[string]string
	if resp := adminGet(t, s, "GET", "/rooms/"+url.PathEscape("team/ops 1"), &gone); resp.StatusCode != http.StatusNotFound || gone["error"] == "" {
		t.Fatalf("GET an emptied room: %d %v, want 404 with an error", resp.StatusCode, gone)
	}
}

func TestAdminUser(t *testing.T) {
	s := adminServer(t)
	a1 := s.dialAs(t, "alice", "lobby", "b-room", "a-room")
	a2 := s.dialAs(t, "alice")
	s.dialAs(t, "bob", "lobby")

	var alice connsAnswer
	adminGet(t, s, "GET", "/users/alice", &alice)
	if alice.User != "alice" || alice.Connections != 2 || len(alice.Conns) != 2 || alice.Truncated {
		t.Fatalf("GET /users/alice: %+v", alice)
	}
	byRemote := map[string]connAnswer{}
	for _, c := range alice.Conns {
		byRemote[c.Remote] = c
	}
	if c := byRemote[a1.NetConn().LocalAddr().String()]; c.User != "alice" || c.Rooms != 3 || !slices.Equal(c.RoomNames, []string{"lobby", "b-room", "a-room"}) {
		t.Errorf("alice's first connection: %+v, want rooms lobby, b-room, a-room in join order", c)
	}
	if c := byRemote[a2.NetConn().LocalAddr().String()]; c.Rooms != 0 || len(c.RoomNames) != 0 {
		t.Errorf("alice's second connection: %+v, want no rooms", c)
	}
	if !slices.IsSortedFunc(alice.Conns, func(a, b connAnswer) int { return strings.Compare(a.ID, b.ID) }) {
		t.Errorf("connections not sorted by ID: %+v", alice.Conns)
	}

	// limit bounds room names too.
	var cut connsAnswer
	adminGet(t, s, "GET", "/users/alice?limit=2", &cut)
	if !cut.Truncated || len(cut.Conns) != 2 {
		t.Fatalf("limit=2: %+v, want both connections and truncated room names", cut)
	}
	for _, c := range cut.Conns {
		if len(c.RoomNames) > 2 {
			t.Errorf("limit=2: %d room names", len(c.RoomNames))
		}
	}

	// A user ID that needs escaping.
	odd := "carol/ü ?#"
	s.dialAs(t, odd)
	var carol connsAnswer
	adminGet(t, s, "GET", "/users/"+url.PathEscape(odd), &carol)
	if carol.User != odd || len(carol.Conns) != 1 || carol.Conns[0].User != odd {
		t.Fatalf("GET /users/%s: %+v", url.PathEscape(odd), carol)
	}

	var missing map[string]string
	if resp := adminGet(t, s, "GET", "/users/nobody", &missing); resp.StatusCode != http.StatusNotFound || missing["error"] == "" {
		t.Fatalf("GET /users/nobody: %d %v, want 404 with an error", resp.StatusCode, missing)
	}
}

func TestAdminStats(t *testing.T) {
	s := adminServer(t)
	c := s.dialAs(t, "alice", "lobby")
	s.dialAs(t, "bob", "lobby")
	other := s.dialAs(t, "carol")
	other.CloseHandshake(t, 4001)
	wstest.WaitFor(t, "carol's close to be counted", func() bool { return s.hub.Metrics().Closes[1][wsroom.ClassOf(4001)] == 1 })
	hc, err := wstest.Exchange(wstest.Request(s.url, http.Header{"Origin": {"http://elsewhere.example"}}))
	if err != nil {
		t.Fatal(err)
	}
	hc.Close()
	if hc.Resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin handshake: %d", hc.Resp.StatusCode)
	}
	s.hub.Room("lobby").Broadcast(wsroom.Text("hi"))
	c.ExpectText(t, "hi")
	wstest.WaitFor(t, "the broadcast to be counted", func() bool { return s.hub.Stats().MessagesOut == 2 })

	var got map[string]any
	adminGet(t, s, "GET", "/stats", &got)
	m := s.hub.Metrics()
	// Every Stats field is there, under its name in snake case.
	st := reflect.ValueOf(m.Stats)
	for i := range st.NumField() {
		key := snake(st.Type().Field(i).Name)
		v, ok := got[key].(float64)
		if !ok {
			t.Errorf("stats: no number %q (for Stats.%s) in %v", key, st.Type().Field(i).Name, got)
			continue
		}
		if want := st.Field(i).Convert(reflect.TypeFor[float64]()).Float(); v != want {
			t.Errorf("stats.%s = %v, want %v", key, v, want)
		}
	}
	if got["connections"] != 2.0 || got["accepted"] != 3.0 || got["messages_out"] != 2.0 {
		t.Errorf("stats: connections %v accepted %v messages_out %v, want 2, 3, 2", got["connections"], got["accepted"], got["messages_out"])
	}
	refused, _ := got["refused"].(map[string]any)
	if len(refused) != int(wsroom.NumRefusals) || refused["origin"] != 1.0 || refused["identify"] != 0.0 {
		t.Errorf("stats.refused = %v, want every cause, origin 1", refused)
	}
	closes, _ := got["closes"].(map[string]any)
	if !reflect.DeepEqual(closes, map[string]any{"server": map[string]any{}, "peer": map[string]any{"4xxx": 1.0}}) {
		t.Errorf("stats.closes = %v, want one peer close in 4xxx", closes)
	}
	delay, _ := got["queue_delay"].(map[string]any)
	buckets, _ := delay["buckets"].([]any)
	if delay["count"] != float64(m.QueueDelay.Count) || len(buckets) != wsroom.NumBuckets-1 {
		t.Fatalf("stats.queue_delay = %v, want count %d and %d buckets", delay, m.QueueDelay.Count, wsroom.NumBuckets-1)
	}
	last := buckets[len(buckets)-1].(map[string]any)
	if le := last["le_seconds"].(float64); le != wsroom.BucketBound(wsroom.NumBuckets-2).Seconds() || last["count"].(float64) > delay["count"].(float64) {
		t.Errorf("last bounded bucket %v", last)
	}
	for _, key := range []string{"queued_bytes", "queued_frames", "broker_lag"} {
		if _, ok := got[key]; !ok {
			t.Errorf("stats: no %q", key)
		}
	}
}

// snake is the test's own spelling of the admin handler's keys.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestAdminRefusals(t *testing.T) {
	s := adminServer(t)
	s.dialAs(t, "alice", "lobby")
	before := s.hub.Metrics()

	for _, method := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		for _, path := range []string{"/", "/rooms", "/rooms/lobby", "/users/alice", "/stats"} {
			var e map[string]string
			resp := adminGet(t, s, method, path, &e)
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" || e["error"] == "" {
				t.Errorf("%s %s: %d Allow %q %v, want 405 with Allow: GET, HEAD", method, path, resp.StatusCode, resp.Header.Get("Allow"), e)
			}
		}
	}
	for _, path := range []string{"/nope", "/users/", "/users", "/stats/x", "/roomsx"} {
		var e map[string]string
		if resp := adminGet(t, s, "GET", path, &e); resp.StatusCode != http.StatusNotFound || e["error"] == "" {
			t.Errorf("GET %s: %d %v, want 404 with an error", path, resp.StatusCode, e)
		}
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=x", "limit=" + strconv.Itoa(wsroom.MaxAdminLimit+1), "limit=1e3"} {
		for _, path := range []string{"/rooms", "/rooms/lobby", "/users/alice"} {
			var e map[string]string
			if resp := adminGet(t, s, "GET", path+"?"+q, &e); resp.StatusCode != http.StatusBadRequest || !strings.Contains(e["error"], "limit") {
				t.Errorf("GET %s?%s: %d %v, want 400 about the limit", path, q, resp.StatusCode, e)
			}
		}
	}
	if resp := adminGet(t, s, "HEAD", "/rooms", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /rooms: %d", resp.StatusCode)
	}
	var index map[string][]string
	adminGet(t, s, "GET", "/", &index)
	if len(index["routes"]) != 4 {
		t.Errorf("GET /: %v", index)
	}

	// None of it changed the hub.
	after := s.hub.Metrics()
	if after.Stats != before.Stats || after.Closes != before.Closes || after.Refused != before.Refused {
		t.Errorf("the admin requests changed the hub: %+v, then %+v", before, after)
	}
}
