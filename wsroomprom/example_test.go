package wsroomprom_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/wsroomprom"
)

// The WebSocket endpoint on the public server; /metrics and the admin
// handler on an operators' one (in production, a listener on an internal
// address). This is the setup docs/observability.md describes.
func Example() {
	hub := wsroom.New(wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Join("lobby") },
	})

	public := http.NewServeMux()
	public.Handle("GET /ws", hub)

	// README:readme
	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	reg.MustRegister(wsroomprom.NewCollector(hub, wsroomprom.Options{}))
	ops := http.NewServeMux()
	ops.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ops.Handle("/admin/wsroom/", http.StripPrefix("/admin/wsroom", hub.AdminHandler()))
	// README:end

	publicSrv := httptest.NewServer(public) // http.ListenAndServe(":8080", public)
	opsSrv := httptest.NewServer(ops)       // http.ListenAndServe("127.0.0.1:9090", ops)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hub.Shutdown(ctx)
		publicSrv.Close()
		opsSrv.Close()
	}()

	conn, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(publicSrv.URL, "http")+"/ws")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	for _, line := range get(opsSrv.URL + "/metrics") {
		if strings.HasPrefix(line, "wsroom_connections ") || strings.HasPrefix(line, "wsroom_handshakes_accepted_total ") {
			fmt.Println(line)
		}
	}
	fmt.Println(strings.Join(get(opsSrv.URL+"/admin/wsroom/rooms?limit=10"), "\n"))
	// Output:
	// wsroom_connections 1
	// wsroom_handshakes_accepted_total 1
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

// get returns the lines of the body at url.
func get(url string) []string {
	resp, err := http.Get(url)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}
