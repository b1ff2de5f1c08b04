package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) != "" { // the server child of TestRun
		if err := serve(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "overhead server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestRun runs the whole tool at a tiny size: it must measure every
// phase, with scrapes in B phases only, and report the ratio.
func TestRun(t *testing.T) {
	cfg, err := parseFlags([]string{"-subs", "40", "-rounds", "1", "-phase", "300ms", "-scrape", "50ms", "-scrapes", "3",
		"-server-cpu", "-1", "-client-cpu", "-1", "-sources", "2"})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, want := range []string{"40 subscribers connected", "\nA1 ", "\nB1 ", "B/A = ", "one scrape at 40 connections"} {
		if !strings.Contains(report, want) {
			t.Errorf("report has no %q:\n%s", want, report)
		}
	}
	for line := range strings.Lines(report) {
		f := strings.Fields(line)
		if len(f) > 2 && (f[0] == "A1" && f[1] != "0" || f[0] == "B1" && f[1] == "0") {
			t.Errorf("scrapes in the wrong phase: %q", line)
		}
	}
}
