package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
			Name: "hackarena_engine_process_restarts_total", Help: "Engine processes restarted, by cause (memory, deadline, exited, unhealthy).",
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
	// be restarted from before the slot is lent again.
	healthy atomic.Bool
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
				err := l.sp.restart(p.ctx, "unhealthy")
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
	msg := ctlMsg{Op: opOpen, Session: r.id, Budget: l.slot.MemoryBudget}
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
	if _, err := l.sp.call(msg, files, l.pool.cfg.Grace+5*time.Second); err != nil {
		l.healthy.Store(false)
		return nil, fmt.Errorf("open an engine session on %s: %w", l.slot, err)
	}
	return r, nil
}

// Run is one run's session on its slot's engine process.
type Run struct {
	lease *EngineLease
	spec  RunSpec
	id    uint64
	local *Session // InProcess only

	mu        sync.Mutex
	listener  net.Listener
	served    sync.WaitGroup
	localSrv  *grpc.Server
	cancelled time.Time
	closed    bool
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
		r.localSrv = NewServer(r.local, sdk.WindowServerOptions()...)
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
	_, err := r.lease.sp.call(ctlMsg{Op: opBatch, Session: r.id, BatchID: id, Offset: int64(start), Count: count, Bytes: int64(n)}, nil, r.lease.pool.cfg.Grace+5*time.Second)
	return err
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

// Close ends the session and reports it. The engine gets the grace (from
// Cancel, if it was called) to stop the run's work; a process that has
// not by then is killed, and restarted before its slot is lent again.
func (r *Run) Close() Outcome {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return r.outcome
	}
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
		r.outcome = Outcome{Report: r.local.Report()}
		return r.outcome
	}
	r.served.Wait()
	p, sp := r.lease.pool, r.lease.sp
	grace := p.cfg.Grace
	if !cancelled.IsZero() {
		grace = max(time.Until(cancelled.Add(p.cfg.Grace)), 100*time.Millisecond)
	}
	reply, err := sp.call(ctlMsg{Op: opClose, Session: r.id}, nil, grace)
	if err == nil && reply.Report != nil {
		r.outcome = Outcome{Report: *reply.Report}
	} else {
		r.lease.healthy.Store(false)
		r.outcome = Outcome{Failure: sp.failure(err, p.cfg.Grace)}
		r.outcome.Refusals = map[string]int{}
	}
	for kind, n := range r.outcome.Refusals {
		p.refusals.WithLabelValues(kind).Add(float64(n))
	}
	return r.outcome
}

// PID is the engine process serving the run (0 in process).
func (r *Run) PID() int {
	if r.local != nil {
		return 0
	}
	return r.lease.sp.pid()
}

// slotProcess is one slot's engine process, restarted as needed.
type slotProcess struct {
	pool *Pool
	slot *Slot
	uid  int

	mu     sync.Mutex // one control exchange at a time
	cmd    *exec.Cmd
	ctl    *ctlConn
	exited chan struct{}
	stderr *tailBuffer
	cg     *procCgroup
	oom0   int
	seq    uint64
	flops  float64
	limits string
}

func (sp *slotProcess) pid() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.cmd == nil || sp.cmd.Process == nil || sp.dead() {
		return 0
	}
	return sp.cmd.Process.Pid
}

// dead reports whether the current process exited; the caller holds mu.
func (sp *slotProcess) dead() bool {
	if sp.exited == nil {
		return true
	}
	select {
	case <-sp.exited:
		return true
	default:
		return false
	}
}

// ensure restarts a process that died while idle.
func (sp *slotProcess) ensure(ctx context.Context) error {
	sp.mu.Lock()
	dead := sp.dead()
	sp.mu.Unlock()
	if !dead {
		return nil
	}
	return sp.restart(ctx, FailedExited)
}

// restart replaces the process (killing it if it still runs).
func (sp *slotProcess) restart(ctx context.Context, cause string) error {
	sp.kill()
	sp.reap()
	sp.pool.restarts.WithLabelValues(cause).Inc()
	if err := sp.start(ctx); err != nil {
		return err
	}
	sp.pool.log.Info("engine process restarted", "slot", sp.slot.String(), "pid", sp.pid(), "cause", cause)
	return nil
}

func (sp *slotProcess) start(ctx context.Context) error {
	cfg := sp.pool.cfg
	argv := cfg.Command
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this executable: %w", err)
		}
		argv = []string{exe, "engine"}
	}
	judgeEnd, engineEnd, err := socketPair()
	if err != nil {
		return err
	}
	defer engineEnd.Close()
	threads := max(1, runtime.NumCPU()/max(1, cfg.SlotsPerDevice))
	env := append([]string{EngineProcessEnv + "=1", fmt.Sprintf("GOMAXPROCS=%d", threads), fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", threads)}, cfg.Env...)
	if sp.slot.Device.Kind == KindCUDA {
		// One CUDA context per slot process, on its own device.
		env = append(env, "CUDA_VISIBLE_DEVICES="+sp.slot.Device.UUID)
	}
	limit := sp.slot.MemoryBudget + cfg.Overhead
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, "/"
	cmd.ExtraFiles = []*os.File{engineEnd}
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	root := os.Geteuid() == 0
	if root {
		// A network namespace of its own: no Redis, no network at all.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	limits := []string{fmt.Sprintf("%d thread(s)", threads)}
	err = cmd.Start()
	if err != nil && root && errors.Is(err, syscall.EPERM) {
		// A container without CAP_SYS_ADMIN may not make namespaces: the
		// engine then shares the judge's network (it still holds no
		// address or credential of it).
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.Env, cmd.Dir, cmd.ExtraFiles, cmd.Stderr = env, "/", []*os.File{engineEnd}, stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		limits = append(limits, "no network namespace (not permitted here)")
	}
	if err != nil {
		judgeEnd.Close()
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	cg, cgErr := newProcCgroup(fmt.Sprintf("hackarena-engine-%d-%d", os.Getpid(), sp.uid-engineUIDBase), limit, float64(threads))
	if cgErr == nil {
		cgErr = cg.add(cmd.Process.Pid)
	}
	if cgErr == nil {
		limits = append(limits, fmt.Sprintf("cgroup memory %d MiB", limit>>20))
	} else {
		if cg != nil {
			cg.remove()
			cg = nil
		}
		// No cgroup to write: cap the address space instead (the Go
		// runtime reserves some it never uses).
		as := uint64(limit + 768<<20)
		if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_AS, &unix.Rlimit{Cur: as, Max: as}, nil); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			judgeEnd.Close()
			return fmt.Errorf("limit the engine's memory: no cgroup (%v) and no rlimit (%w)", cgErr, err)
		}
		limits = append(limits, fmt.Sprintf("address space %d MiB (no cgroup: %v)", as>>20, cgErr))
	}
	exited := make(chan struct{})
	sp.pool.bg.Add(2)
	go func() {
		defer sp.pool.bg.Done()
		_ = cmd.Wait()
		close(exited)
	}()
	go func() {
		// Whatever still runs when the pool closes goes with it.
		defer sp.pool.bg.Done()
		select {
		case <-exited:
		case <-sp.pool.ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	sp.mu.Lock()
	sp.cmd, sp.ctl, sp.exited, sp.stderr, sp.cg, sp.limits = cmd, judgeEnd, exited, stderr, cg, strings.Join(limits, ", ")
	if cg != nil {
		sp.oom0 = cg.oomKills()
	}
	sp.mu.Unlock()
	uid, gid := 0, 0
	if root {
		uid, gid = sp.uid, nobodyGID
	}
	wait := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	reply, err := sp.call(ctlMsg{Op: opConfig, UID: uid, GID: gid, Threads: threads, Device: sp.slot.Device, SlotIndex: sp.slot.Index, Limits: cfg.Limits, MemoryLimit: limit}, nil, wait)
	if err != nil {
		sp.kill()
		return fmt.Errorf("the engine process did not answer: %w (its output: %s)", err, strings.TrimSpace(stderr.String()))
	}
	sp.mu.Lock()
	sp.flops = reply.FLOPS
	sp.mu.Unlock()
	return nil
}

// call sends one request and waits up to timeout for its answer.
func (sp *slotProcess) call(m ctlMsg, files []*os.File, timeout time.Duration) (ctlMsg, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.ctl == nil || sp.dead() {
		return ctlMsg{}, errCtlClosed
	}
	sp.seq++
	m.Seq = sp.seq
	if err := sp.ctl.send(m, files...); err != nil {
		return ctlMsg{}, err
	}
	deadline := time.Now().Add(timeout)
	var reply ctlMsg
	for {
		var got []*os.File
		var err error
		reply, got, err = sp.ctl.recv(deadline)
		closeFiles(got)
		if err != nil {
			return ctlMsg{}, err
		}
		if reply.Seq == m.Seq {
			break
		}
		// The late answer to a request that timed out.
	}
	if reply.Err != "" {
		return reply, errors.New(reply.Err)
	}
	return reply, nil
}

// kill ends the process now; reap waits for it and frees its cgroup.
func (sp *slotProcess) kill() {
	sp.mu.Lock()
	cmd := sp.cmd
	dead := sp.dead()
	sp.mu.Unlock()
	if cmd != nil && cmd.Process != nil && !dead {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (sp *slotProcess) reap() {
	sp.mu.Lock()
	exited, cg, ctl := sp.exited, sp.cg, sp.ctl
	sp.mu.Unlock()
	if exited != nil {
		<-exited
	}
	if ctl != nil {
		ctl.Close()
	}
	if cg != nil {
		cg.remove()
	}
}

// failure says why a run's session ended without a report: the process
// died (at its memory limit, or otherwise), or it did not stop the run's
// work within the grace and is killed now.
func (sp *slotProcess) failure(err error, grace time.Duration) *EngineFailure {
	sp.mu.Lock()
	exited := sp.exited
	sp.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(200 * time.Millisecond):
		sp.kill()
		<-exited
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return &EngineFailure{Kind: FailedExited, Msg: fmt.Sprintf("the Engine process serving this run did not close it (%v) and was restarted; this is the platform's failure, not the plugin's", err)}
		}
		// Alive but unanswering: the run's work was still going.
		sp.pool.kills.Inc()
		return &EngineFailure{Kind: FailedDeadline, Msg: fmt.Sprintf("the Engine was still computing for this run %s after it ended, and its process was stopped: make each batch finish well within the wall time", grace)}
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	state, tail := sp.cmd.ProcessState, sp.stderr.String()
	sp.pool.log.Warn("engine process died during a run", "slot", sp.slot.String(), "state", state.String(), "output", tail[max(0, len(tail)-2000):])
	oom := sp.cg != nil && sp.cg.oomKills() > sp.oom0
	if oom || strings.Contains(tail, "out of memory") {
		return &EngineFailure{Kind: FailedMemory, Msg: fmt.Sprintf("the Engine process serving this run reached its slot's memory limit (budget %.0f MiB plus %.0f MiB overhead) and was killed: use a smaller network or smaller batches",
			float64(sp.slot.MemoryBudget)/(1<<20), float64(sp.pool.cfg.Overhead)/(1<<20))}
	}
	how := "it exited"
	if state != nil {
		how = state.String()
	}
	if line := panicLine(tail); line != "" {
		how += " (" + line + ")"
	}
	return &EngineFailure{Kind: FailedExited, Msg: fmt.Sprintf("the Engine process serving this run failed (%s); this is the platform's failure, not the plugin's", how)}
}

// panicLine is the first line of a Go crash report in an engine's output.
func panicLine(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
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
