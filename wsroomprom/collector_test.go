package wsroomprom_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/wsroomprom"
)

// statsMetric says which metric exports each field of wsroom.Stats. A
// field added to Stats fails TestEveryStatsFieldExported until it is
// exported and listed here.
var statsMetric = map[string]string{
	"Connections":        "wsroom_connections",
	"Rooms":              "wsroom_rooms",
	"Users":              "wsroom_users",
	"Accepted":           "wsroom_handshakes_accepted_total",
	"Rejected":           "wsroom_handshakes_refused_total", // the sum over causes
	"MessagesIn":         "wsroom_messages_received_total",
	"BytesIn":            "wsroom_received_bytes_total",
	"MessagesOut":        "wsroom_messages_sent_total",
	"BytesOut":           "wsroom_sent_bytes_total",
	"SlowConsumerCloses": "wsroom_slow_consumer_closes_total",
	"Panics":             "wsroom_panics_total",
	"Parked":             "wsroom_parked_connections",
	"Parks":              "wsroom_parks_total",
	"BrokerOut":          "wsroom_broker_published_total",
	"BrokerIn":           "wsroom_broker_received_total",
	"BrokerErrors":       "wsroom_broker_errors_total",
	"HistoryResumes":     "wsroom_history_resumes_total",
	"HistoryLost":        "wsroom_history_lost_total",
	"HistoryReplayed":    "wsroom_history_replayed_total",
}

// gathered returns the metric families a registry holding c gathers,
// by name.
func gathered(t *testing.T, cs ...prometheus.Collector) map[string]bool {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	return names
}

func newHub(t *testing.T) *wsroom.Hub {
	t.Helper()
	h := wsroom.New(wsroom.Options{Logger: quietLogger()})
	t.Cleanup(func() { h.Shutdown(t.Context()) })
	return h
}

func TestEveryStatsFieldExported(t *testing.T) {
	names := gathered(t, wsroomprom.NewCollector(newHub(t), wsroomprom.Options{}))
	for f := range reflect.TypeFor[wsroom.Stats]().Fields() {
		metric, ok := statsMetric[f.Name]
		if !ok {
			t.Errorf("Stats.%s is not exported (add it to the collector's table and to statsMetric)", f.Name)
			continue
		}
		if !names[metric] {
			t.Errorf("Stats.%s: no metric %s", f.Name, metric)
		}
	}
	for _, name := range []string{"wsroom_closes_total", "wsroom_queued_bytes", "wsroom_queued_frames", "wsroom_queue_delay_seconds", "wsroom_broker_lag_seconds"} {
		if !names[name] {
			t.Errorf("no metric %s", name)
		}
	}
}

// TestLint runs Prometheus' own linter (naming, units, HELP, counters'
// _total) over everything exported.
func TestLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(wsroomprom.NewCollector(newHub(t), wsroomprom.Options{}))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestNamespaceAndConstLabels(t *testing.T) {
	chat, feed := newHub(t), newHub(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(
		wsroomprom.NewCollector(chat, wsroomprom.Options{Namespace: "app", ConstLabels: prometheus.Labels{"hub": "chat"}}),
		wsroomprom.NewCollector(feed, wsroomprom.Options{Namespace: "app", ConstLabels: prometheus.Labels{"hub": "feed"}}),
	)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "app_") {
			t.Errorf("metric %s without the namespace", f.GetName())
		}
		hubs := map[string]int{}
		for _, m := range f.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				if l.GetName() == "hub" {
					hubs[l.GetValue()]++
				}
			}
		}
		if hubs["chat"] == 0 || hubs["chat"] != hubs["feed"] || hubs["chat"] != len(f.GetMetric())/2 {
			t.Errorf("%s: series per hub %v of %d", f.GetName(), hubs, len(f.GetMetric()))
		}
	}
	// Bounded: the same series whatever the hubs hold.
	perHub := series / 2
	if want := 20 + 2 + int(wsroom.NumRefusals) + 2*wsroom.NumCloseClasses; perHub != want {
		t.Errorf("%d series per hub, want %d", perHub, want)
	}
	// The same label name twice is refused at registration.
	bad := wsroomprom.NewCollector(chat, wsroomprom.Options{ConstLabels: prometheus.Labels{"cause": "x"}})
	if err := prometheus.NewRegistry().Register(bad); err == nil {
		t.Error("a const label named cause was accepted")
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(wsroomprom.Handler(newHub(t)))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"\nwsroom_connections 0\n", "\ngo_goroutines ", "\nprocess_cpu_seconds_total ", "# TYPE wsroom_queue_delay_seconds histogram"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("Handler's answer has no %q", want)
		}
	}
}
