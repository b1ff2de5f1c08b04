package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/examples/chat/chatapp"
)

// restartableChat serves examples/chat's app and can replace it by a new
// one, as a restarted process would be (a new hub: new histories).
type restartableChat struct {
	mu      sync.Mutex
	handler http.Handler
	hub     *wsroom.Hub
}

func (r *restartableChat) start() {
	h, hub := chatapp.New(wsroom.Options{})
	r.mu.Lock()
	r.handler, r.hub = h, hub
	r.mu.Unlock()
}

func (r *restartableChat) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	h := r.handler
	r.mu.Unlock()
	h.ServeHTTP(w, req)
}

// restart starts a new app and shuts the old hub down (1001 to its pages).
func (r *restartableChat) restart(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	old := r.hub
	r.mu.Unlock()
	r.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown of the old hub: %v", err)
	}
}

// chatSender is a plain WebSocket client of the chat (no resume), dialled
// to the server directly, bypassing the proxy the pages go through.
type chatSender struct {
	conn interface{ Close() error }
	send func(text string)
}

func dialChat(t *testing.T, srv *httptest.Server, name string) *chatSender {
	t.Helper()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?name=" + name + "&room=lobby"
	conn, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &chatSender{conn: conn, send: func(text string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"room": "lobby", "data": map[string]string{"text": text}})
		if err := wsutil.WriteClientText(conn, b); err != nil {
			t.Fatalf("%s: send: %v", name, err)
		}
	}}
}

// linesFrom is a page expression: the texts of the log's lines from who,
// in order.
func linesFrom(who string) string {
	w, _ := json.Marshal(who)
	return fmt.Sprintf(`[...document.querySelectorAll('#log .line')].filter(l => l.querySelector('.who')?.textContent === %s).map(l => l.querySelector('.text').textContent)`, w)
}

// hasNote is a page predicate: a system line of the log contains text.
func hasNote(text string) string {
	x, _ := json.Marshal(text)
	return fmt.Sprintf(`[...document.querySelectorAll('#log .line')].some(l => !l.querySelector('.who') && l.querySelector('.text').textContent.includes(%s))`, x)
}

// TestChromiumChatResume: examples/chat in two tabs (alice, bob) behind a
// proxy that kills their connections; carol talks to the room from a
// plain client connected to the server directly. Bob's page gets every
// message carol sent while the network was down, once each and in order,
// and says how many it recovered; after a server restart (a new hub, so
// a new history) both pages reconnect, say that messages may be missing,
// and the chat goes on. The second tab's name field starts empty.
func TestChromiumChatResume(t *testing.T) {
	browser := startBrowser(t)
	chat := &restartableChat{}
	chat.start()
	srv := httptest.NewServer(chat)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		chat.mu.Lock()
		hub := chat.hub
		chat.mu.Unlock()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	proxy := startKillProxy(t, strings.TrimPrefix(srv.URL, "http://"))
	page := "http://" + proxy.ln.Addr().String() + "/"

	tabs := map[string]context.Context{}
	for _, name := range []string{"alice", "bob"} {
		tab, cancel := chromedp.NewContext(browser)
		t.Cleanup(cancel)
		// The tab's first run opens it, and it lives as long as the
		// context of that run: without a timeout here (see do).
		if err := chromedp.Do(tab); err != nil {
			t.Fatalf("opening %s's tab: %v", name, err)
		}
		tabs[name] = tab
		do(t, tab, name+" opens the page", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#name")))
		// Another tab's name is not prefilled (alice's is bob's): the name
		// field is empty, and typing gives exactly the name typed.
		ctx, cancel := context.WithTimeout(tab, browserTimeout)
		prefilled, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('name').value`))
		cancel()
		if err != nil || prefilled != "" {
			t.Errorf("%s's tab: the name field holds %q (%v), want it empty", name, prefilled, err)
		}
		do(t, tab, name+" joins",
			chromedp.SendKeys(chromedp.CSS("#name"), name),
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById('name').value === %q`, name)),
			chromedp.Click(chromedp.CSS("#join button")),
			chromedp.WaitEnabled(chromedp.CSS("#text")),
		)
	}
	carol := dialChat(t, srv, "carol")
	for name, tab := range tabs {
		do(t, tab, name+" sees 3 members", chromedp.Poll[chromedp.Void](`document.getElementById('count').textContent === '3'`))
	}
	carol.send("before the cut")
	do(t, tabs["bob"], "bob sees carol's first message", chromedp.Poll[chromedp.Void](hasLine("carol", "before the cut")))

	// The network goes down for the pages and stays down while carol
	// talks; then it comes back.
	proxy.hold(true)
	if n := proxy.kill(); n < 2 {
		t.Fatalf("killed %d connections, want at least the two pages'", n)
	}
	do(t, tabs["bob"], "bob's page sees the connection lost", chromedp.Poll[chromedp.Void](hasNote("Connection lost")))
	missed := []string{"missed 1", "missed 2 ✓", "missed 3"}
	for _, text := range missed {
		carol.send(text)
	}
	proxy.hold(false)
	do(t, tabs["bob"], "bob's page recovers", chromedp.Poll[chromedp.Void](hasNote("Reconnected: 3 missed messages delivered.")))
	do(t, tabs["alice"], "alice's page recovers", chromedp.Poll[chromedp.Void](hasNote("Reconnected: 3 missed messages delivered.")))
	carol.send("after the cut")
	do(t, tabs["bob"], "bob sees carol's live message", chromedp.Poll[chromedp.Void](hasLine("carol", "after the cut")))
	want := append(append([]string{"before the cut"}, missed...), "after the cut")
	for name, tab := range tabs {
		ctx, cancel := context.WithTimeout(tab, browserTimeout)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](linesFrom("carol")))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s's page shows carol's messages %q, want %q (each once, in order)", name, got, want)
		}
	}

	// A restart: the new hub has a new history, so the pages cannot resume
	// and say so; then the chat goes on.
	carol.conn.Close()
	chat.restart(t)
	for name, tab := range tabs {
		do(t, tab, name+"'s page says messages may be missing", chromedp.Poll[chromedp.Void](hasNote("the server restarted")))
		do(t, tab, name+" is back with 2 members", chromedp.Poll[chromedp.Void](`document.getElementById('count').textContent === '2' && !document.getElementById('text').disabled`))
	}
	do(t, tabs["alice"], "alice talks after the restart",
		clearInput("text"),
		chromedp.SendKeys(chromedp.CSS("#text"), "back again"),
		chromedp.Click(chromedp.CSS("#send-button")),
	)
	do(t, tabs["bob"], "bob sees it", chromedp.Poll[chromedp.Void](hasLine("alice", "back again")))
}
