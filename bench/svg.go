package main

import (
	"fmt"
	"html"
	"strings"
)

// svg draws one horizontal bar chart per panel (fan-out deliveries/s at
// both sizes, idle KiB per connection), one bar per server. Hand-written
// SVG, no dependencies.
func (rep *report) svg() string {
	rows := rep.rows()
	panels := []struct {
		title string
		row   row
	}{
		{rows[4].name + " (higher is better)", rows[4]},
		{rows[5].name + " (higher is better)", rows[5]},
		{rows[0].name + " (lower is better)", rows[0]},
		{rows[1].name + " (lower is better)", rows[1]},
	}
	const (
		width, left, barH, gap, panelGap = 760, 110, 18, 6, 40
		barMax                           = width - left - 110
	)
	n := len(rep.results)
	panelH := 24 + n*(barH+gap)
	height := 30 + len(panels)*(panelH+panelGap)
	colors := map[string]string{"wsroom": "#2f7ed8", "gorilla": "#8d8d8d", "melody": "#c9a227", "gobwas-raw": "#5aa05a", "coder": "#b05a9a", "gobwas-epoll": "#2e8b57"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">wsroom vs anchors (%s)</text>`+"\n",
		html.EscapeString(rep.started.UTC().Format("2006-01-02")))
	y := 40
	for _, p := range panels {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+12, html.EscapeString(p.title))
		y += 22
		vmax := 0.0
		for _, r := range rep.results {
			if v, _, ok := p.row.get(r); ok {
				vmax = max(vmax, v)
			}
		}
		for _, r := range rep.results {
			v, note, ok := p.row.get(r)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+barH-5, html.EscapeString(r.Server))
			label := "not measured"
			if ok {
				w := 1
				if vmax > 0 {
					w = max(1, int(v/vmax*barMax))
				}
				color := colors[r.Server]
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
