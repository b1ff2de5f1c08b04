package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"
)

// The compression scenario (issue 5): a 4 KiB JSON message fanned out to
// c.small subscribers whose clients all offer permessage-deflate, on wsroom
// without compression, wsroom with it and gorilla with PreparedMessage
// (compressServers); then idle memory at c.mid connections with the
// extension negotiated or not, before any traffic and after a burst.

// compressResult is one server of the compression scenario.
type compressResult struct {
	Server    string
	Deflate   bool        // the server accepts permessage-deflate
	Fanout    *loadResult // 4 KiB JSON to c.small subscribers
	Idle      *idleResult // at c.mid connections, before any traffic
	IdleAfter *idleResult // at c.mid connections, after compressBurst broadcasts
	Failed    string      `json:",omitempty"`
}

// compressBurst is the number of broadcasts between the two idle
// measurements.
const compressBurst = 4

// compressIdleLimit is issue 5's bound on what negotiating compression may
// add to an idle connection, in KiB of RSS.
const compressIdleLimit = 0.5

func compressServer(name string) (deflate, ok bool) {
	for _, s := range compressServers {
		if s.name == name {
			return s.deflate, true
		}
	}
	return false, false
}

// runCompress runs the compression scenario on every server of
// c.compressServers.
func runCompress(ctx context.Context, c *config) []*compressResult {
	var out []*compressResult
	for _, name := range c.compressServers {
		r, err := runCompressServer(ctx, c, name)
		if err != nil {
			log.Printf("%s: %v", name, err)
			r.Failed = err.Error()
		}
		out = append(out, r)
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

func runCompressServer(ctx context.Context, c *config, name string) (*compressResult, error) {
	deflate, _ := compressServer(name)
	r := &compressResult{Server: name, Deflate: deflate}
	opts := loadOpts{deflate: true, json: true, inflateEvery: c.inflateEvery}
	negotiated := func(p *phase) error {
		want := int64(0)
		if deflate {
			want = int64(p.n)
		}
		if got := p.l.negotiated.Load(); got != want {
			return fmt.Errorf("%d of %d connections negotiated permessage-deflate, want %d", got, p.n, want)
		}
		return nil
	}
	err := withServer(ctx, c, name, c.small, opts, func(p *phase) error {
		if err := negotiated(p); err != nil {
			return err
		}
		lr := p.load(c, nil, nil, 8, 16)
		r.Fanout = &lr
		log.Printf("%s: 4 KiB JSON fan-out %d subs: %s", name, p.n, fmtLoad(lr))
		return nil
	})
	if err != nil {
		return r, err
	}
	err = withServer(ctx, c, name, c.mid, opts, func(p *phase) error {
		if err := negotiated(p); err != nil {
			return err
		}
		before, err := p.idle()
		if err != nil {
			return err
		}
		r.Idle = &before
		burst := *c
		burst.dur = 0
		if lr := p.load(&burst, nil, nil, compressBurst, compressBurst); lr.Err != "" || lr.Deliveries != lr.Expected {
			return fmt.Errorf("burst: %s", fmtLoad(lr))
		}
		// wsroom's poller workers exit after a second without work; an
		// idle connection is one whose worker has gone.
		time.Sleep(c.compressSettle)
		after, err := p.idle()
		if err != nil {
			return err
		}
		r.IdleAfter = &after
		log.Printf("%s: idle at %d with 4 KiB JSON clients: %.2f KiB/conn, %.2f after %d broadcasts",
			name, p.n, r.Idle.RSSKiBPerConn, r.IdleAfter.RSSKiBPerConn, compressBurst)
		return nil
	})
	return r, err
}

func (rep *report) compressByName(name string) *compressResult {
	for _, r := range rep.compress {
		if r.Server == name {
			return r
		}
	}
	return nil
}

// compressRow is one line of the compression table.
type compressRow struct {
	name   string
	lower  bool
	isDiff bool   // compare wsroom-deflate with wsroom by difference, not quotient
	unit   string // with isDiff: the difference's unit
	get    func(*compressResult) (v float64, note string, ok bool)
}

func compressRows(c *config) []compressRow {
	fan := func(f func(loadResult) float64) func(*compressResult) (float64, string, bool) {
		return func(r *compressResult) (float64, string, bool) {
			if r.Fanout == nil {
				return 0, "", false
			}
			return f(*r.Fanout), loadNote(*r.Fanout), true
		}
	}
	idle := func(after bool, f func(idleResult) float64) func(*compressResult) (float64, string, bool) {
		return func(r *compressResult) (float64, string, bool) {
			ir := r.Idle
			if after {
				ir = r.IdleAfter
			}
			if ir == nil {
				return 0, "", false
			}
			return f(*ir), "", true
		}
	}
	rss := func(i idleResult) float64 { return i.RSSKiBPerConn }
	return []compressRow{
		{fmt.Sprintf("server CPU µs/delivery, %s subs", k(c.small)), true, false, "", fan(func(l loadResult) float64 { return l.CPUMicros })},
		{fmt.Sprintf("deliveries/s, %s subs", k(c.small)), false, false, "", fan(func(l loadResult) float64 { return l.PerSec })},
		{"wire bytes/delivery (frame headers included)", true, false, "", func(r *compressResult) (float64, string, bool) {
			if r.Fanout == nil || r.Fanout.Deliveries == 0 {
				return 0, "", false
			}
			return r.Fanout.WirePerDelivery, "", true // the machine's load does not change it
		}},
		{fmt.Sprintf("idle RSS KiB/conn @%s, before any message", k(c.mid)), true, true, " KiB", idle(false, rss)},
		{fmt.Sprintf("idle RSS KiB/conn @%s, after %d broadcasts", k(c.mid), compressBurst), true, true, " KiB", idle(true, rss)},
		{fmt.Sprintf("idle Go heap+stacks KiB/conn @%s, after %d broadcasts", k(c.mid), compressBurst), true, true, " KiB",
			idle(true, func(i idleResult) float64 { return i.HeapPerConn / 1024 })},
		{fmt.Sprintf("goroutines per idle conn @%s, after %d broadcasts", k(c.mid), compressBurst), true, true, "",
			idle(true, func(i idleResult) float64 { return i.GoroutinePerCon })},
	}
}

// compressionSection renders the compression scenario: the table, the
// ratios and issue 5's idle-memory bound.
func (rep *report) compressionSection() string {
	if len(rep.compress) == 0 {
		return ""
	}
	c := rep.cfg
	var b strings.Builder
	b.WriteString("\n### Compression (issue 5)\n\n")
	fmt.Fprintf(&b, "%d-byte JSON messages (text frames, %d variants of a market-data update, a fresh broadcast each time) fanned out to %s "+
		"subscribers; every client offers `%s`. Clients count every message, check that RSV1 appears only where negotiated, and inflate "+
		"(pooled flate readers) and check the length and CRC-32 of %s of each connection. "+
		"Idle: %s connections, the same clients, before any message and %v after %d broadcasts.\n\n",
		jsonSize, jsonVariants, k(c.small), deflateOffer, everyNth(c.inflateEvery), k(c.mid), c.compressSettle, compressBurst)
	w, wz, g := rep.compressByName("wsroom"), rep.compressByName("wsroom-deflate"), rep.compressByName("gorilla-prepared")
	b.WriteString("| metric |")
	for _, r := range rep.compress {
		b.WriteString(" " + r.Server + " |")
	}
	b.WriteString(" wsroom-deflate ÷ wsroom (idle: difference) | wsroom-deflate vs gorilla-prepared |\n|---|")
	b.WriteString(strings.Repeat("---:|", len(rep.compress)+2) + "\n")
	for _, rw := range compressRows(c) {
		b.WriteString("| " + rw.name + " |")
		for _, r := range rep.compress {
			v, note, ok := rw.get(r)
			switch {
			case !ok:
				b.WriteString(" — |")
			case note != "":
				fmt.Fprintf(&b, " %s (%s) |", num(v), note)
			default:
				fmt.Fprintf(&b, " %s |", num(v))
			}
		}
		if d, ok := compressDelta(rw, w, wz); ok && rw.isDiff {
			fmt.Fprintf(&b, " %+.2f%s |", d, rw.unit)
		} else if ok {
			fmt.Fprintf(&b, " %s× |", num(d))
		} else {
			b.WriteString(" — |")
		}
		if x, ok := compressAdvantage(rw, wz, g); ok && !rw.isDiff {
			fmt.Fprintf(&b, " %s× |", num(x))
		} else {
			b.WriteString(" — |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n\"wsroom-deflate ÷ wsroom\" is the plain quotient (CPU < 1×: compressing costs the server less per delivery). " +
		"\"vs gorilla-prepared\" is wsroom's advantage (> 1×: wsroom is better).\n")
	for _, r := range rep.compress {
		if r.Failed != "" {
			fmt.Fprintf(&b, "\n**%s failed:** %s\n", r.Server, r.Failed)
		}
	}
	b.WriteString("\n| target | measured | status |\n|---|---|---|\n")
	rows := compressRows(c)
	for _, i := range []int{3, 4} {
		st, measured := "n/a (not measured)", "—"
		if d, ok := compressDelta(rows[i], w, wz); ok {
			a, _, _ := rows[i].get(w)
			z, _, _ := rows[i].get(wz)
			measured = fmt.Sprintf("%+.2f KiB (%.2f with, %.2f without)", d, z, a)
			st = "**NOT met**"
			if d <= compressIdleLimit {
				st = "met"
			}
		}
		fmt.Fprintf(&b, "| negotiated compression adds ≤ %.1f KiB idle RSS/conn @%s (%s) | %s | %s |\n",
			compressIdleLimit, k(c.mid), strings.TrimPrefix(rows[i].name, fmt.Sprintf("idle RSS KiB/conn @%s, ", k(c.mid))), measured, st)
	}
	if c.mid < 10000 {
		fmt.Fprintf(&b, "\nWith %s connections, the whole process's RSS noise (a few hundred KiB) is more than 0.5 KiB per connection: "+
			"the bound is meant for 10k.\n", k(c.mid))
	}
	return b.String()
}

// compressDelta compares wsroom-deflate (z) with wsroom (w) on a row: the
// difference for idle rows, the quotient z/w otherwise.
func compressDelta(rw compressRow, w, z *compressResult) (float64, bool) {
	if w == nil || z == nil {
		return 0, false
	}
	a, _, ok1 := rw.get(w)
	b, _, ok2 := rw.get(z)
	if !ok1 || !ok2 || (!rw.isDiff && a == 0) {
		return 0, false
	}
	if rw.isDiff {
		return b - a, true
	}
	return b / a, true
}

// compressAdvantage is a's advantage over b on a row (> 1: a is better).
func compressAdvantage(rw compressRow, a, b *compressResult) (float64, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	x, _, ok1 := rw.get(a)
	y, _, ok2 := rw.get(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	return advantage(x, y, rw.lower)
}

func everyNth(n int) string {
	if n <= 1 {
		return "every message"
	}
	return fmt.Sprintf("one message in %d (the first included)", n)
}
