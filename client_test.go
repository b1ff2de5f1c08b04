package wsroom_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/wsroom/wsroom"
)

func TestClientScript(t *testing.T) {
	want, err := os.ReadFile("client/wsroom.js")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(wsroom.ClientScript())
	t.Cleanup(srv.Close)

	get := func(method string, header http.Header) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/any/path/wsroom.js", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, body
	}

	res, body := get(http.MethodGet, nil)
	if res.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("GET: %d, %d bytes; want 200 and client/wsroom.js's %d bytes", res.StatusCode, len(body), len(want))
	}
	for k, v := range map[string]string{
		"Content-Type":           "text/javascript; charset=utf-8",
		"Cache-Control":          "no-cache",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	etag := res.Header.Get("ETag")
	if len(etag) != 26 || etag[0] != '"' {
		t.Fatalf("ETag %q: want a quoted 24-digit hash", etag)
	}

	res, body = get(http.MethodGet, http.Header{"If-None-Match": {etag}})
	if res.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("GET with its ETag: %d with %d bytes, want 304 and none", res.StatusCode, len(body))
	}
	res, body = get(http.MethodGet, http.Header{"If-None-Match": {`"stale"`}})
	if res.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Errorf("GET with another ETag: %d, want 200 and the script", res.StatusCode)
	}
	res, body = get(http.MethodHead, nil)
	if res.StatusCode != http.StatusOK || len(body) != 0 || res.ContentLength != int64(len(want)) {
		t.Errorf("HEAD: %d, %d bytes, length %d; want 200, no body, length %d", res.StatusCode, len(body), res.ContentLength, len(want))
	}
	res, _ = get(http.MethodPost, nil)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q; want 405 and GET, HEAD", res.StatusCode, res.Header.Get("Allow"))
	}
}

// The JavaScript client is served from the app's own origin, next to its
// WebSocket endpoint; a page then imports it as an ES module:
//
//	<script type="module">
//	  import { WsroomClient } from '/wsroom.js';
//	  const c = new WsroomClient('/ws');
//	  c.on('message', m => console.log(m.room, m.data));
//	</script>
func ExampleClientScript() {
	hub := wsroom.New(wsroom.Options{})
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("GET /wsroom.js", wsroom.ClientScript())
	srv := httptest.NewServer(mux)
	defer exampleShutdown(hub, srv)

	res, err := http.Get(srv.URL + "/wsroom.js")
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	js, _ := io.ReadAll(res.Body)
	fmt.Println(res.Status, res.Header.Get("Content-Type"))
	fmt.Println(bytes.Contains(js, []byte("export class WsroomClient")))
	// Output:
	// 200 OK text/javascript; charset=utf-8
	// true
}
