package gpu

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/hackarena/hackarena/sdk"
)

// PoolConfig says how the judge runs its engine processes.
type PoolConfig struct {
	// Devices are split into SlotsPerDevice slots each; every slot is
	// served by an engine process of its own.
	Devices        []Device
	SlotsPerDevice int
	// Command starts an engine process: this executable's `engine`
	// sub-command unless set (tests run their own binary). Env is added
	// to the otherwise empty environment it gets.
	Command []string
	Env     []string
	// Limits are the per-run limits each engine applies.
	Limits Engine
	// Overhead is memory an engine process may use beyond its slot's
	// budget (the Go runtime, gRPC buffers of the calls it admits); the
	// process is killed past budget + Overhead. Default 512 MiB.
	Overhead int64
	// Grace is how long an engine may take to stop a run's work after the
	// run ends before its process is killed and restarted. Default 2 s.
	Grace time.Duration
	// InProcess serves the Engine inside the judge's own process, as
	// before engine processes existed. It is the baseline the benchmarks
	// measure the process boundary against; never use it for untrusted
	// plugins.
	InProcess bool
	Log       *slog.Logger
	// Registerer gets the pool's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Defaults of PoolConfig.
const (
	DefaultEngineOverhead = 512 << 20
	DefaultEngineGrace    = 2 * time.Second
	// engineUIDBase: as root, slot i's engine process runs as uid
	// engineUIDBase+i, which no account and no plugin run uses.
	engineUIDBase = 1_990_000
	nobodyGID     = 65534
)

// Pool lends runs a slot and the engine process serving it.
type Pool struct {
	cfg   PoolConfig
	alloc *Allocator
	procs map[*Slot]*slotProcess
	log   *slog.Logger

	restarts *prometheus.CounterVec
	kills    prometheus.Counter
	refusals *prometheus.CounterVec

	ctx     context.Context // ends with Close: restarts stop
	stop    context.CancelFunc
	bg      sync.WaitGroup
	session atomic.Uint64
	// running counts the open runs: the cores are shared among them, so
	// a run alone gets them all (see Run.threads).
	running atomic.Int32

	imagesMu sync.Mutex
	images   []*sharedImages
}

// NewPool splits the devices into slots; it starts nothing (Start does).
func NewPool(cfg PoolConfig) (*Pool, error) {
	alloc, err := NewAllocator(cfg.Devices, cfg.SlotsPerDevice, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	if cfg.Overhead <= 0 {
		cfg.Overhead = DefaultEngineOverhead
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultEngineGrace
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, alloc: alloc, procs: map[*Slot]*slotProcess{}, log: cfg.Log, ctx: ctx, stop: stop,
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hackarena_engine_process_restarts_total", Help: "Engine processes restarted, by cause: memory (killed at the slot's limit), deadline (killed past the grace), exited (any other death).",
		}, []string{"cause"}),
		kills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hackarena_engine_deadline_kills_total", Help: "Engine processes killed because a run's work went on past its deadline and the grace.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hackarena_engine_refusals_total", Help: "Engine calls refused, by kind (memory, compute, busy, input, handles, closed).",
		}, []string{"kind"}),
	}
	for _, k := range []string{RefusedMemory, RefusedCompute, RefusedBusy, RefusedInput, RefusedHandles, RefusedClosed} {
		p.refusals.WithLabelValues(k)
	}
	for _, k := range []string{FailedMemory, FailedDeadline, FailedExited} {
		p.restarts.WithLabelValues(k)
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.restarts, p.kills, p.refusals} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register engine metrics: %w", err)
			}
		}
	}
	for i, s := range alloc.free {
		p.procs[s] = &slotProcess{pool: p, slot: s, uid: engineUIDBase + i}
	}
	return p, nil
}

// Start starts every slot's engine process and waits until each answers.
func (p *Pool) Start(ctx context.Context) error {
	if p.cfg.InProcess {
		return nil
	}
	for _, sp := range p.procs {
		if err := sp.start(ctx); err != nil {
			return fmt.Errorf("start the engine process of %s: %w", sp.slot, err)
		}
		p.log.Info("engine process started", "slot", sp.slot.String(), "pid", sp.pid(), "gflops", fmt.Sprintf("%.1f", sp.flops/1e9), "limits", sp.limits)
	}
	return nil
}

// Close stops every engine process and waits for the pool's goroutines.
func (p *Pool) Close() {
	p.stop()
	for _, sp := range p.procs {
		sp.kill()
	}
	p.bg.Wait()
	for _, sp := range p.procs {
		sp.reap()
	}
	p.imagesMu.Lock()
	for _, im := range p.images {
		im.f.Close()
	}
	p.images = nil
	p.imagesMu.Unlock()
}

// Stats reports the slots (as Allocator.Stats does).
func (p *Pool) Stats() Stats { return p.alloc.Stats() }

// PIDs are the engine processes now running, by slot name.
func (p *Pool) PIDs() map[string]int {
	out := map[string]int{}
	for s, sp := range p.procs {
		if pid := sp.pid(); pid > 0 {
			out[s.String()] = pid
		}
	}
	return out
}

// EngineLease is a slot lent to one run, with its engine process.
type EngineLease struct {
	pool *Pool
	slot *Slot
	sp   *slotProcess
	once sync.Once
	// healthy is false when the run left the process in a state it must
	// be restarted from before the slot is lent again; cause says why
	// (a Failed* kind).
	healthy atomic.Bool
	cause   atomic.Value
}

// unhealthy marks the lease's process for a restart, for cause.
func (l *EngineLease) unhealthy(cause string) {
	l.cause.Store(cause)
	l.healthy.Store(false)
}

// Acquire waits for a free slot for team (teams take turns) whose engine
// process answers.
func (p *Pool) Acquire(ctx context.Context, team string) (*EngineLease, error) {
	al, err := p.alloc.Acquire(ctx, team)
	if err != nil {
		return nil, err
	}
	l := &EngineLease{pool: p, slot: al.Slot(), sp: p.procs[al.Slot()]}
	l.healthy.Store(true)
	if !p.cfg.InProcess {
		// A process that died while idle (killed by hand, say) is
		// restarted before a run gets it.
		if err := l.sp.ensure(ctx); err != nil {
			al.Release()
			return nil, fmt.Errorf("engine process of %s: %w", l.slot, err)
		}
	}
	return l, nil
}

// Slot is the lent slot.
func (l *EngineLease) Slot() *Slot { return l.slot }

// Release gives the slot back: at once when its process is healthy,
// else once it has been restarted and answers.
func (l *EngineLease) Release() {
	l.once.Do(func() {
		p := l.pool
		if p.cfg.InProcess || l.healthy.Load() {
			p.alloc.put(l.slot)
			return
		}
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			for attempt := 0; p.ctx.Err() == nil; attempt++ {
				cause, _ := l.cause.Load().(string)
				err := l.sp.restart(p.ctx, cause)
				if err == nil {
					p.alloc.put(l.slot)
					return
				}
				p.log.Error("restart engine process; the slot stays out of use", "slot", l.slot.String(), "err", err)
				select {
				case <-p.ctx.Done():
				case <-time.After(min(time.Duration(1<<min(attempt, 5))*time.Second, 30*time.Second)):
				}
			}
		}()
	})
}

// RunSpec is what a run's session needs to know.
type RunSpec struct {
	// Deadline is when the run ends: the engine refuses work that cannot
	// finish by then and stops what is running at it.
	Deadline time.Time
	// Images are the hidden images the run's batches come from (nil for
	// other inputs): shared with the engine once, so a batch the plugin
	// names by id reaches it without a copy.
	Images []byte
}

// Open starts the run's session on the lent slot.
func (l *EngineLease) Open(spec RunSpec) (*Run, error) {
	r := &Run{lease: l, spec: spec, id: l.pool.session.Add(1)}
	if l.pool.cfg.InProcess {
		r.local = l.pool.cfg.Limits.OpenUntil(l.slot, spec.Deadline)
		return r, nil
	}
	l.pool.running.Add(1)
	r.counted = true
	msg := ctlMsg{Op: opOpen, Session: r.id, Budget: l.slot.MemoryBudget, Threads: r.threads()}
	if !spec.Deadline.IsZero() {
		msg.Deadline = spec.Deadline.UnixNano()
	}
	var files []*os.File
	if len(spec.Images) > 0 {
		f, err := l.pool.shareImages(spec.Images)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		msg.Images = int64(len(spec.Images))
		files = append(files, f)
	}
	reply, err := l.sp.call(msg, files, l.pool.cfg.Grace+5*time.Second)
	if err != nil {
		l.pool.running.Add(-1)
		l.unhealthy(FailedExited)
		return nil, fmt.Errorf("open an engine session on %s: %w", l.slot, err)
	}
	r.engineThreads.Store(int32(reply.Threads))
	return r, nil
}

// Threads is how many threads the engine process said it works with for
// the run, at its start or its last batch (0 in process).
func (r *Run) Threads() int { return int(r.engineThreads.Load()) }

// threads is the run's share of the cores now: all of them while it runs
// alone, half with one other run, and so on. The engine takes it at the
// run's start and again with every batch, so a run that started alone
// gives cores back when another starts. A slot's share stayed fixed at
// cores/slots before: a run alone left the other cores idle.
func (r *Run) threads() int { return cpuShare(int(r.lease.pool.running.Load())) }

// Run is one run's session on its slot's engine process.
type Run struct {
	lease *EngineLease
	spec  RunSpec
	id    uint64
	local *Session // InProcess only
	// counted: the run is in the pool's running count until it closes.
	counted       bool
	engineThreads atomic.Int32

	mu        sync.Mutex
	listener  net.Listener
	served    sync.WaitGroup
	localSrv  *grpc.Server
	cancelled time.Time
	closed    bool

	closeOnce sync.Once
	outcome   Outcome
}

// ServeEngine takes the listener go-plugin's broker opened for the
// plugin's Engine connection (in the run's socket directory, handed to
// the plugin's uid). It accepts one connection and passes it to the
// engine process, then closes the listener, which removes the socket: a
// run has exactly one Engine connection, and the judge reads none of it.
func (r *Run) ServeEngine(l net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.listener != nil {
		l.Close()
		return
	}
	r.listener = l
	if r.local != nil {
		r.localSrv = NewServer(r.local, sdk.ServerOptions()...)
		r.served.Add(1)
		go func() {
			defer r.served.Done()
			_ = r.localSrv.Serve(l)
		}()
		return
	}
	r.served.Add(1)
	go func() {
		defer r.served.Done()
		defer l.Close()
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		uc, ok := conn.(*net.UnixConn)
		if !ok {
			return
		}
		f, err := uc.File()
		if err != nil {
			r.lease.pool.log.Error("hand the plugin's engine connection over", "err", err)
			return
		}
		defer f.Close()
		l.Close()
		if _, err := r.lease.sp.call(ctlMsg{Op: opConn, Session: r.id}, []*os.File{f}, r.lease.pool.cfg.Grace+5*time.Second); err != nil {
			r.lease.pool.log.Error("hand the plugin's engine connection over", "slot", r.lease.slot.String(), "err", err)
		}
	}()
}

// SetBatch tells the engine which hidden images the plugin is being
// asked about: count examples of exampleBytes each, from example off.
func (r *Run) SetBatch(id uint64, off, count, exampleBytes int) error {
	start, n := off*exampleBytes, count*exampleBytes
	if r.local != nil {
		r.local.SetBatch(id, count, r.spec.Images[start:start+n])
		return nil
	}
	threads := r.threads()
	if err := r.lease.sp.tell(ctlMsg{Op: opBatch, Session: r.id, BatchID: id, Offset: int64(start), Count: count, Bytes: int64(n), Threads: threads}); err != nil {
		return fmt.Errorf("tell the engine process of batch %d: %w", id, err)
	}
	// The process takes the count it is told (useThreads).
	r.engineThreads.Store(int32(threads))
	return nil
}

// Cancel ends the run's engine work now (its deadline passed, or it was
// stopped): work in flight stops at the next layer; Close allows it the
// grace from here.
func (r *Run) Cancel() {
	r.mu.Lock()
	if r.closed || !r.cancelled.IsZero() {
		r.mu.Unlock()
		return
	}
	r.cancelled = time.Now()
	r.mu.Unlock()
	if r.local != nil {
		r.local.Cancel()
		return
	}
	// Unanswered is fine: Close judges the process.
	_, _ = r.lease.sp.call(ctlMsg{Op: opCancel, Session: r.id}, nil, r.lease.pool.cfg.Grace)
}

// EngineFailure is an engine process that did not survive a run.
type EngineFailure struct {
	// Kind is FailedMemory, FailedDeadline or FailedExited.
	Kind string
	Msg  string
}

func (e *EngineFailure) Error() string { return e.Msg }

// EngineFailure kinds.
const (
	// FailedMemory: the kernel killed the process at the slot's memory
	// limit.
	FailedMemory = "memory"
	// FailedDeadline: the run's work went on past the deadline and the
	// grace; the process was killed.
	FailedDeadline = "deadline"
	// FailedExited: the process died for another reason (a crash of the
	// engine, or killed from outside): the platform's failure.
	FailedExited = "exited"
)

// Outcome is how a run's session ended.
type Outcome struct {
	Report
	// Failure is set when the engine process did not survive the run.
	Failure *EngineFailure
}

// Close ends the session and reports it; later calls wait for the first
// and return the same. The engine gets the grace (from Cancel, if it was
// called) to stop the run's work; a process that has not by then is
// killed, and restarted before its slot is lent again.
func (r *Run) Close() Outcome {
	r.closeOnce.Do(func() { r.outcome = r.close() })
	return r.outcome
}

func (r *Run) close() Outcome {
	r.mu.Lock()
	r.closed = true
	if r.listener != nil {
		r.listener.Close()
	}
	cancelled := r.cancelled
	r.mu.Unlock()
	if r.local != nil {
		r.local.Cancel()
		if r.localSrv != nil {
			r.localSrv.Stop()
		}
		r.served.Wait()
		r.local.Close()
		return Outcome{Report: r.local.Report()}
	}
	r.served.Wait()
	p, sp := r.lease.pool, r.lease.sp
	if r.counted {
		defer p.running.Add(-1)
	}
	grace := p.cfg.Grace
	if !cancelled.IsZero() {
		grace = max(time.Until(cancelled.Add(p.cfg.Grace)), 100*time.Millisecond)
	}
	var out Outcome
	reply, err := sp.call(ctlMsg{Op: opClose, Session: r.id}, nil, grace)
	if err == nil && reply.Report != nil {
		out = Outcome{Report: *reply.Report}
	} else {
		out = Outcome{Failure: sp.failure(err, p.cfg.Grace), Report: Report{Refusals: map[string]int{}}}
		r.lease.unhealthy(out.Failure.Kind)
	}
	for kind, n := range out.Refusals {
		p.refusals.WithLabelValues(kind).Add(float64(n))
	}
	return out
}

// Verdict is what the run's engine refused so far, without closing the
// run: once the plugin has answered every batch, nothing its engine does
// later changes the answers, and closing (stopping the connection,
// freeing the networks) need not delay the score. An engine process that
// does not answer is judged as Close judges it.
func (r *Run) Verdict() Outcome {
	if r.local != nil {
		return Outcome{Report: r.local.Report()}
	}
	reply, err := r.lease.sp.call(ctlMsg{Op: opReport, Session: r.id}, nil, r.lease.pool.cfg.Grace)
	if err != nil || reply.Report == nil {
		return r.Close()
	}
	return Outcome{Report: *reply.Report}
}

// PID is the engine process serving the run (0 in process).
func (r *Run) PID() int {
	if r.local != nil {
		return 0
	}
	return r.lease.sp.pid()
}

// sharedImages is a hidden set's images in sealed shared memory.
type sharedImages struct {
	data *byte
	n    int
	f    *os.File
}

// shareImages returns a read-only shared-memory file holding images,
// made once per hidden set and kept for the next runs (the last 8).
func (p *Pool) shareImages(images []byte) (*os.File, error) {
	p.imagesMu.Lock()
	defer p.imagesMu.Unlock()
	for _, im := range p.images {
		if im.data == &images[0] && im.n == len(images) {
			return dupFile(im.f)
		}
	}
	fd, err := unix.MemfdCreate("hackarena-hidden-images", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("share the hidden images: %w", err)
	}
	f := os.NewFile(uintptr(fd), "hackarena-hidden-images")
	if _, err := f.Write(images); err != nil {
		f.Close()
		return nil, fmt.Errorf("share the hidden images: %w", err)
	}
	// Sealed: the engine maps it read-only and nobody can change it.
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal the hidden images: %w", err)
	}
	p.images = append(p.images, &sharedImages{data: &images[0], n: len(images), f: f})
	if len(p.images) > 8 {
		p.images[0].f.Close()
		p.images = p.images[1:]
	}
	return dupFile(f)
}

// dupFile is a copy of f's descriptor the caller closes, so a cached file
// evicted meanwhile stays valid for it.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("share the hidden images: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
