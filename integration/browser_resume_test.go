package integration

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
)

// resumePage loads the JavaScript client from the hub's ClientScript
// (/wsroom.js) and records, in window.rec, the broadcast numbers it
// receives in room "browser", its closes, resumes and losses.
const resumePage = `<!doctype html>
<meta charset="utf-8">
<title>wsroom resume</title>
<script type="module">
import { WsroomClient } from '/wsroom.js';
const rec = window.rec = { seqs: [], replayed: 0, closes: [], recovered: [], lost: [], joined: 0, errors: [] };
// The first reconnection waits for the test's release(), so that what
// the test sends meanwhile is surely missed; later ones wait 300 ms.
let hold = true;
const held = [];
const timers = {
  setTimeout(fn, ms) {
    if (ms !== 300 || !hold) return setTimeout(fn, ms);
    const h = { fn };
    held.push(h);
    return h;
  },
  clearTimeout(id) { if (typeof id === 'object' && id !== null) id.fn = null; else clearTimeout(id); },
};
window.release = () => { hold = false; for (const h of held.splice(0)) if (h.fn) h.fn(); };
const c = new WsroomClient('/ws?user=page&rooms=browser', { reconnect: { min: 300, max: 300, jitter: 0 }, timers });
c.on('message', m => { rec.seqs.push(JSON.parse(m.data).seq); if (m.replayed) rec.replayed++; });
c.on('joined', () => { rec.joined++; });
c.on('close', ev => { rec.closes.push(ev.code); });
c.on('recovered', ev => { rec.recovered.push(ev.count); });
c.on('lost', ev => { rec.lost.push(ev.reason); });
c.on('error', ev => { rec.errors.push(ev.error); });
</script>`

// pageRecord is window.rec.
type pageRecord struct {
	Seqs      []uint64 `json:"seqs"`
	Replayed  int      `json:"replayed"`
	Closes    []int    `json:"closes"`
	Recovered []int    `json:"recovered"`
	Lost      []string `json:"lost"`
	Joined    int      `json:"joined"`
	Errors    []string `json:"errors"`
}

// TestChromiumResume: a page of headless Chromium uses client/wsroom.js,
// served by the hub (wsroom.ClientScript), in a room with history. Its
// connection is killed server-side (no close frame) while messages are
// sent; it reconnects, and every missed message arrives once, in order,
// before the live ones.
func TestChromiumResume(t *testing.T) {
	browser := startBrowser(t)
	s, srv := startResumeServer(t, resumePage)

	read := func(what string) pageRecord {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, browserTimeout)
		defer cancel()
		js, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.rec)`))
		if err != nil {
			t.Fatalf("%s: reading the page: %v", what, err)
		}
		var rec pageRecord
		if err := json.Unmarshal([]byte(js), &rec); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return rec
	}
	waitPage := func(what, cond string) {
		t.Helper()
		do(t, browser, what, chromedp.Poll[chromedp.Void](`window.rec && (`+cond+`)`))
	}
	broadcast := func(n int, rate float64) {
		t.Helper()
		if _, _, err := s.Broadcast(context.Background(), "browser", n, rate, false); err != nil {
			t.Fatal(err)
		}
	}

	do(t, browser, "loading the page", chromedp.Navigate(srv.URL+"/"))
	waitPage("the page joins", `rec.joined === 1`)
	broadcast(20, 0)
	waitPage("20 live messages", `rec.seqs.length === 20`)

	// Killed while away: the page misses 30 messages, then gets them back.
	if n := s.Cut("page"); n != 1 {
		t.Fatalf("cut %d connections, want the page's one", n)
	}
	waitPage("the page sees its connection die", `rec.closes.length === 1`)
	broadcast(30, 0)
	do(t, browser, "letting the page reconnect", chromedp.Evaluate[chromedp.Void](`window.release()`))
	waitPage("the resume", `rec.recovered.length === 1`)
	broadcast(10, 0)
	waitPage("60 messages", `rec.seqs.length >= 60`)
	rec := read("after the first cut")
	if rec.Closes[0] != 1006 || !slices.Equal(rec.Recovered, []int{30}) || rec.Replayed != 30 {
		t.Errorf("closes %v, recovered %v, replayed %d: want 1006, [30], 30", rec.Closes, rec.Recovered, rec.Replayed)
	}

	// Killed twice within a stream of 120 messages sent at 60/s: the
	// stream goes on right after each cut, while the page is away.
	cuts := 1
	for i := range 3 {
		if i > 0 {
			cuts += s.Cut("page") // 0 if the page is still reconnecting
		}
		broadcast(40, 60)
	}
	waitPage("all 180 messages", `rec.seqs.length >= 180 && rec.closes.length >= `+strconv.Itoa(cuts))
	rec = read("at the end")
	want := make([]uint64, 180)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(rec.Seqs, want) {
		t.Errorf("the page received %s, want 1..180 once, in order", describeRuns(runsOf(rec.Seqs)))
	}
	if len(rec.Lost) > 0 || len(rec.Errors) > 0 {
		t.Errorf("lost %v, errors %v", rec.Lost, rec.Errors)
	}
	t.Logf("closes %v, resumes replaying %v messages, %d replayed in all", rec.Closes, rec.Recovered, rec.Replayed)
}

// runsOf turns sequence numbers into runs of consecutive ones.
func runsOf(seqs []uint64) [][2]uint64 {
	var runs [][2]uint64
	for _, s := range seqs {
		if n := len(runs); n > 0 && runs[n-1][1]+1 == s {
			runs[n-1][1] = s
			continue
		}
		runs = append(runs, [2]uint64{s, s})
	}
	return runs
}
