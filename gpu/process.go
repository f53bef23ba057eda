package gpu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/hackarena/hackarena/sdk"
)

// EngineProcessEnv marks a process started to serve one engine slot; a
// test binary that re-executes itself as an engine process checks it in
// TestMain.
const EngineProcessEnv = "HACKARENA_ENGINE_PROCESS"

// engineControlFD is where an engine process finds its control socket
// (the judge's ExtraFiles[0]).
const engineControlFD = 3

// ServeEngineProcess is the main of an engine process (`hackarena
// engine`): it serves one slot's runs, one at a time, as the judge that
// started it says over its control socket, and returns the exit code. It
// holds nothing of the judge's: no Redis, no data dir, no network; only
// the sessions the judge opens and the connections it hands over.
func ServeEngineProcess() int {
	f := os.NewFile(engineControlFD, "engine-control")
	ctl, err := fileCtl(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hackarena engine: this command is started by the judge, with its control socket on fd 3:", err)
		return 2
	}
	p := &engineProcess{ctl: ctl}
	if err := p.serve(); err != nil && !errors.Is(err, errCtlClosed) {
		fmt.Fprintln(os.Stderr, "hackarena engine:", err)
		return 1
	}
	return 0
}

type engineProcess struct {
	ctl    *ctlConn
	engine *Engine
	device Device
	index  int
	cur    *servedRun
	// threads is the count last set (GOMAXPROCS and the BLAS bands).
	threads int
	// released is set when a run has closed and its memory is still to
	// be given back, which waits until the judge has its answer.
	released bool
}

// servedRun is the session of the run the process serves now.
type servedRun struct {
	id      uint64
	session *Session
	images  []byte // mapped read-only from the judge's shared memory

	mu     sync.Mutex
	srv    *grpc.Server
	served sync.WaitGroup
}

func (p *engineProcess) serve() error {
	for {
		m, files, err := p.ctl.recv(time.Time{})
		if err != nil {
			if p.cur != nil {
				p.closeRun()
			}
			return err
		}
		reply, err := p.handle(m, files)
		closeFiles(files)
		if m.Op == opBatch {
			if err != nil {
				// Only the judge sends batches; a plugin that names this
				// one is refused as for any batch not being judged.
				fmt.Fprintln(os.Stderr, "hackarena engine:", err)
			}
			continue
		}
		if err != nil {
			reply = ctlMsg{Op: opOK, Err: err.Error()}
		}
		reply.Seq = m.Seq
		if err := p.ctl.send(reply); err != nil {
			return err
		}
		if p.released {
			p.released = false
			releaseRunMemory()
		}
	}
}

func (p *engineProcess) handle(m ctlMsg, files []*os.File) (ctlMsg, error) {
	switch m.Op {
	case opConfig:
		return p.configure(m)
	case opPing:
		return ctlMsg{Op: opOK, Threads: runtime.GOMAXPROCS(0)}, nil
	case opOpen:
		p.useThreads(m.Threads)
		reply, err := p.open(m, files)
		reply.Threads = runtime.GOMAXPROCS(0)
		return reply, err
	}
	if p.cur == nil || p.cur.id != m.Session {
		return ctlMsg{}, fmt.Errorf("%s: session %d is not open", m.Op, m.Session)
	}
	switch m.Op {
	case opConn:
		if len(files) != 1 {
			return ctlMsg{}, errors.New("conn: want one connection")
		}
		return ctlMsg{Op: opOK}, p.cur.serveConn(files[0])
	case opBatch:
		r := p.cur
		if m.Offset < 0 || m.Bytes < 0 || m.Count <= 0 || m.Offset > int64(len(r.images)) || m.Bytes > int64(len(r.images))-m.Offset {
			return ctlMsg{}, fmt.Errorf("batch %d: bytes %d+%d are outside the %d shared", m.BatchID, m.Offset, m.Bytes, len(r.images))
		}
		p.useThreads(m.Threads)
		r.session.SetBatch(m.BatchID, m.Count, r.images[m.Offset:m.Offset+m.Bytes])
		return ctlMsg{}, nil
	case opCancel:
		p.cur.session.Cancel()
		return ctlMsg{Op: opOK}, nil
	case opReport:
		report := p.cur.session.Report()
		return ctlMsg{Op: opOK, Report: &report}, nil
	case opClose:
		report := p.closeRun()
		return ctlMsg{Op: opClosed, Session: m.Session, Report: &report}, nil
	}
	return ctlMsg{}, fmt.Errorf("unknown control operation %q", m.Op)
}

// useThreads sets how many threads the process's work uses (0: as it
// is). The judge says so with each run and each batch: its share of the
// cores among the runs open now.
func (p *engineProcess) useThreads(n int) {
	if n <= 0 || n == p.threads {
		return
	}
	p.threads = n
	runtime.GOMAXPROCS(n)
	setBLASThreads(n)
}

// configure becomes the engine of one slot: drops root for the uid the
// judge names (so nothing of the judge's is readable), takes its CPU
// share and measures its compute rate.
func (p *engineProcess) configure(m ctlMsg) (ctlMsg, error) {
	if m.UID > 0 && os.Geteuid() == 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return ctlMsg{}, fmt.Errorf("drop groups: %w", err)
		}
		if err := syscall.Setgid(m.GID); err != nil {
			return ctlMsg{}, fmt.Errorf("set gid %d: %w", m.GID, err)
		}
		if err := syscall.Setuid(m.UID); err != nil {
			return ctlMsg{}, fmt.Errorf("set uid %d: %w", m.UID, err)
		}
		// Changing credentials clears the parent-death signal.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
			return ctlMsg{}, fmt.Errorf("parent-death signal: %w", err)
		}
	}
	p.useThreads(m.Threads)
	// The garbage collector works to stay under the process's hard limit
	// (a batch's tensors are garbage by the next batch), keeping a margin
	// for what is not Go heap.
	if m.MemoryLimit > 0 {
		debug.SetMemoryLimit(m.MemoryLimit - min(m.MemoryLimit/8, 128<<20))
		if m.Device.Kind != KindCUDA {
			// Collected at the end of each run (releaseRunMemory) and
			// near the limit, not at each doubling of a small heap: a
			// run's garbage (requests, outputs) took a cycle every few
			// MiB, beside its batches, and the freed pages went back to
			// the kernel, to be faulted in again by the next run (the
			// engine process cost 1.07-1.18x the Engine in the judge's
			// own process; without this, 0.99-1.03x). A CUDA process
			// also holds driver memory the runtime does not see, so it
			// keeps the default.
			debug.SetGCPercent(-1)
		}
	}
	limits := m.Limits
	limits.FLOPS = CalibrateFLOPS()
	p.engine, p.device, p.index = &limits, m.Device, m.SlotIndex
	return ctlMsg{Op: opReady, FLOPS: limits.FLOPS, PID: os.Getpid()}, nil
}

func (p *engineProcess) open(m ctlMsg, files []*os.File) (ctlMsg, error) {
	if p.engine == nil {
		return ctlMsg{}, errors.New("open before config")
	}
	if p.cur != nil {
		p.closeRun()
	}
	var deadline time.Time
	if m.Deadline > 0 {
		deadline = time.Unix(0, m.Deadline)
	}
	r := &servedRun{id: m.Session}
	if m.Images > 0 {
		if len(files) != 1 {
			return ctlMsg{}, errors.New("open: the images' shared memory is missing")
		}
		// Populated at once: the kernel maps every page in one pass, where
		// the first touch of each batch would fault them in a few at a
		// time while the plugin waits.
		img, err := unix.Mmap(int(files[0].Fd()), 0, int(m.Images), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return ctlMsg{}, fmt.Errorf("map the hidden images: %w", err)
		}
		r.images = img
	}
	slot := &Slot{Device: p.device, Index: p.index, MemoryBudget: m.Budget}
	r.session = p.engine.OpenUntil(slot, deadline)
	p.cur = r
	return ctlMsg{Op: opOpened, Session: m.Session}, nil
}

// serveConn serves the Engine on the plugin's one connection.
func (r *servedRun) serveConn(f *os.File) error {
	conn, err := net.FileConn(f)
	if err != nil {
		return fmt.Errorf("conn: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		conn.Close()
		return errors.New("conn: the run has its connection already")
	}
	r.srv = NewServer(r.session, sdk.ServerOptions()...)
	r.served.Add(1)
	go func() {
		defer r.served.Done()
		_ = r.srv.Serve(newOneConnListener(conn))
	}()
	return nil
}

// closeRun ends the current run: its work in flight stops at the next
// layer, its connection closes, and everything it held is freed.
func (p *engineProcess) closeRun() Report {
	r := p.cur
	p.cur = nil
	r.session.Cancel()
	r.mu.Lock()
	if r.srv != nil {
		r.srv.Stop()
	}
	r.mu.Unlock()
	r.served.Wait()
	r.session.Close()
	report := r.session.Report()
	if r.images != nil {
		_ = unix.Munmap(r.images)
	}
	p.released = true
	return report
}

// keepWarmBytes is how much free heap an engine process keeps between
// runs rather than hand back to the kernel: the pages the next run's
// buffers fault in again otherwise (about a fifth of judging a small
// network). The process's cgroup is its slot's own, so what it keeps
// counts against no other slot.
const keepWarmBytes = 256 << 20

// releaseRunMemory collects a closed run's garbage and gives the pages
// back beyond keepWarmBytes. It runs after the judge has the close's
// answer: a collection takes milliseconds the judge need not wait for,
// and the next control message is read once it is done.
func releaseRunMemory() {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapIdle-ms.HeapReleased > keepWarmBytes {
		debug.FreeOSMemory()
	}
}

// oneConnListener hands out one connection, then blocks until closed:
// the Engine serves exactly the connection the judge accepted.
type oneConnListener struct {
	conns chan net.Conn
	addr  net.Addr
	once  sync.Once
	done  chan struct{}
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{conns: make(chan net.Conn, 1), addr: c.LocalAddr(), done: make(chan struct{})}
	l.conns <- c
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		select {
		case c := <-l.conns:
			c.Close()
		default:
		}
	})
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

// CalibrateFLOPS measures the rate this process multiplies matrices at,
// with the BLAS and threads it has: the best of a few 256×256×256
// products (about 34 MFLOP each).
func CalibrateFLOPS() float64 {
	const n = 256
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)/7, float32(i%5)/5
	}
	best := time.Duration(1 << 62)
	for range 3 {
		start := time.Now()
		sgemm(n, n, n, a, b, c)
		best = min(best, time.Since(start))
	}
	return 2 * n * n * n / max(best.Seconds(), 1e-9)
}
