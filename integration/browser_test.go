package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/examples/chat/chatapp"
	"github.com/wsroom/wsroom/internal/wstest"
)

// chromiumPath is Debian's chromium. The tests never download a browser.
const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds each step run in a tab (starting the browser on a
// loaded 2-core machine takes a few seconds).
const browserTimeout = 30 * time.Second

// startBrowser starts headless Chromium with a fresh profile and returns a
// context whose first tab is open. Cleanup closes the browser, waits for
// its process to exit and removes the profile.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		requirePeer(t, "%s is missing (Debian package chromium)", chromiumPath)
	}
	profile, err := os.MkdirTemp("", "wsroom-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		chromedp.Cancel(ctx) // closes the browser gracefully
		cancel()
		cancelAlloc() // waits for the process
		os.RemoveAll(profile)
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx
}

// do runs actions in a tab within browserTimeout.
func do(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pageCodec is the pages' JavaScript for peerMessage ({type, data} with
// base64 data): toSend(m) is what to pass to WebSocket.send (a string for
// text, the bytes otherwise) and received(d) turns a message event's data
// (binaryType 'arraybuffer') into a peerMessage.
const pageCodec = `const fromB64 = s => Uint8Array.from(atob(s), c => c.charCodeAt(0));
function toB64(u8) {
  let s = '';
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  return btoa(s);
}
function toSend(m) {
  const bytes = fromB64(m.data);
  return m.type === 'text' ? new TextDecoder('utf-8', { fatal: true }).decode(bytes) : bytes;
}
const received = d => typeof d === 'string'
  ? { type: 'text', data: toB64(new TextEncoder().encode(d)) }
  : { type: 'binary', data: toB64(new Uint8Array(d)) };`

// echoPage runs the peer protocol of peers_test.go with the browser's own
// WebSocket: runEcho(url, spec) resolves to the report.
const echoPage = `<!doctype html>
<meta charset="utf-8">
<title>wsroom echo peer</title>
<script>
'use strict';
` + pageCodec + `
async function runEcho(url, spec) {
  const report = { received: [], closeCode: 0 };
  try {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const inbox = [];
    let wake = null;
    ws.onmessage = ev => { inbox.push(ev.data); if (wake) wake(); };
    const closed = new Promise(resolve => { ws.onclose = resolve; });
    const closedEarly = closed.then(ev => { throw new Error('closed early with ' + ev.code); });
    await Promise.race([new Promise(resolve => { ws.onopen = resolve; }), closedEarly]);
    const next = () => inbox.length ? Promise.resolve(inbox.shift())
                                    : new Promise(resolve => { wake = () => { wake = null; resolve(inbox.shift()); }; });
    for (const m of spec) {
      ws.send(toSend(m));
      report.received.push(received(await Promise.race([next(), closedEarly])));
    }
    ws.close(1000, 'done');
    report.closeCode = (await closed).code;
  } catch (e) {
    report.error = String(e);
  }
  return report;
}
</script>`

// TestChromium round-trips the peer messages with Chromium's WebSocket,
// from a page of the same origin.
func TestChromium(t *testing.T) {
	browser := startBrowser(t)
	e, srv := serveEcho(t, echoPage)
	sent := peerMessages()

	do(t, browser, "loading the echo page", chromedp.Navigate(srv.URL+"/"))
	url, _ := json.Marshal(wsURL(srv, "chromium"))
	ctx, cancel := context.WithTimeout(browser, browserTimeout)
	defer cancel()
	rep, err := chromedp.Run(ctx, chromedp.Evaluate[peerReport](
		fmt.Sprintf("runEcho(%s, %s)", url, specJSON(t, sent)), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("runEcho: %v", err)
	}
	e.check(t, "chromium", sent, rep)
}

// wireLog collects the WebSocket messages a tab receives, as Chromium's
// network domain reports them (what came over the wire, not what the page
// made of it).
type wireLog struct {
	mu     sync.Mutex
	frames []string
	wg     sync.WaitGroup
}

// watchWire starts collecting; the collector ends with the tab's context.
func watchWire(tab context.Context) *wireLog {
	w := new(wireLog)
	events := chromedp.Events(tab, network.WebSocketFrameReceived)
	w.wg.Go(func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			w.mu.Lock()
			w.frames = append(w.frames, string(ev.Response.PayloadData))
			w.mu.Unlock()
		}
	})
	return w
}

// waitFor waits until a frame received so far satisfies match.
func (w *wireLog) waitFor(t *testing.T, who, what string, match func(string) bool) {
	t.Helper()
	if !wstest.Poll(20*time.Millisecond, browserTimeout, func() bool { return slices.ContainsFunc(w.snapshot(), match) }) {
		t.Fatalf("%s never received %s; frames:\n%s", who, what, strings.Join(w.snapshot(), "\n"))
	}
}

func (w *wireLog) snapshot() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.frames...)
}

// relayed is a message the chat's relay delivered.
type relayed struct {
	From string  `json:"from"`
	Room *string `json:"room"` // absent for a direct message
	Data struct {
		Text string `json:"text"`
		DM   bool   `json:"dm"`
	} `json:"data"`
}

// parseRelayed reads a relayed message from a frame of the page's
// wsroom.v1 connection: a header line, then the relay's JSON.
func parseRelayed(frame string) (relayed, bool) {
	var m relayed
	_, data, ok := strings.Cut(frame, "\n")
	if !ok {
		return m, false
	}
	err := json.Unmarshal([]byte(data), &m)
	return m, err == nil && m.From != ""
}

// clearInput empties the input with that id, before typing into it.
// (chromedp.SetValue cannot set "": it drops the empty argument.)
func clearInput(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).value = ''`, id))
}

// hasLine is a page predicate: the chat log shows a line from who with text.
func hasLine(who, text string) string {
	w, _ := json.Marshal(who)
	x, _ := json.Marshal(text)
	return fmt.Sprintf(`[...document.querySelectorAll('#log .line')].some(l =>
		l.querySelector('.who')?.textContent === %s && l.querySelector('.text')?.textContent === %s)`, w, x)
}

// TestChromiumChat drives examples/chat's page in three tabs of one
// browser: alice, bob and carol join the room "lobby" by typing into the
// join form; alice's room message shows up in bob's and carol's pages; her
// direct message (typed as "/msg bob …") reaches bob's page and wire, and
// neither carol's page nor her wire.
func TestChromiumChat(t *testing.T) {
	browser := startBrowser(t)
	handler, hub := chatapp.New(wsroom.Options{})
	srv := serve(t, &testHub{Hub: hub, logs: new(syncBuffer)}, handler)

	names := []string{"alice", "bob", "carol"}
	tabs := map[string]context.Context{}
	wires := map[string]*wireLog{}
	for _, name := range names {
		tab, cancel := chromedp.NewContext(browser)
		wire := watchWire(tab)
		t.Cleanup(func() {
			cancel()
			wire.wg.Wait()
		})
		tabs[name], wires[name] = tab, wire
		do(t, tab, name+" joins",
			chromedp.Navigate(srv.URL+"/"),
			chromedp.WaitVisible(chromedp.CSS("#name")),
			// The page prefills the room from localStorage, which the
			// tabs share (the name is per tab): clear both, then type.
			clearInput("name"),
			chromedp.SendKeys(chromedp.CSS("#name"), name),
			clearInput("room"),
			chromedp.SendKeys(chromedp.CSS("#room"), "lobby"),
			chromedp.Click(chromedp.CSS("#join button")),
			chromedp.WaitEnabled(chromedp.CSS("#text")),
		)
	}
	for _, name := range names {
		do(t, tabs[name], name+" sees 3 members",
			chromedp.Poll[chromedp.Void](`document.getElementById('count').textContent === '3'`))
	}

	say := func(text string) {
		do(t, tabs["alice"], "alice sends "+text,
			clearInput("text"),
			chromedp.SendKeys(chromedp.CSS("#text"), text),
			chromedp.Click(chromedp.CSS("#send-button")),
		)
	}

	const hello = "hello lobby, grüße 😀"
	say(hello)
	for _, name := range []string{"bob", "carol"} {
		do(t, tabs[name], name+" sees alice's room message", chromedp.Poll[chromedp.Void](hasLine("alice", hello)))
	}

	const secret = "a secret for bob 🤫"
	say("/msg bob " + secret)
	do(t, tabs["bob"], "bob sees alice's direct message", chromedp.Poll[chromedp.Void](hasLine("alice → you", secret)))
	do(t, tabs["alice"], "alice sees her own direct message", chromedp.Poll[chromedp.Void](hasLine("you → bob", secret)))

	// Connections deliver in order: once carol has alice's next room
	// message, a leaked direct message would already be there too.
	const after = "after the direct message"
	say(after)
	do(t, tabs["carol"], "carol sees alice's next room message", chromedp.Poll[chromedp.Void](hasLine("alice", after)))
	wires["carol"].waitFor(t, "carol", "alice's next room message", func(f string) bool {
		m, ok := parseRelayed(f)
		return ok && m.Data.Text == after
	})
	for _, f := range wires["carol"].snapshot() {
		if strings.Contains(f, "secret") {
			t.Errorf("carol received alice's direct message: %s", f)
		}
	}
	leaked, err := chromedp.Run(tabs["carol"], chromedp.Evaluate[bool](
		fmt.Sprintf(`document.getElementById('log').textContent.includes(%q)`, "secret")))
	if err != nil || leaked {
		t.Errorf("carol's page shows the direct message (or could not be read: %v)", err)
	}

	// bob got it exactly once, as a direct message stamped from alice.
	dms := 0
	for _, f := range wires["bob"].snapshot() {
		if m, ok := parseRelayed(f); ok && m.Data.Text == secret {
			dms++
			if m.From != "alice" || m.Room != nil || !m.Data.DM {
				t.Errorf("bob's copy of the direct message: %s", f)
			}
		}
	}
	if dms != 1 {
		t.Errorf("bob received the direct message %d times, want 1", dms)
	}
}
