package conformance

import (
	"fmt"
	"strings"
	"time"
)

// GroupTitles names each group in summaries.
var GroupTitles = map[int]string{
	1:  "Framing",
	2:  "Ping/Pong",
	3:  "Reserved bits",
	4:  "Opcodes",
	5:  "Fragmentation",
	6:  "UTF-8 handling",
	7:  "Close handling",
	9:  "Limits/performance",
	10: "Miscellaneous",
	12: "Deflate payloads",
	13: "Deflate parameters",
}

// GroupCount is one group's tally. OK, Retried, NS and Failed add up
// to Cases: a case that was OK only on its second run counts in Retried,
// not in OK.
type GroupCount struct {
	Group                          int
	Cases, OK, Retried, NS, Failed int
	Extra                          int           // cases not in Autobahn
	Elapsed                        time.Duration // summed case time
}

// Tally counts results per group, in group order.
func Tally(results []Result) []GroupCount {
	var out []GroupCount
	at := map[int]int{}
	for _, r := range results {
		g := r.Case.Group
		i, ok := at[g]
		if !ok {
			i = len(out)
			at[g] = i
			out = append(out, GroupCount{Group: g})
		}
		c := &out[i]
		c.Cases++
		if r.Case.Extra {
			c.Extra++
		}
		c.Elapsed += r.Elapsed
		switch {
		case r.Verdict == OK && r.Retried():
			c.Retried++
		case r.Verdict == OK:
			c.OK++
		case r.Verdict == NonStrict:
			c.NS++
		default:
			c.Failed++
		}
	}
	for i := 1; i < len(out); i++ { // insertion sort by group
		for j := i; j > 0 && out[j].Group < out[j-1].Group; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Markdown renders the summary as Markdown tables: one row per group and
// a total (a case OK only on its second run is counted under "OK after
// retry", not under OK), then group 9's timings, then every case that
// was run twice with both runs' outcomes, then every case that is not
// OK.
func Markdown(results []Result) string {
	var b strings.Builder
	b.WriteString("| group | what | cases | OK | OK after retry | NON-STRICT | FAILED |\n|---|---|---:|---:|---:|---:|---:|\n")
	var tot GroupCount
	for _, g := range Tally(results) {
		what := GroupTitles[g.Group]
		if g.Extra > 0 {
			what += fmt.Sprintf(" (%d Autobahn cases + %d extra)", g.Cases-g.Extra, g.Extra)
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %d | %d | %d |\n", g.Group, what, g.Cases, g.OK, g.Retried, g.NS, g.Failed)
		tot.Cases += g.Cases
		tot.OK += g.OK
		tot.Retried += g.Retried
		tot.NS += g.NS
		tot.Failed += g.Failed
	}
	fmt.Fprintf(&b, "| **total** | | **%d** | **%d** | **%d** | **%d** | **%d** |\n", tot.Cases, tot.OK, tot.Retried, tot.NS, tot.Failed)
	var timed []Result
	for _, r := range results {
		if r.Case.Group == 9 {
			timed = append(timed, r)
		}
	}
	if len(timed) > 0 {
		b.WriteString("\nGroup 9 timings (one connection each, cases run one at a time):\n\n| case | what | time | note |\n|---|---|---:|---|\n")
		for _, r := range timed {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.Case.ID, r.Case.Description, r.Elapsed.Round(time.Millisecond), r.Info)
		}
	}
	writeDeflateNotes(&b, results)
	var bad, retried []Result
	for _, r := range results {
		if r.Retried() {
			retried = append(retried, r)
		}
		if r.Verdict != OK {
			bad = append(bad, r)
		}
	}
	if len(retried) > 0 {
		b.WriteString("\nCases run twice (not OK on the first run: a loaded machine, or a flaky server):\n\n| case | first run | second run |\n|---|---|---|\n")
		for _, r := range retried {
			second := r.Outcome()
			if r.Verdict != OK {
				second += ": " + r.Reason
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", r.Case.ID, escapeCell(r.FirstTry), escapeCell(second))
		}
	}
	if len(bad) > 0 {
		b.WriteString("\nCases not OK:\n\n| case | verdict | reason |\n|---|---|---|\n")
		for _, r := range bad {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", r.Case.ID, r.Verdict, escapeCell(r.Reason))
		}
	}
	return b.String()
}

// escapeCell makes s safe inside a Markdown table cell.
func escapeCell(s string) string { return cellEscaper.Replace(s) }

var cellEscaper = strings.NewReplacer("|", "\\|", "\n", " ")

// writeDeflateNotes says how many messages groups 12 and 13 send, and
// lists their notes (offers the server declined), if they ran.
func writeDeflateNotes(b *strings.Builder, results []Result) {
	var ran bool
	var notes []Result
	for _, r := range results {
		if r.Case.Group == 12 || r.Case.Group == 13 {
			ran = true
			if r.Info != "" {
				notes = append(notes, r)
			}
		}
	}
	if !ran {
		return
	}
	fmt.Fprintf(b, "\nGroups 12–13 send %d messages per case up to 2 KiB, then about 256 KiB per case (%d of 128 KiB); Autobahn sends 1000.\n",
		DeflateCount(16), DeflateCount(128<<10))
	if len(notes) > 0 {
		b.WriteString("\n| case | note |\n|---|---|\n")
		for _, r := range notes {
			fmt.Fprintf(b, "| %s | %s |\n", r.Case.ID, r.Info)
		}
	}
}
