package gpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

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
	// The process may use every core: each run's share follows how many
	// runs are open (Run.threads), and the cgroups' equal weights split
	// the cores when several are busy. It starts at a full slot count's
	// share. OpenBLAS's own threads stay unused (products are cut into
	// bands on Go's threads).
	threads, cores := cpuShare(cfg.SlotsPerDevice), runtime.NumCPU()
	env := append([]string{EngineProcessEnv + "=1", fmt.Sprintf("GOMAXPROCS=%d", threads), "OPENBLAS_NUM_THREADS=1"}, BLASKernelEnv()...)
	env = append(env, cfg.Env...)
	if sp.slot.Device.Kind == KindCUDA {
		// One CUDA context per slot process, on its own device.
		env = append(env, "CUDA_VISIBLE_DEVICES="+sp.slot.Device.UUID)
	}
	limit := sp.slot.MemoryBudget + cfg.Overhead
	stderr := &tailBuffer{max: 16 << 10}
	command := func(netns bool) *exec.Cmd {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env, cmd.Dir, cmd.ExtraFiles, cmd.Stderr = env, "/", []*os.File{engineEnd}, stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if netns {
			// A network namespace of its own: no Redis, no network at all.
			cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
		}
		return cmd
	}
	root := os.Geteuid() == 0
	limits := []string{fmt.Sprintf("up to %d thread(s), shared among the runs open", cores)}
	cmd := command(root)
	err = cmd.Start()
	if err != nil && root && errors.Is(err, syscall.EPERM) {
		// A container without CAP_SYS_ADMIN may not make namespaces: the
		// engine then shares the judge's network (it still holds no
		// address or credential of it).
		cmd = command(false)
		err = cmd.Start()
		limits = append(limits, "no network namespace (not permitted here)")
	}
	if err != nil {
		judgeEnd.Close()
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	cg, cgErr := newProcCgroup(fmt.Sprintf("hackarena-engine-%d-%d", os.Getpid(), sp.uid-engineUIDBase), limit, float64(cores))
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

// tell sends one message that is not answered.
func (sp *slotProcess) tell(m ctlMsg) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.ctl == nil || sp.dead() {
		return errCtlClosed
	}
	sp.seq++
	m.Seq = sp.seq
	return sp.ctl.send(m)
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
