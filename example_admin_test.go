package wsroom_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/wsroom/wsroom"
)

// The admin handler is mounted beside the WebSocket endpoint, under a
// prefix it is stripped of. Mount it where only operators reach it.
func ExampleHub_AdminHandler() {
	hub := wsroom.New(wsroom.Options{
		Identify:  func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Join("lobby") },
	})
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("/admin/wsroom/", http.StripPrefix("/admin/wsroom", hub.AdminHandler()))
	srv := httptest.NewServer(mux)
	defer exampleShutdown(hub, srv)

	alice := exampleDial(wsURL(srv.URL, "/ws?user=alice"))
	defer alice.Close()

	resp, err := http.Get(srv.URL + "/admin/wsroom/rooms")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output:
	// {
	//   "rooms": [
	//     {
	//       "name": "lobby",
	//       "members": 1
	//     }
	//   ],
	//   "total": 1,
	//   "truncated": false
	// }
}
