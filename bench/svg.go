package main

import (
	"fmt"
	"html"
	"strings"
)

// bar is one bar of a chart panel.
type bar struct {
	server string
	v      float64
	note   string
	ok     bool // measured
}

type panel struct {
	title string
	bars  []bar
}

// svg draws one horizontal bar chart per panel (fan-out deliveries/s at
// both sizes, idle KiB per connection), one bar per server, and one for
// the compression scenario's server CPU per delivery. Hand-written SVG, no
// dependencies.
func (rep *report) svg() string {
	var panels []panel
	if len(rep.results) > 0 {
		rows := rep.rows()
		for _, p := range []struct {
			row   row
			title string
		}{{rows[4], " (higher is better)"}, {rows[5], " (higher is better)"}, {rows[0], " (lower is better)"}, {rows[1], " (lower is better)"}} {
			pn := panel{title: p.row.name + p.title}
			for _, r := range rep.results {
				v, note, ok := p.row.get(r)
				pn.bars = append(pn.bars, bar{r.Server, v, note, ok})
			}
			panels = append(panels, pn)
		}
	}
	if len(rep.compress) > 0 {
		rw := compressRows(rep.cfg)[0]
		pn := panel{title: "4 KiB JSON, compressing clients: " + rw.name + " (lower is better)"}
		for _, r := range rep.compress {
			v, note, ok := rw.get(r)
			pn.bars = append(pn.bars, bar{r.Server, v, note, ok})
		}
		panels = append(panels, pn)
	}
	const (
		width, left, barH, gap, panelGap = 760, 125, 18, 6, 40
		barMax                           = width - left - 110
	)
	height := 30
	for _, p := range panels {
		height += 24 + len(p.bars)*(barH+gap) + panelGap
	}
	colors := map[string]string{"wsroom": "#2f7ed8", "gorilla": "#8d8d8d", "melody": "#c9a227", "gobwas-raw": "#5aa05a", "coder": "#b05a9a", "gobwas-epoll": "#2e8b57",
		"wsroom-deflate": "#1c5fa8", "gorilla-prepared": "#6e6e6e"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">wsroom vs anchors (%s)</text>`+"\n",
		html.EscapeString(rep.started.UTC().Format("2006-01-02")))
	y := 40
	for _, p := range panels {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+12, html.EscapeString(p.title))
		y += 22
		vmax := 0.0
		for _, br := range p.bars {
			if br.ok {
				vmax = max(vmax, br.v)
			}
		}
		for _, br := range p.bars {
			v, note, ok := br.v, br.note, br.ok
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+barH-5, html.EscapeString(br.server))
			label := "not measured"
			if ok {
				w := 1
				if vmax > 0 {
					w = max(1, int(v/vmax*barMax))
				}
				color := colors[br.server]
				if color == "" {
					color = "#999"
				}
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, w, barH, color)
				label = num(v)
				if note != "" {
					label += " (" + note + ")"
				}
				fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+w+6, y+barH-5, html.EscapeString(label))
			} else {
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#999">%s</text>`+"\n", left, y+barH-5, label)
			}
			y += barH + gap
		}
		y += panelGap - 22 + 24 - gap
	}
	b.WriteString("</svg>\n")
	return b.String()
}
