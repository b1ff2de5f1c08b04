package wsroomprom_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/wsroomprom"
)

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		RefID        string `json:"refId"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("dashboards", "wsroom.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboards/wsroom.json: %v", err)
	}
	if dec.More() {
		t.Fatal("dashboards/wsroom.json: trailing data after the dashboard")
	}
	return d
}

var metricName = regexp.MustCompile(`\bwsroom_[a-z_]+`)

// TestDashboard checks that the dashboard is well-formed JSON, that its
// panels are laid out without overlap, and that it queries only metrics
// the exporter serves, every one of them.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without title, uid or panels: %q %q %d", d.Title, d.UID, len(d.Panels))
	}
	exported := gathered(t, wsroomprom.NewCollector(newHub(t), wsroomprom.Options{}))
	used := map[string]bool{}
	ids := map[int]bool{}
	for i, p := range d.Panels {
		if ids[p.ID] || p.Title == "" {
			t.Errorf("panel %d: id %d repeated or no title", i, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, q := range d.Panels[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", q.Title, p.Title)
			}
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.RefID == "" {
				t.Errorf("panel %q: refId %q repeated or empty", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			for _, name := range metricName.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(name, "_bucket")
				if !exported[base] {
					t.Errorf("panel %q queries %s, which the exporter does not serve", p.Title, name)
				}
				used[base] = true
			}
		}
	}
	for name := range exported {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// TestDashboardInPrometheus runs a real Prometheus server (Debian's
// prometheus package) that scrapes a hub through the exporter, then runs
// every query of the dashboard, as Grafana would, through its HTTP API.
// Without the prometheus binary it is skipped, unless CI=true.
func TestDashboardInPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed (Debian: apt-get install prometheus)")
		}
		t.Skip("prometheus is not installed (Debian: apt-get install prometheus)")
	}
	hub := wsroom.New(wsroom.Options{
		OnConnect:    func(c *wsroom.Conn, _ *http.Request) error { return c.Join("lobby") },
		PingInterval: -1,
		Logger:       quietLogger(),
	})
	srv := serveHubs(t, map[string]*wsroom.Hub{"ws": hub})
	target := srv.Listener.Addr().String()
	member := dialWS(t, target, "/ws")

	prom := startPrometheus(t, bin, target)
	scrapes := func() int {
		v, _ := prom.scalar(t, `sum(count_over_time(up{job="wsroom"}[10m]))`)
		return int(v)
	}
	waitUntil(t, "Prometheus' first scrape", func() bool { return scrapes() >= 1 })

	// Traffic between scrapes, for the rates.
	for i := range 20 {
		hub.Room("lobby").Broadcast(wsroom.Text(strconv.Itoa(i)))
		member.expectText(strconv.Itoa(i))
	}
	_, resp := handshake(t, target, "/ws", http.Header{"Origin": {"http://elsewhere.example"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin handshake: %s", resp.Status)
	}
	dialWS(t, target, "/ws").closeHandshake(1000)
	first := scrapes()
	waitUntil(t, "two more scrapes", func() bool { return scrapes() >= first+2 })

	if up, ok := prom.scalar(t, `up{job="wsroom"}`); !ok || up != 1 {
		t.Fatalf("up = %v (%v): Prometheus could not scrape the exporter", up, ok)
	}
	if v, _ := prom.scalar(t, `sum(wsroom_connections{instance=~".*", node="ws"})`); v != 1 {
		t.Errorf("connections as Prometheus sees them: %v, want 1", v)
	}
	if v, _ := prom.scalar(t, `sum(increase(wsroom_messages_sent_total[10m]))`); v < 20 {
		t.Errorf("increase of messages sent: %v, want at least 20", v)
	}
	// What the dashboard's instance variable lists.
	var instances []string
	prom.api(t, "/api/v1/label/instance/values?match[]=wsroom_connections", &instances)
	if !slices.Equal(instances, []string{target}) {
		t.Errorf("instances %v, want [%s]", instances, target)
	}

	d := loadDashboard(t)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			q := strings.NewReplacer(`$instance`, ".*", `$__rate_interval`, "1m").Replace(tg.Expr)
			var res []json.RawMessage
			prom.api(t, "/api/v1/query?query="+url.QueryEscape(q), &struct {
				Result *[]json.RawMessage `json:"result"`
			}{&res})
			// A series filtered with "> 0" may be absent; every other
			// query has a series as soon as the hub is scraped.
			if len(res) == 0 && !strings.HasSuffix(q, "> 0") {
				t.Errorf("panel %q: %s returned nothing", p.Title, q)
			}
		}
	}
}

// promServer is a Prometheus server run by a test.
type promServer struct {
	base   string
	client *http.Client
}

// startPrometheus runs bin scraping target's /metrics every second,
// until the test ends.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: wsroom\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // Prometheus takes the port; another process may win it, and then its start fails below
	var logs strings.Builder
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	p := &promServer{base: "http://" + addr, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
	t.Cleanup(p.client.CloseIdleConnections)
	waitUntil(t, "Prometheus to be ready", func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := p.client.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// api GETs path from Prometheus' HTTP API and decodes its data into v.
func (p *promServer) api(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := p.client.Get(p.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("GET %s: %s %s %v", path, r.Status, r.Error, err)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, r.Data)
	}
}

// scalar runs an instant query expected to give at most one sample.
func (p *promServer) scalar(t *testing.T, q string) (float64, bool) {
	t.Helper()
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	p.api(t, "/api/v1/query?query="+url.QueryEscape(q), &data)
	if len(data.Result) != 1 {
		return 0, false
	}
	s, _ := data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// waitUntil is wstest.WaitFor with the patience a Prometheus server
// needs (to start, to scrape): it polls cond every 50 ms and fails the
// test after 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !wstest.Poll(50*time.Millisecond, 30*time.Second, cond) {
		t.Fatalf("timed out after 30 s waiting for %s", what)
	}
}
