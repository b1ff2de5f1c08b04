package conformance

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Verdict is a case's outcome.
type Verdict int

// Verdicts, as Autobahn reports them.
const (
	OK Verdict = iota
	NonStrict
	Failed
)

func (v Verdict) String() string {
	switch v {
	case OK:
		return "OK"
	case NonStrict:
		return "NON-STRICT"
	}
	return "FAILED"
}

// Target is where an endpoint is served: a TCP address and a path.
type Target struct {
	Addr string // host:port
	Path string // e.g. "/ws"
}

// Result is the outcome of one case.
type Result struct {
	Case    *Case
	Verdict Verdict
	Reason  string // why it is not OK (one line)
	Elapsed time.Duration
	Info    string // informational note (group 9 timings)
	// FirstTry is set when the case was not OK at first and was run
	// again (see Runner.RunCase): it holds the first run's verdict and
	// reason, e.g. "FAILED: step 2 (expect pong): EOF". Verdict, Reason
	// and Elapsed are the second run's.
	FirstTry string
}

// Retried reports whether the case was run a second time.
func (r Result) Retried() bool { return r.FirstTry != "" }

// Outcome is the verdict as summaries show it: "OK after retry" for a
// case that was OK only on its second run, else the verdict.
func (r Result) Outcome() string {
	if r.Verdict == OK && r.Retried() {
		return "OK after retry"
	}
	return r.Verdict.String()
}

// Runner runs cases against targets.
type Runner struct {
	Targets  map[Endpoint]Target
	Parallel int // concurrent cases (default 8); Serial cases run alone
}

// Run runs every case and returns the results in case order: first the
// parallel ones, then the Serial ones one at a time.
func (r *Runner) Run(cases []Case) []Result {
	results := make([]Result, len(cases))
	n := r.Parallel
	if n <= 0 {
		n = 8
	}
	idx := make(chan int)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for i := range idx {
				results[i] = r.RunCase(&cases[i])
			}
		})
	}
	for i := range cases {
		if !cases[i].Serial {
			idx <- i
		}
	}
	close(idx)
	wg.Wait()
	for i := range cases {
		if cases[i].Serial {
			results[i] = r.RunCase(&cases[i])
		}
	}
	return results
}

// RunCase runs one case. A case that is not OK is run a second time,
// with RetryStrictWait and RetryStepTimeout, so that a slow, loaded
// machine (every deadline here is wall-clock time) is not mistaken for a
// lax or broken server.
// The second verdict stands, and the first is kept in FirstTry: a case
// that passes only on its second run is a pass, but never a silent one.
// Its Outcome is "OK after retry", Tally counts it apart from OK, and
// Markdown lists it with the first run's failure.
func (r *Runner) RunCase(c *Case) Result {
	res := r.runOnce(c, StrictWait, StepTimeout)
	if res.Verdict == OK {
		return res
	}
	again := r.runOnce(c, RetryStrictWait, RetryStepTimeout)
	again.FirstTry = res.Verdict.String() + ": " + res.Reason
	return again
}

func (r *Runner) runOnce(c *Case, strictWait, stepTimeout time.Duration) Result {
	start := time.Now()
	res := Result{Case: c}
	err := r.runCase(c, &res, strictWait, stepTimeout)
	res.Elapsed = time.Since(start)
	if err != nil {
		res.Verdict, res.Reason = Failed, err.Error()
	}
	return res
}

func (r *Runner) runCase(c *Case, res *Result, strictWait, stepTimeout time.Duration) error {
	t, ok := r.Targets[c.Endpoint]
	if !ok {
		return fmt.Errorf("no target for endpoint %d", c.Endpoint)
	}
	s, err := dial(t.Addr, t.Path, c.Extensions, stepTimeout)
	if err != nil {
		return err
	}
	defer s.close()
	s.strictWait = strictWait
	if c.CheckHandshake != nil {
		if err := c.CheckHandshake(s.resp); err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
	}
	for i, st := range c.Steps {
		if err := st.Run(s); err != nil {
			if s.writeErr != nil {
				err = fmt.Errorf("%w (an earlier write failed: %v)", err, s.writeErr)
			}
			return fmt.Errorf("step %d (%s): %w", i+1, st.Name, err)
		}
	}
	if err := s.finish(); err != nil {
		return err
	}
	res.Info = s.info
	if s.late != "" {
		res.Verdict, res.Reason = NonStrict, s.late
	}
	return nil
}

// SortByID sorts cases by their numeric ID components.
func SortByID(cases []Case) {
	sort.SliceStable(cases, func(i, j int) bool { return idLess(cases[i].ID, cases[j].ID) })
}

func idLess(a, b string) bool {
	var x, y [4]int
	fmt.Sscanf(a, "%d.%d.%d", &x[0], &x[1], &x[2])
	fmt.Sscanf(b, "%d.%d.%d", &y[0], &y[1], &y[2])
	if x != y {
		for k := range x {
			if x[k] != y[k] {
				return x[k] < y[k]
			}
		}
	}
	return a < b
}
