package poller

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Handler is told that its socket is readable (or hung up, or in error),
// or for a registration made with AddWritable, writable (or in error).
// Ready runs on the poller's goroutine with the poller locked: it must
// return quickly, never block and never call the Poller's registration
// methods (hand the work to another goroutine; Go and Queue are fine).
type Handler interface {
	Ready()
}

// Task is work for one of the poller's workers (see Poller.Go).
type Task interface {
	Run()
}

// workerIdle is how long a worker waits for a task before it exits.
const workerIdle = time.Second

// ErrClosed is returned by a Poller's methods after Close.
var ErrClosed = errors.New("poller: closed")

// events is how many events Run collects per epoll_wait.
const events = 128

// armed is the interest set of every read registration: readable, peer
// hung up; one event per arming. armedWrite is a write registration's:
// writable (errors and hang-ups are always reported); one event per
// arming.
const (
	armed      = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT
	armedWrite = unix.EPOLLOUT | unix.EPOLLONESHOT
)

// writesID is the registration id of the write epoll instance inside the
// read one (ids of sockets start at 1).
const writesID = 0

// Poller is one epoll instance and the handlers registered with it. Its
// methods are safe for concurrent use.
type Poller struct {
	file *os.File        // the epoll fd, registered with Go's netpoller
	rc   syscall.RawConn // file's; every use of the epoll fd goes through it
	// The write registrations' epoll fd (blocking, outside Go's netpoller),
	// itself registered in file's, level-triggered, as writesID: Run
	// collects its events when it is readable.
	wfile *os.File
	wrc   syscall.RawConn

	closed atomic.Bool    // Close was called
	done   chan struct{}  // closed by Close: idle workers exit
	work   chan Task      // unbuffered: a send succeeds when a worker waits
	wg     sync.WaitGroup // workers; Run waits for them

	mu     sync.Mutex
	regs   map[uint64]Handler // registration id -> handler
	wevs   []unix.EpollEvent  // the write instance's events, collected under mu
	nextID uint64

	qmu      sync.Mutex // guards the fields below (see Queue)
	fifo     ring       // queued tasks
	draining int        // drainers running
	drainers int        // at most this many: GOMAXPROCS when New ran
}

// New creates an epoll instance. Call Run to dispatch its events and Close
// to release it.
func New() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile registers it with the runtime's
	// netpoller: Run then parks its goroutine, not a thread, while idle.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	wfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: writesID}
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, wfd, &ev); err != nil {
		unix.Close(fd)
		unix.Close(wfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	f, wf := os.NewFile(uintptr(fd), "epoll"), os.NewFile(uintptr(wfd), "epoll-writes")
	rc, err1 := f.SyscallConn()
	wrc, err2 := wf.SyscallConn()
	if err := errors.Join(err1, err2); err != nil {
		f.Close()
		wf.Close()
		return nil, err
	}
	return &Poller{
		file: f, rc: rc, wfile: wf, wrc: wrc, regs: make(map[uint64]Handler), wevs: make([]unix.EpollEvent, events),
		done: make(chan struct{}), work: make(chan Task),
		drainers: runtime.GOMAXPROCS(0),
	}, nil
}

// Add registers the socket behind sc, armed for one readiness event, and
// returns the registration id to give to Rearm and Remove.
func (p *Poller) Add(sc syscall.RawConn, h Handler) (uint64, error) {
	return p.add(sc, h, p.ctl)
}

// add registers h under a new id and adds the socket with ctl.
func (p *Poller) add(sc syscall.RawConn, h Handler, ctl func(syscall.RawConn, int, uint64) error) (uint64, error) {
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.regs[id] = h
	p.mu.Unlock()
	if err := ctl(sc, unix.EPOLL_CTL_ADD, id); err != nil {
		p.forget(id)
		return 0, err
	}
	return id, nil
}

// Rearm arms registration id for one more readiness event. If the socket
// is readable already, the event comes at once.
func (p *Poller) Rearm(sc syscall.RawConn, id uint64) error {
	return p.ctl(sc, unix.EPOLL_CTL_MOD, id)
}

// AddWritable registers the socket behind sc for one writability event
// (or error), and returns the registration id to give to RemoveWritable.
// If the socket is writable already, the event comes at once. A socket
// may have a read registration and a write one at the same time; each
// has its own id. A Linux socket is writable when its send buffer has
// room and, if TCP_NOTSENT_LOWAT is set, fewer than half of that many
// bytes wait unsent.
func (p *Poller) AddWritable(sc syscall.RawConn, h Handler) (uint64, error) {
	return p.add(sc, h, p.ctlWrite)
}

// RemoveWritable deregisters a write registration, like Remove.
func (p *Poller) RemoveWritable(sc syscall.RawConn, id uint64) error {
	return p.remove(sc, id, p.ctlWrite)
}

// Remove deregisters id: its handler is not called again, even for an
// event already collected. Call it before closing the socket; on a socket
// that is already closed it forgets the handler and returns the socket's
// error (the kernel dropped the registration when the socket closed).
func (p *Poller) Remove(sc syscall.RawConn, id uint64) error {
	return p.remove(sc, id, p.ctl)
}

// remove forgets id's handler and deletes the socket with ctl.
func (p *Poller) remove(sc syscall.RawConn, id uint64, ctl func(syscall.RawConn, int, uint64) error) error {
	p.forget(id)
	err := ctl(sc, unix.EPOLL_CTL_DEL, id)
	if errors.Is(err, unix.ENOENT) {
		err = nil
	}
	return err
}

func (p *Poller) forget(id uint64) {
	p.mu.Lock()
	delete(p.regs, id)
	p.mu.Unlock()
}

// Len returns the number of registrations.
func (p *Poller) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.regs)
}

// ctl runs epoll_ctl for the socket behind sc. Both descriptors are held
// open for the duration of the call: a closed socket or poller gives an
// error instead of acting on a reused descriptor number.
func (p *Poller) ctl(sc syscall.RawConn, op int, id uint64) error {
	return p.ctlOn(p.rc, armed, sc, op, id)
}

// ctlWrite is ctl on the write registrations' epoll instance.
func (p *Poller) ctlWrite(sc syscall.RawConn, op int, id uint64) error {
	return p.ctlOn(p.wrc, armedWrite, sc, op, id)
}

func (p *Poller) ctlOn(epoll syscall.RawConn, events uint32, sc syscall.RawConn, op int, id uint64) error {
	c := ctlOps.Get().(*ctlOp)
	c.epoll, c.events, c.op, c.id, c.err = epoll, events, op, id, nil
	cerr := sc.Control(c.onSocket)
	err := c.err
	*c = ctlOp{onSocket: c.onSocket, onEpoll: c.onEpoll}
	ctlOps.Put(c)
	if cerr != nil {
		return cerr
	}
	if err != nil && err != ErrClosed {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return err
}

// ctlOp is one epoll_ctl call with its RawConn callbacks, pooled so that
// re-arming a socket allocates nothing.
type ctlOp struct {
	epoll    syscall.RawConn // the epoll instance's
	events   uint32
	op       int
	id       uint64
	fd       uintptr
	err      error
	onSocket func(fd uintptr)
	onEpoll  func(epfd uintptr)
}

var ctlOps = sync.Pool{New: func() any {
	c := new(ctlOp)
	c.onSocket, c.onEpoll = c.socket, c.onEpollFD
	return c
}}

func (c *ctlOp) socket(fd uintptr) {
	c.fd = fd
	if err := c.epoll.Control(c.onEpoll); err != nil {
		c.err = ErrClosed
	}
}

func (c *ctlOp) onEpollFD(epfd uintptr) {
	ev := unix.EpollEvent{Events: c.events, Fd: int32(uint32(c.id)), Pad: int32(uint32(c.id >> 32))}
	c.err = unix.EpollCtl(int(epfd), c.op, int(c.fd), &ev)
}

// Go runs t.Run on one of the poller's workers: an idle one if there is
// one, else a new one. A worker keeps its grown stack between tasks, so a
// task that wakes up a connection does not start from a small stack every
// time. Workers exit after a second without work or once the poller is
// closed; Run returns only after all of them have. Go must not be called
// after Close.
func (p *Poller) Go(t Task) {
	select {
	case p.work <- t:
		return
	default:
	}
	p.wg.Add(1)
	go p.worker(t)
}

func (p *Poller) worker(t Task) {
	defer p.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		t.Run()
		t = nil // do not keep the task's memory alive while idle
		idle.Reset(workerIdle)
		select {
		case t = <-p.work:
		case <-idle.C:
			return
		case <-p.done:
			return
		}
	}
}

// Run dispatches readiness events to their handlers until Close, then
// waits for the workers (see Go) to finish their tasks. It returns nil
// after Close, or the error that stopped it.
func (p *Poller) Run() error {
	defer p.wg.Wait()
	evs := make([]unix.EpollEvent, events)
	var werr error
	err := p.rc.Read(func(epfd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(epfd), evs, 0)
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				werr = os.NewSyscallError("epoll_wait", err)
				return true
			case n == 0:
				return false // wait for the epoll fd through Go's netpoller
			}
			p.dispatch(evs[:n])
		}
	})
	if p.closed.Load() {
		return nil // Close woke us with "use of closed file"
	}
	if werr != nil {
		return werr
	}
	return err
}

// Poll collects the events that are ready now, without waiting, and
// dispatches them as Run does, on the calling goroutine; it reports
// whether there were any. Run learns of readiness through the runtime's
// network poller, which, while every processor is busy, looks only when
// one idles (or every 10 ms): a goroutine that keeps a processor busy
// calls Poll to hand readiness to the handlers meanwhile. Poll may run
// beside Run; each event goes to one of them.
func (p *Poller) Poll() bool {
	var evs [events]unix.EpollEvent
	any := false
	p.rc.Control(func(epfd uintptr) { // not Read: Run holds the read lock while it waits
		any = collect(int(epfd), evs[:], p.dispatch)
	})
	return any
}

// collect takes the events ready now on epfd, without waiting, a batch at
// a time into evs, and hands each batch to handle; it reports whether
// there were any.
func collect(epfd int, evs []unix.EpollEvent, handle func([]unix.EpollEvent)) bool {
	any := false
	for {
		n, err := unix.EpollWait(epfd, evs, 0)
		if err == unix.EINTR {
			continue
		}
		if n <= 0 {
			return any
		}
		any = true
		handle(evs[:n])
		if n < len(evs) {
			return any
		}
	}
}

// dispatch calls the handlers of evs that are still registered. It holds
// p.mu meanwhile, so Remove returning means the handler is not running
// and will not run.
func (p *Poller) dispatch(evs []unix.EpollEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readyLocked(evs)
}

// readyLocked calls the handlers of evs that are still registered (p.mu
// held); the write instance's event collects the write registrations'.
func (p *Poller) readyLocked(evs []unix.EpollEvent) {
	for _, ev := range evs {
		id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
		if id == writesID {
			p.wrc.Control(func(wfd uintptr) { collect(int(wfd), p.wevs, p.readyLocked) })
			continue
		}
		if h, ok := p.regs[id]; ok {
			h.Ready()
		}
	}
}

// Close releases the epoll instance and makes Run return. Registered
// sockets are not closed.
// Close may be called by a task; it does not wait for anything.
func (p *Poller) Close() error {
	if !p.closed.Swap(true) {
		close(p.done)
	}
	return errors.Join(p.file.Close(), p.wfile.Close())
}
