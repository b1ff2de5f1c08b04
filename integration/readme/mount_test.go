package readme_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/integration/readme"
	"github.com/wsroom/wsroom/internal/wstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}

// TestMounts: each README mounting snippet serves WebSocket handshakes at
// /ws (any path for Middleware) and leaves plain requests to the app.
func TestMounts(t *testing.T) {
	existing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("app")) })
	for name, mount := range map[string]func(*wsroom.Hub) http.Handler{
		"servemux":   func(h *wsroom.Hub) http.Handler { return readme.ServeMux(h, existing) },
		"middleware": func(h *wsroom.Hub) http.Handler { return readme.Middleware(h, existing) },
		"chi":        readme.Chi,
		"gin":        readme.Gin,
	} {
		t.Run(name, func(t *testing.T) {
			hub := wsroom.New(wsroom.Options{
				Logger:    wstest.QuietLogger(),
				OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Send(wsroom.Text("hi")) },
			})
			srv := httptest.NewServer(mount(hub))
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				hub.Shutdown(ctx)
				srv.Close()
			})
			c := wstest.Dial(t, srv.URL+"/ws", nil)
			c.ExpectText(t, "hi")
			c.CloseHandshake(t, 1000)
			if name == "servemux" || name == "middleware" {
				resp, err := http.Get(srv.URL + "/page")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("a plain request: %s", resp.Status)
				}
			}
		})
	}
}
