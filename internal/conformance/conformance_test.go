package conformance_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/conformance"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoTarget mounts an echo hub with opts at /ws on a loopback server.
func echoTarget(t *testing.T, opts wsroom.Options) conformance.Target {
	t.Helper()
	opts.OnMessage = func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) }
	opts.InsecureSkipOriginCheck = true
	opts.Logger = slog.New(slog.DiscardHandler)
	hub := wsroom.New(opts)
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		srv.Close()
	})
	return conformance.Target{Addr: strings.TrimPrefix(srv.URL, "http://"), Path: "/ws"}
}

// hubTargets returns the default endpoint and the 16 MiB one.
func hubTargets(t *testing.T) map[conformance.Endpoint]conformance.Target {
	return map[conformance.Endpoint]conformance.Target{
		conformance.Default: echoTarget(t, wsroom.Options{}),
		conformance.Large:   echoTarget(t, wsroom.Options{ReadLimit: 16 << 20, SendQueueBytes: 64 << 20}),
	}
}

// deflateEndpointOptions enables permessage-deflate on a third echo
// endpoint (conformance.Deflate, read limit 1 MiB), against which
// TestConformance runs groups 12 and 13. Were it nil, the summary would
// say they were not run.
var deflateEndpointOptions = func(o *wsroom.Options) { o.Compression.Enabled = true }

// TestConformance runs every case against wsroom's echo endpoints and
// fails on any case that is not OK. A case OK only on its second run
// (see conformance.Runner.RunCase) passes but is logged, and the summary
// counts it under "OK after retry". With WSROOM_CONFORMANCE_SUMMARY set,
// it also writes the Markdown summary to that file.
func TestConformance(t *testing.T) {
	r := conformance.Runner{Targets: hubTargets(t)}
	cases := conformance.Cases()
	if deflateEndpointOptions != nil {
		opts := wsroom.Options{ReadLimit: 1 << 20}
		deflateEndpointOptions(&opts)
		r.Targets[conformance.Deflate] = echoTarget(t, opts)
		cases = append(cases, conformance.DeflateCases()...)
	}
	start := time.Now()
	results := r.Run(cases)
	md := conformance.Markdown(results)
	if deflateEndpointOptions == nil {
		md += "\nGroups 12–13 (permessage-deflate): not run (no deflate endpoint).\n"
	}
	if raceEnabled {
		md += "\nBuilt with the race detector: the timings above are not performance figures.\n"
	}
	t.Logf("conformance: %d cases in %v\n%s", len(results), time.Since(start).Round(time.Millisecond), md)
	if path := os.Getenv("WSROOM_CONFORMANCE_SUMMARY"); path != "" {
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			t.Errorf("writing summary: %v", err)
		}
	}
	logRetries(t, results)
	for _, res := range results {
		if res.Verdict != conformance.OK {
			t.Errorf("case %s (%s): %s: %s", res.Case.ID, res.Case.Description, res.Verdict, res.Reason)
		}
	}
}
