// Package sandbox runs untrusted plugin binaries isolated from the host, as
// go-plugin runners.
package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// Spec says what one plugin run may use.
type Spec struct {
	// Binary is the host path of the plugin executable.
	Binary string
	// MemoryBytes caps the plugin's memory (0: no cap).
	MemoryBytes int64
	// CPUSeconds caps the CPU time of a bubblewrap run (0: no cap); a
	// Docker run has a CPU quota instead.
	CPUSeconds int
	// Outcome, when set, receives how the run ended as far as the backend
	// knows it (Docker knows whether the kernel killed it for memory).
	Outcome *Outcome
}

// Outcome is how a sandboxed run ended, and a way to end it.
type Outcome struct {
	mu        sync.Mutex
	oomKilled bool
	kill      func()
	// exitStatus is the status the plugin exited with by itself (not
	// killed); exited says it did.
	exitStatus int
	exited     bool
	// hostFailure is the sandbox losing the run.
	hostFailure error
	// peakBytes is the most memory the plugin held, where the backend
	// measures it (0: not measured); sampler reads it from a running
	// sandbox (Docker's cgroup).
	peakBytes int64
	sampler   func() int64
}

// setPeakFrom records the peak resident memory of an exited process and
// the descendants it waited for (bwrap waits for the plugin).
func (o *Outcome) setPeakFrom(ps *os.ProcessState) {
	if o == nil || ps == nil {
		return
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.peakBytes = max(o.peakBytes, ru.Maxrss*1024) // Linux counts KiB
}

// PeakBytes is the most memory the plugin held: its peak resident set
// under bubblewrap or unsandboxed, once it has exited; in Docker its
// cgroup's peak when last sampled (SamplePeak), or its memory limit when
// the kernel killed it there; 0 where not measured.
func (o *Outcome) PeakBytes() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.peakBytes
}

// SamplePeak reads the peak from the running sandbox, where the backend
// can only tell while it runs (Docker: call it before the plugin is shut
// down).
func (o *Outcome) SamplePeak() {
	if o == nil {
		return
	}
	o.mu.Lock()
	sampler := o.sampler
	o.mu.Unlock()
	if sampler == nil {
		return
	}
	if peak := sampler(); peak > 0 {
		o.setPeak(peak)
	}
}

// ReachedLimit records that the plugin was stopped for asking for more
// memory than its limit of n bytes: whatever was resident when it was
// stopped, it reached its limit, and that is its peak (bubblewrap caps
// address space, so the resident set a Go plugin dies with can be far
// below it).
func (o *Outcome) ReachedLimit(n int64) {
	if o != nil {
		o.setPeak(n)
	}
}

func (o *Outcome) setPeak(n int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.peakBytes = max(o.peakBytes, n)
}

func (o *Outcome) setSampler(f func() int64) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sampler = f
}

func (o *Outcome) setHostFailure(err error) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hostFailure == nil {
		o.hostFailure = err
	}
}

// HostFailure is the sandbox failing to host the run (the Docker Engine
// lost the container, say): the platform's failure, whatever the plugin
// did. It is a *SetupError.
func (o *Outcome) HostFailure() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hostFailure
}

func (o *Outcome) setExited(status int) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.exitStatus, o.exited = status, true
}

// ExitStatus is the status the plugin exited with by itself; ok is false
// while it runs, or when it was killed (by the judge or the kernel).
func (o *Outcome) ExitStatus() (status int, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.exitStatus, o.exited
}

func (o *Outcome) setKill(kill func()) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kill = kill
}

// Kill ends the run at once, whatever state the plugin is in. go-plugin's
// own Kill first asks the plugin over gRPC to shut down and waits without
// a deadline, which never returns for a plugin that stopped itself.
func (o *Outcome) Kill() {
	o.mu.Lock()
	kill := o.kill
	o.mu.Unlock()
	if kill != nil {
		kill()
	}
}

func (o *Outcome) setOOMKilled() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.oomKilled = true
}

// OOMKilled reports whether the kernel killed the run for memory.
func (o *Outcome) OOMKilled() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.oomKilled
}

// RunnerFunc is go-plugin's hook for starting a plugin somewhere other than
// a plain child process.
type RunnerFunc func(logger hclog.Logger, cmd *exec.Cmd, hostSocketDir string) (runner.Runner, error)

// Sandbox starts plugins in isolation.
type Sandbox interface {
	// Name identifies the backend ("bwrap", "docker").
	Name() string
	// Runner returns the go-plugin runner hook for one run of spec.
	Runner(spec Spec) RunnerFunc
}

// New picks a backend by name: "docker", "bwrap", or "auto" (Docker when
// its engine answers, else bubblewrap). With none available it says how to
// fix that instead of running plugins unsandboxed.
func New(ctx context.Context, name string, docker DockerOptions) (Sandbox, error) {
	switch name {
	case "docker":
		d, err := NewDocker(ctx, docker)
		if err != nil {
			return nil, fmt.Errorf("sandbox %q: %w", name, err)
		}
		return d, nil
	case "bwrap":
		b, err := NewBwrap()
		if err != nil {
			return nil, fmt.Errorf("sandbox %q: %w", name, err)
		}
		return b, nil
	case "", "auto":
		d, dockerErr := NewDocker(ctx, docker)
		if dockerErr == nil {
			return d, nil
		}
		b, bwrapErr := NewBwrap()
		if bwrapErr == nil {
			return b, nil
		}
		return nil, fmt.Errorf("no sandbox available: docker: %v; bubblewrap: %v", dockerErr, bwrapErr)
	}
	return nil, fmt.Errorf("unknown sandbox %q: HACKARENA_SANDBOX must be auto, bwrap or docker", name)
}

// AddressError is a plugin's handshake address the judge refuses to dial:
// not a unix socket inside the run's socket directory.
type AddressError struct {
	Network, Addr string
	Why           string
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("plugin offered %s address %q, which %s", e.Network, e.Addr, e.Why)
}

// MountSocketRoot puts dir on a small tmpfs of its own that forbids
// executing files, so nothing a plugin writes into its socket directory
// can be run, and a plugin filling it fills 16 MiB of memory rather than
// the host's disk. It needs root; otherwise it does nothing and says so.
// The returned function unmounts it.
func MountSocketRoot(dir string) (unmount func() error, mounted bool, err error) {
	if os.Geteuid() != 0 {
		return func() error { return nil }, false, nil
	}
	if err := syscall.Mount("hackarena-sockets", dir, "tmpfs", syscall.MS_NOEXEC|syscall.MS_NOSUID|syscall.MS_NODEV, "size=16m,mode=0711"); err != nil {
		return nil, false, fmt.Errorf("mount a tmpfs for plugin sockets at %s: %w", dir, err)
	}
	return func() error { return syscall.Unmount(dir, syscall.MNT_DETACH) }, true, nil
}

// giveSocket makes uid the owner of a unix socket the judge created in
// the run's socket directory, so the sandboxed plugin (and nobody else
// but root) can connect to it; uid -1 leaves it alone.
func giveSocket(network, addr, socketDir string, uid int) error {
	if network != "unix" || uid < 0 || !strings.HasPrefix(addr, socketDir+"/") {
		return nil
	}
	if err := os.Lchown(addr, uid, -1); err != nil {
		return fmt.Errorf("hand socket %s to the sandbox: %w", addr, err)
	}
	return nil
}

// shareSocketDir lets the plugin's group (nogroup) create its socket in
// the run's directory, and nobody else.
func shareSocketDir(dir string) error {
	if err := os.Chown(dir, -1, nobodyID); err != nil {
		return fmt.Errorf("share socket dir with the sandbox: %w", err)
	}
	if err := os.Chmod(dir, 0o770); err != nil {
		return fmt.Errorf("share socket dir with the sandbox: %w", err)
	}
	return nil
}

// SetupError is the judge failing to set up or host a run: nothing the
// plugin did, so the run is the platform's failure. The judge tells it
// apart by type, never by text, which a plugin can imitate.
type SetupError struct {
	Op  string
	Err error
}

func (e *SetupError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

func setupError(op string, err error) error { return &SetupError{Op: op, Err: err} }

// Caps of a run's own socket directory: room for go-plugin's sockets (the
// plugin's, the Engine's), and little else. A tmpfs charges its pages to
// the memory of whoever writes them, and nr_inodes bounds the kernel
// memory of empty files, which no other limit counts.
const (
	RunDirBytes  = 1 << 20
	RunDirInodes = 64
)

// runDir is a run's socket directory, on a tmpfs of its own when the
// judge is root, so that a plugin filling it (bytes or inodes) fills only
// its own: runs never share a writable filesystem.
type runDir struct {
	path    string
	mounted bool
	once    sync.Once
}

// mountRunDir gives path its own capped tmpfs (root only), writable by
// the plugin's group. Without root it does nothing: the directory stays on
// the socket root, shared by the runs of a non-root judge
// (docs/security.md).
func mountRunDir(path string) (*runDir, error) {
	d := &runDir{path: path}
	if os.Geteuid() != 0 {
		return d, nil
	}
	opts := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0770,uid=0,gid=%d", RunDirBytes, RunDirInodes, nobodyID)
	if err := syscall.Mount("hackarena-run", path, "tmpfs", syscall.MS_NOEXEC|syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return nil, setupError("mount the run's socket directory", err)
	}
	d.mounted = true
	return d, nil
}

// release unmounts the run's tmpfs (its files go with it); go-plugin
// removes the then empty directory.
func (d *runDir) release() {
	if d == nil || !d.mounted {
		return
	}
	d.once.Do(func() { _ = syscall.Unmount(d.path, syscall.MNT_DETACH) })
}

// abandon is release for a run that never started, which go-plugin does
// not clean up after.
func (d *runDir) abandon() {
	if d == nil {
		return
	}
	d.release()
	_ = os.RemoveAll(d.path)
}

// exitGrace is how long a run's output may keep coming after its sandbox
// ended (what was in flight) before the judge stops reading it.
const exitGrace = 2 * time.Second
