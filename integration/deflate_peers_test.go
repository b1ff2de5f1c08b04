package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// The two clients of deflate_test.go: two Chromium tabs, or two clients of
// Node's `ws` in one process.

func toPeerMessage(m wsroom.Message) peerMessage {
	return peerMessage{Type: typeName(m.Type), Data: base64.StdEncoding.EncodeToString(m.Data)}
}

// deflatePage holds one WebSocket to the room: openRoom(url) resolves to
// its extensions once open, sendMsg(m) sends a peerMessage, nextMsg()
// resolves to the next message received, closeRoom() closes with 1000 and
// resolves to the code of the server's close frame.
const deflatePage = `<!doctype html>
<meta charset="utf-8">
<title>wsroom deflate room client</title>
<script>
'use strict';
` + pageCodec + `
let ws, closed, wake = null;
const inbox = [];
async function openRoom(url) {
  ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = ev => { inbox.push(ev.data); if (wake) wake(); };
  closed = new Promise(resolve => { ws.onclose = resolve; });
  const ev = await Promise.race([new Promise(resolve => { ws.onopen = resolve; }), closed]);
  if (ev.type === 'close') throw new Error('closed with ' + ev.code);
  return ws.extensions;
}
function sendMsg(m) { ws.send(toSend(m)); }
async function nextMsg() {
  while (!inbox.length) {
    const ev = await Promise.race([new Promise(resolve => { wake = resolve; }), closed]);
    if (ev && ev.type === 'close') throw new Error('closed with ' + ev.code);
  }
  wake = null;
  return received(inbox.shift());
}
async function closeRoom() { ws.close(1000, 'done'); return (await closed).code; }
</script>`

// chromiumPair is two tabs of one browser, each with a WebSocket to the room.
type chromiumPair struct {
	tabs [2]context.Context
}

// openChromiumPair opens tabs "a" and "b" on the room's page and connects
// them, A first. It returns what each negotiated: the page's
// WebSocket.extensions and the response header from Chromium's network
// events.
func openChromiumPair(t *testing.T, browser context.Context, d *deflateRoom) (*chromiumPair, []negotiated) {
	t.Helper()
	p := new(chromiumPair)
	var neg []negotiated
	for i, name := range []string{"a", "b"} {
		tab, cancel := chromedp.NewContext(browser)
		t.Cleanup(cancel)
		p.tabs[i] = tab
		var mu sync.Mutex
		header, seen := "", false
		err := chromedp.Listen(tab, func(ev any) {
			if ev, ok := ev.(*network.EventWebSocketHandshakeResponseReceived); ok && ev.Response != nil {
				mu.Lock()
				header, seen = headerValue(ev.Response.Headers, "Sec-WebSocket-Extensions"), true
				mu.Unlock()
			}
		})
		if err != nil {
			t.Fatalf("tab %s: %v", name, err)
		}
		do(t, tab, "loading the room page in tab "+name, chromedp.Navigate(d.srv.URL+"/"))
		url, _ := json.Marshal(d.url(name))
		ext := evaluate[string](t, tab, "tab "+name+" connects", fmt.Sprintf("openRoom(%s)", url))
		wstest.WaitFor(t, "tab "+name+"'s handshake response event", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return seen
		})
		mu.Lock()
		neg = append(neg, negotiated{Peer: name, Extensions: ext, Header: header})
		mu.Unlock()
	}
	return p, neg
}

// headerValue looks a header up in Chromium's map case-insensitively.
func headerValue(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// evaluate runs a script in a tab, awaiting its promise, within browserTimeout.
func evaluate[T any](t *testing.T, tab context.Context, what, script string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (p *chromiumPair) send(t *testing.T, m wsroom.Message) (a, b peerMessage) {
	t.Helper()
	js, _ := json.Marshal(toPeerMessage(m))
	do(t, p.tabs[0], "A sends", chromedp.Evaluate[chromedp.Void](fmt.Sprintf("sendMsg(%s)", js)))
	b = evaluate[peerMessage](t, p.tabs[1], "B receives", "nextMsg()")
	a = evaluate[peerMessage](t, p.tabs[0], "A receives", "nextMsg()")
	return a, b
}

func (p *chromiumPair) close(t *testing.T) (codes [2]int) {
	t.Helper()
	for i, tab := range p.tabs {
		codes[i] = evaluate[int](t, tab, fmt.Sprintf("closing tab %c", 'A'+i), "closeRoom()")
	}
	return codes
}

// nodePair is node/deflate-peer.mjs: two `ws` clients, A and B, driven by
// JSON lines on its stdin and stdout.
type nodePair struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *syncBuffer
}

// nodeLine is a line the script prints; each carries one of the fields.
type nodeLine struct {
	Error      string       `json:"error"`
	Clients    []negotiated `json:"clients"`    // once both are open
	A          *peerMessage `json:"a"`          // after each send: what A and B received
	B          *peerMessage `json:"b"`          //
	CloseCodes []int        `json:"closeCodes"` // at the end
}

// startNodePair starts the script with clients "a" and "b" (A connects
// first) and returns what each negotiated.
func startNodePair(t *testing.T, node string, d *deflateRoom) (*nodePair, []negotiated) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	p := &nodePair{stderr: new(syncBuffer)}
	p.cmd = exec.CommandContext(ctx, node, filepath.Join("node", "deflate-peer.mjs"), d.url("a"), d.url("b"))
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(stdout)
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", p.cmd, err)
	}
	t.Cleanup(func() {
		p.stdin.Close() // the script ends at the end of its input
		if t.Failed() {
			cancel()
		}
		if err := p.cmd.Wait(); err != nil && !t.Failed() {
			t.Errorf("%s: %v\nstderr:\n%s", p.cmd, err, p.stderr)
		}
		cancel()
	})
	line := p.read(t)
	if len(line.Clients) != 2 {
		t.Fatalf("the script reported %d clients, want 2", len(line.Clients))
	}
	return p, line.Clients
}

// read reads the script's next line; an error line or no line fails the test.
func (p *nodePair) read(t *testing.T) nodeLine {
	t.Helper()
	b, err := p.stdout.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading deflate-peer.mjs: %v\nstderr:\n%s", err, p.stderr)
	}
	var line nodeLine
	if err := json.Unmarshal(b, &line); err != nil {
		t.Fatalf("deflate-peer.mjs printed %q: %v", b, err)
	}
	if line.Error != "" {
		t.Fatalf("deflate-peer.mjs: %s\nstderr:\n%s", line.Error, p.stderr)
	}
	return line
}

func (p *nodePair) send(t *testing.T, m wsroom.Message) (a, b peerMessage) {
	t.Helper()
	js, _ := json.Marshal(toPeerMessage(m))
	if _, err := p.stdin.Write(append(js, '\n')); err != nil {
		t.Fatalf("writing to deflate-peer.mjs: %v", err)
	}
	line := p.read(t)
	if line.A == nil || line.B == nil {
		t.Fatalf("deflate-peer.mjs did not report both messages: %+v", line)
	}
	return *line.A, *line.B
}

func (p *nodePair) close(t *testing.T) (codes [2]int) {
	t.Helper()
	p.stdin.Close() // the script closes both clients at the end of its input
	line := p.read(t)
	if len(line.CloseCodes) != 2 {
		t.Fatalf("deflate-peer.mjs reported close codes %v", line.CloseCodes)
	}
	return [2]int(line.CloseCodes)
}
