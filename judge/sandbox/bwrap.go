package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// sandboxUID is "nobody": the id the plugin runs as inside its namespace.
const sandboxUID = "65534"

// goRuntimeReserve is address space a Go plugin reserves at start without
// using it; it is added to the memory budget of the address-space cap.
const goRuntimeReserve = 768 << 20

// pluginPath is where the binary appears inside the sandbox.
const pluginPath = "/plugin"

// Bwrap runs plugins under bubblewrap: fresh user, pid, network, ipc, uts
// and cgroup namespaces, an empty read-only root holding only the plugin
// binary and its socket directory, no capabilities, and an environment
// reduced to go-plugin's handshake variables.
type Bwrap struct {
	path string
}

var _ Sandbox = (*Bwrap)(nil)

// NewBwrap finds bwrap and checks that it can create namespaces here.
func NewBwrap() (*Bwrap, error) {
	path, err := exec.LookPath("bwrap")
	if err != nil {
		return nil, errors.New("bubblewrap (bwrap) not found on PATH: install it (Debian: apt-get install bubblewrap)")
	}
	// Runs as the unprivileged uid a run gets when the judge is root: that
	// is the user that must be able to create the namespaces.
	probe := exec.Command(path, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--ro-bind", "/", "/", "true")
	if os.Geteuid() == 0 {
		probe.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: RunUIDBase, Gid: nobodyID, Groups: []uint32{}}}
	}
	if out, err := probe.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bubblewrap cannot create namespaces on this machine as an unprivileged user (%v: %s): enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)", err, strings.TrimSpace(string(out)))
	}
	return &Bwrap{path: path}, nil
}

// Name implements Sandbox.
func (b *Bwrap) Name() string { return "bwrap" }

// envAllowed are the only variables a plugin sees: go-plugin's handshake.
func envAllowed(kv string) bool {
	return strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, "HACKARENA_PLUGIN=")
}

// Host uids of bubblewrap runs when the judge is root: one picked at
// random per run from this range, which no account uses.
const (
	RunUIDBase  = 2_000_000
	RunUIDCount = 65_536
)

// Limits of one bubblewrap run, applied with prlimit to bwrap and
// inherited by the plugin.
const (
	bwrapNproc  = 256
	bwrapNofile = 256
	bwrapFsize  = 64 << 20
)

// Runner implements Sandbox.
func (b *Bwrap) Runner(spec Spec) RunnerFunc {
	return func(logger hclog.Logger, cmd *exec.Cmd, hostSocketDir string) (runner.Runner, error) {
		// As root, bwrap's --uid maps the sandbox user to host root, and
		// RLIMIT_NPROC means nothing: run bwrap itself as an unprivileged
		// uid of this run's own (RLIMIT_NPROC counts per uid, so a fork
		// bomb in one run cannot starve another), group nogroup, which
		// shares the socket dir. The binary (in a root-only blob store)
		// reaches it as an open file it copies; the socket dir's parents
		// must be traversable (the evaluator makes them so).
		dropRoot := os.Geteuid() == 0
		hostUID := uint32(RunUIDBase + rand.IntN(RunUIDCount))
		binary, err := os.Open(spec.Binary)
		if err != nil {
			return nil, setupError("open plugin binary", err)
		}
		filter, err := seccompFile()
		if err != nil {
			binary.Close()
			return nil, err
		}
		files := []*os.File{binary, filter}
		dir, err := mountRunDir(hostSocketDir)
		if err != nil {
			closeAll(files)
			return nil, err
		}
		if dropRoot && !dir.mounted {
			if err := shareSocketDir(hostSocketDir); err != nil {
				closeAll(files)
				return nil, setupError("share the socket directory", err)
			}
		}
		// ExtraFiles become fds 3 and 4 in bwrap.
		args := []string{
			"--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
			"--uid", sandboxUID, "--gid", sandboxUID,
			"--disable-userns",
			"--die-with-parent", "--new-session",
			"--cap-drop", "ALL",
			"--hostname", "sandbox",
			"--clearenv",
			"--proc", "/proc",
			"--dev", "/dev",
			// Device nodes stay usable; /dev/shm can no longer take files.
			"--remount-ro", "/dev",
			"--perms", "0555", "--file", "3", pluginPath,
			// The host dials the socket path the plugin prints, so the
			// directory is visible at the same path inside.
			"--bind", hostSocketDir, hostSocketDir,
			"--remount-ro", "/",
			"--chdir", "/",
			"--seccomp", "4",
		}
		for _, kv := range cmd.Env {
			if !envAllowed(kv) {
				continue
			}
			k, v, _ := strings.Cut(kv, "=")
			args = append(args, "--setenv", k, v)
		}
		args = append(args, pluginPath)

		limits := []string{
			"--nproc=" + strconv.Itoa(bwrapNproc),
			"--nofile=" + strconv.Itoa(bwrapNofile),
			"--fsize=" + strconv.Itoa(bwrapFsize),
			"--core=0",
		}
		if spec.CPUSeconds > 0 {
			limits = append(limits, "--cpu="+strconv.Itoa(spec.CPUSeconds))
		}
		if spec.MemoryBytes > 0 {
			// The address-space cap is the budget plus what the Go
			// runtime reserves without using (measured: a static Go binary
			// cannot start under 600 MiB); the kernel then refuses
			// allocations past it.
			limits = append(limits, "--as="+strconv.FormatInt(spec.MemoryBytes+goRuntimeReserve, 10))
		}
		bwrapCmd := exec.Command("prlimit", append(append(limits, "--", b.path), args...)...)
		bwrapCmd.Env = []string{}
		bwrapCmd.ExtraFiles = files
		bwrapCmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if dropRoot {
			bwrapCmd.SysProcAttr.Credential = &syscall.Credential{Uid: hostUID, Gid: nobodyID, Groups: []uint32{}}
		}
		r := &bwrapRunner{cmd: bwrapCmd, stdout: newOutputPipe(), stderr: newOutputPipe(), socketDir: hostSocketDir, dir: dir,
			logger: logger, files: files, hostUID: -1, done: make(chan struct{}), outcome: spec.Outcome}
		if dropRoot {
			r.hostUID = int(hostUID)
		}
		spec.Outcome.setKill(func() { _ = r.Kill(context.Background()) })
		return r, nil
	}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

type bwrapRunner struct {
	cmd *exec.Cmd
	// stdout and stderr are what go-plugin reads; the judge drains the
	// plugin's pipes into them, so the plugin never blocks on its output
	// and a long line cannot stop go-plugin's reading.
	stdout, stderr *outputPipe
	socketDir      string
	dir            *runDir
	logger         hclog.Logger
	// files are handed to bwrap; the judge's copies close once it runs.
	files []*os.File
	// hostUID is the host uid the plugin runs as, -1 when it is the
	// judge's own.
	hostUID int

	// done closes when the sandbox has ended and its output is closed;
	// waitErr is how it ended.
	done    chan struct{}
	waitErr error
	outcome *Outcome

	// procMu guards proc, the started sandbox, and killed: a kill can come
	// from the run's deadline while Start is still starting it.
	procMu sync.Mutex
	proc   *os.Process
	killed bool
}

var _ runner.Runner = (*bwrapRunner)(nil)

func (r *bwrapRunner) Start(context.Context) error {
	defer closeAll(r.files)
	outR, outW, err := os.Pipe()
	if err != nil {
		r.dir.abandon()
		return setupError("start bubblewrap", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll([]*os.File{outR, outW})
		r.dir.abandon()
		return setupError("start bubblewrap", err)
	}
	r.cmd.Stdout, r.cmd.Stderr = outW, errW
	r.procMu.Lock()
	err = r.cmd.Start()
	if err == nil {
		r.proc = r.cmd.Process
		if r.killed {
			// Killed while it was starting: it goes now.
			_ = syscall.Kill(-r.proc.Pid, syscall.SIGKILL)
		}
	}
	r.procMu.Unlock()
	// The plugin holds the write ends now; the judge's copies would keep
	// the streams open after it ends.
	closeAll([]*os.File{outW, errW})
	if err != nil {
		closeAll([]*os.File{outR, errR})
		r.dir.abandon()
		return setupError("start bubblewrap", err)
	}
	go r.supervise(outR, errR)
	return nil
}

// supervise drains the plugin's output, waits for the sandbox to end, and
// then closes the output; anything the plugin left holding its pipes is
// cut off after exitGrace.
func (r *bwrapRunner) supervise(outR, errR *os.File) {
	defer close(r.done)
	var drains sync.WaitGroup
	for _, s := range []struct {
		p *outputPipe
		f *os.File
	}{{r.stdout, outR}, {r.stderr, errR}} {
		drains.Add(1)
		go func() {
			defer drains.Done()
			drainInto(s.p, s.f)
		}()
	}
	r.waitErr = r.cmd.Wait()
	r.outcome.setPeakFrom(r.cmd.ProcessState)
	if ps := r.cmd.ProcessState; ps != nil && ps.Exited() {
		// bwrap exits with its child's status; a kill leaves it signalled.
		r.outcome.setExited(ps.ExitCode())
	}
	drained := make(chan struct{})
	go func() { drains.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(exitGrace):
		// Closing the read ends makes the drains return.
		closeAll([]*os.File{outR, errR})
		<-drained
	}
	closeAll([]*os.File{outR, errR})
}

// Wait waits for the run to end and releases its directory (go-plugin
// then removes it).
func (r *bwrapRunner) Wait(ctx context.Context) error {
	select {
	case <-r.done:
		r.dir.release()
		return r.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill ends the whole process group; with --unshare-pid and
// --die-with-parent everything the plugin started goes with it.
func (r *bwrapRunner) Kill(context.Context) error {
	r.procMu.Lock()
	defer r.procMu.Unlock()
	if !r.killed && r.proc != nil {
		_ = syscall.Kill(-r.proc.Pid, syscall.SIGKILL)
	}
	r.killed = true
	return nil
}

func (r *bwrapRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *bwrapRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *bwrapRunner) Name() string          { return "bwrap:" + pluginPath }

func (r *bwrapRunner) ID() string {
	r.procMu.Lock()
	defer r.procMu.Unlock()
	if r.proc == nil {
		return ""
	}
	return strconv.Itoa(r.proc.Pid)
}

func (r *bwrapRunner) Diagnose(context.Context) string {
	return "the plugin did not complete the go-plugin handshake: it must be a static linux/amd64 binary whose main calls sdk.Serve (build it with `hackctl build`)"
}

// PluginToHost accepts only a unix socket inside this run's socket
// directory: a plugin must not make the judge dial anything else.
func (r *bwrapRunner) PluginToHost(network, addr string) (string, string, error) {
	if network != "unix" {
		return "", "", &AddressError{network, addr, "is not a unix socket"}
	}
	if !strings.HasPrefix(addr, r.socketDir+"/") || strings.Contains(addr, "..") {
		return "", "", &AddressError{network, addr, "is outside its socket directory"}
	}
	return checkSocket(network, addr)
}

// checkSocket accepts a path only if it is a socket itself, not a symlink
// to one elsewhere.
func checkSocket(network, addr string) (string, string, error) {
	fi, err := os.Lstat(addr)
	if err != nil {
		return "", "", &AddressError{network, addr, "does not exist: " + err.Error()}
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return "", "", &AddressError{network, addr, "is not a socket (a symlink, say)"}
	}
	return network, addr, nil
}

// HostToPlugin hands a socket the judge opened for this run (the
// Engine's, through go-plugin's broker) to the plugin's uid: only the
// plugin, and root, may connect to it.
func (r *bwrapRunner) HostToPlugin(network, addr string) (string, string, error) {
	if err := giveSocket(network, addr, r.socketDir, r.hostUID); err != nil {
		return "", "", err
	}
	return network, addr, nil
}
