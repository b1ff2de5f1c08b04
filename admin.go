package wsroom

// The admin handler: a read-only JSON view of a Hub for operators. It
// uses the Hub's public API only (Rooms, Room.Members, UserConns,
// Metrics) and serves nothing unless the application mounts it.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Bounds of the lists the admin handler returns (see AdminHandler).
const (
	DefaultAdminLimit = 1000  // entries per list when ?limit= is absent
	MaxAdminLimit     = 10000 // the largest ?limit= accepted
)

// AdminHandler returns a read-only http.Handler that describes the hub
// as JSON, for operators. It serves, relative to where it is mounted:
//
//	GET /                the list of routes
//	GET /rooms           rooms with members on this Hub, sorted by name, each with its member count
//	GET /rooms/{name}    one room's connections, sorted by connection ID
//	GET /users/{id}      one user's connections on this Hub, with the rooms each is in
//	GET /stats           Hub.Metrics
//
// A connection is described by its ID (Conn.ConnID), user ID, remote
// address, subprotocol and number of rooms. Room names and user IDs are
// path-escaped in the URL (url.PathEscape; a "/" in a room name may be
// left as it is). Every list is bounded: ?limit=N returns at most N
// entries (default DefaultAdminLimit, at most MaxAdminLimit) and says
// "truncated": true when there were more; ?after=KEY (a room name or a
// connection ID, the last one of the previous page) continues from
// there. A room or user with no connection on this Hub is 404. With a
// Broker the view is this node's only.
//
// Only GET and HEAD are answered (other methods get 405); unknown paths
// get 404 and malformed parameters 400, each with a JSON body
// {"error": "..."}. Nothing the handler serves changes the Hub.
//
// The Hub serves nothing of this unless the application mounts the
// handler, for instance beside the WebSocket endpoint:
//
//	mux.Handle("/admin/wsroom/", http.StripPrefix("/admin/wsroom", hub.AdminHandler()))
//
// It exposes user IDs and client addresses: mount it on an internal
// listener or behind the authentication of the application's other
// operator endpoints.
func (h *Hub) AdminHandler() http.Handler { return adminHandler{h} }

// adminHandler serves Hub.AdminHandler.
type adminHandler struct{ h *Hub }

// adminRoutes is what GET / lists.
var adminRoutes = []string{"/rooms", "/rooms/{name}", "/users/{id}", "/stats"}

func (a adminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	var serve func(http.ResponseWriter, *http.Request, string)
	var arg string
	switch {
	case path == "":
		serve = func(w http.ResponseWriter, _ *http.Request, _ string) {
			writeAdminJSON(w, http.StatusOK, map[string]any{"routes": adminRoutes})
		}
	case path == "rooms" || path == "rooms/":
		serve = a.rooms
	case strings.HasPrefix(path, "rooms/"):
		serve, arg = a.room, path[len("rooms/"):]
	case strings.HasPrefix(path, "users/") && len(path) > len("users/"):
		serve, arg = a.user, path[len("users/"):]
	case path == "stats":
		serve = a.stats
	default:
		adminError(w, http.StatusNotFound, "no such admin route (see GET /)")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		adminError(w, http.StatusMethodNotAllowed, "the admin handler is read-only: use GET")
		return
	}
	if arg != "" {
		var err error
		if arg, err = url.PathUnescape(arg); err != nil { // EscapedPath is well-formed: not seen in practice
			adminError(w, http.StatusBadRequest, "malformed path escape")
			return
		}
	}
	serve(w, r, arg)
}

// adminPage is the paging of a list: at most limit entries after the
// key after.
type adminPage struct {
	limit int
	after string
}

// pageOf reads ?limit= and ?after=, or answers 400 and returns false.
func pageOf(w http.ResponseWriter, r *http.Request) (adminPage, bool) {
	q := r.URL.Query()
	p := adminPage{limit: DefaultAdminLimit, after: q.Get("after")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxAdminLimit {
			adminError(w, http.StatusBadRequest, "limit must be an integer from 1 to "+strconv.Itoa(MaxAdminLimit))
			return p, false
		}
		p.limit = n
	}
	return p, true
}

// cut returns the entries of sorted keys after p.after, at most p.limit
// of them, and whether there were more.
func (p adminPage) cut(sorted []string) ([]string, bool) {
	if p.after != "" {
		i, found := slices.BinarySearch(sorted, p.after)
		if found {
			i++
		}
		sorted = sorted[i:]
	}
	if len(sorted) > p.limit {
		return sorted[:p.limit], true
	}
	return sorted, false
}

// adminRoom is an entry of GET /rooms.
type adminRoom struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
}

func (a adminHandler) rooms(w http.ResponseWriter, r *http.Request, _ string) {
	p, ok := pageOf(w, r)
	if !ok {
		return
	}
	names := a.h.Rooms()
	slices.Sort(names)
	page, truncated := p.cut(names)
	list := make([]adminRoom, 0, len(page))
	for _, name := range page {
		// A room may empty between Rooms and Len: it is then listed
		// with 0 members, as it was when the list was taken.
		list = append(list, adminRoom{Name: name, Members: a.h.Room(name).Len()})
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"rooms": list, "total": len(names), "truncated": truncated})
}

// adminConn describes a connection.
type adminConn struct {
	ID          string   `json:"id"`
	User        string   `json:"user"`
	Remote      string   `json:"remote"`
	Subprotocol string   `json:"subprotocol,omitempty"`
	ConnectedAt string   `json:"connected_at"`         // RFC 3339, UTC
	Rooms       int      `json:"rooms"`                // how many rooms it is in
	RoomNames   []string `json:"room_names,omitempty"` // GET /users/{id} only: their names, in join order (at most limit)
}

// describe returns c's description, with up to limit room names if
// names is set, and whether names were cut.
func describe(c *Conn, names bool, limit int) (adminConn, bool) {
	rooms := c.Rooms()
	d := adminConn{ID: c.ConnID(), User: c.UserID(), Remote: c.RemoteAddr().String(), Subprotocol: c.Subprotocol(),
		ConnectedAt: c.ConnectedAt().UTC().Format(time.RFC3339Nano), Rooms: len(rooms)}
	if !names {
		return d, false
	}
	d.RoomNames = rooms[:min(len(rooms), limit)]
	return d, len(rooms) > limit
}

// pageConns sorts conns by ID and describes the page p selects.
func pageConns(conns []*Conn, p adminPage, names bool) ([]adminConn, bool) {
	byID := make(map[string]*Conn, len(conns))
	ids := make([]string, 0, len(conns))
	for _, c := range conns {
		id := c.ConnID()
		byID[id] = c
		ids = append(ids, id)
	}
	slices.Sort(ids)
	page, truncated := p.cut(ids)
	list := make([]adminConn, 0, len(page))
	for _, id := range page {
		d, cut := describe(byID[id], names, p.limit)
		truncated = truncated || cut
		list = append(list, d)
	}
	return list, truncated
}

func (a adminHandler) room(w http.ResponseWriter, r *http.Request, name string) {
	p, ok := pageOf(w, r)
	if !ok {
		return
	}
	members := slices.Collect(a.h.Room(name).Members())
	if len(members) == 0 {
		adminError(w, http.StatusNotFound, "no such room on this hub (rooms exist while they have members)")
		return
	}
	list, truncated := pageConns(members, p, false)
	writeAdminJSON(w, http.StatusOK, map[string]any{"name": name, "members": len(members), "conns": list, "truncated": truncated})
}

func (a adminHandler) user(w http.ResponseWriter, r *http.Request, id string) {
	p, ok := pageOf(w, r)
	if !ok {
		return
	}
	conns := a.h.UserConns(id)
	if len(conns) == 0 {
		adminError(w, http.StatusNotFound, "user not connected to this hub")
		return
	}
	list, truncated := pageConns(conns, p, true)
	writeAdminJSON(w, http.StatusOK, map[string]any{"user": id, "connections": len(conns), "conns": list, "truncated": truncated})
}

// adminHistogram is a Histogram in Prometheus' terms: cumulative counts
// of observations at most LE seconds; the last, unbounded bucket is
// Count.
type adminHistogram struct {
	Count   uint64        `json:"count"`
	Sum     float64       `json:"sum_seconds"`
	Buckets []adminBucket `json:"buckets"`
}

type adminBucket struct {
	LE    float64 `json:"le_seconds"`
	Count uint64  `json:"count"`
}

func histogramJSON(hg Histogram) adminHistogram {
	out := adminHistogram{Count: hg.Count, Sum: hg.Sum.Seconds(), Buckets: make([]adminBucket, 0, NumBuckets-1)}
	var cum uint64
	for i := range NumBuckets - 1 {
		cum += hg.Counts[i]
		out.Buckets = append(out.Buckets, adminBucket{LE: BucketBound(i).Seconds(), Count: cum})
	}
	return out
}

func (a adminHandler) stats(w http.ResponseWriter, _ *http.Request, _ string) {
	m := a.h.Metrics()
	out := make(map[string]any)
	// Every Stats field, under its name in snake case: a counter added
	// to Stats appears here by itself.
	sv := reflect.ValueOf(m.Stats)
	for i := range sv.NumField() {
		out[snakeCase(sv.Type().Field(i).Name)] = sv.Field(i).Interface()
	}
	refused := make(map[string]uint64, NumRefusals)
	for cause, n := range m.Refused {
		refused[Refusal(cause).String()] = n
	}
	closes := map[string]map[string]uint64{"server": {}, "peer": {}}
	for remote, byClass := range m.Closes {
		who := closes["server"]
		if remote == 1 {
			who = closes["peer"]
		}
		for class, n := range byClass {
			if n > 0 {
				who[CloseClass(class).String()] = n
			}
		}
	}
	out["refused"] = refused
	out["closes"] = closes
	out["queued_bytes"] = m.QueuedBytes
	out["queued_frames"] = m.QueuedFrames
	out["queue_delay"] = histogramJSON(m.QueueDelay)
	out["broker_lag"] = histogramJSON(m.BrokerLag)
	writeAdminJSON(w, http.StatusOK, out)
}

// snakeCase turns a Go field name into a JSON key: MessagesIn becomes
// messages_in.
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeAdminJSON(w, status, map[string]string{"error": msg})
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil { // only plain values are encoded: cannot happen
		status, b = http.StatusInternalServerError, []byte(`{"error": "encoding failed"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
