package poller

// Queue runs t.Run later on one of the poller's workers, in the order
// tasks were queued. At most Drainers tasks of the queue run at a time:
// a burst of queued tasks (a broadcast that makes thousands of
// connections writable) is served by a few goroutines, not one each. A
// task must not block (hand blocking work to Go); it may queue itself or
// others again, which puts them at the end of the queue. Like Go, Queue
// must not be called after Close; tasks already queued still run before
// Run returns.
func (p *Poller) Queue(t Task) {
	p.qmu.Lock()
	p.fifo.push(t)
	start := p.draining < p.drainers
	if start {
		p.draining++
	}
	p.qmu.Unlock()
	if start {
		p.Go((*drainer)(p))
	}
}

// drainer runs queued tasks until the queue is empty (a poller.Task).
type drainer Poller

// Run implements Task.
func (d *drainer) Run() {
	p := (*Poller)(d)
	for {
		p.qmu.Lock()
		t, ok := p.fifo.pop()
		if !ok {
			p.draining--
			p.qmu.Unlock()
			return
		}
		p.qmu.Unlock()
		t.Run()
	}
}

// ring is a growable FIFO of tasks.
type ring struct {
	buf  []Task
	head int // index of the oldest task
	n    int // tasks queued
}

func (r *ring) push(t Task) {
	if r.n == len(r.buf) {
		buf := make([]Task, max(16, 2*len(r.buf)))
		k := copy(buf, r.buf[r.head:])
		copy(buf[k:], r.buf[:r.head])
		r.buf, r.head = buf, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = t
	r.n++
}

func (r *ring) pop() (Task, bool) {
	if r.n == 0 {
		return nil, false
	}
	t := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return t, true
}
