// Package readme holds the README's mounting snippets, so that they
// compile against chi and gin (the core module depends on neither); the
// integration tests mount hubs the same ways.
package readme

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/wsroom/wsroom"
)

// ServeMux mounts hub on a ServeMux route.
func ServeMux(hub *wsroom.Hub, existing http.Handler) http.Handler {
	// README:servemux
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub) // Go 1.22 patterns
	mux.Handle("/", existing)  // the rest of the app, as before
	// README:end
	return mux
}

// Middleware upgrades WebSocket requests on any path and passes the rest on.
func Middleware(hub *wsroom.Hub, existing http.Handler) http.Handler {
	// README:middleware
	handler := hub.Middleware(existing) // WebSocket handshakes on any path; every other request to existing
	// README:end
	return handler
}

// Chi mounts hub on a chi router.
func Chi(hub *wsroom.Hub) http.Handler {
	// README:chi
	r := chi.NewRouter()
	r.Use(middleware.Logger)
	r.Get("/ws", hub.ServeHTTP)
	// README:end
	return r
}

// Gin mounts hub on a gin router.
func Gin(hub *wsroom.Hub) http.Handler {
	// README:gin
	router := gin.Default()
	router.GET("/ws", gin.WrapH(hub))
	// README:end
	return router
}
