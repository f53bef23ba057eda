package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"

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
	probe := exec.Command(path, "--unshare-all", "--unshare-user", "--die-with-parent", "--ro-bind", "/", "/", "true")
	if out, err := probe.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bubblewrap cannot create namespaces on this machine (%v: %s): enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run the judge as root", err, strings.TrimSpace(string(out)))
	}
	return &Bwrap{path: path}, nil
}

// Name implements Sandbox.
func (b *Bwrap) Name() string { return "bwrap" }

// envAllowed are the only variables a plugin sees: go-plugin's handshake.
func envAllowed(kv string) bool {
	return strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, "HACKARENA_PLUGIN=")
}

// Runner implements Sandbox.
func (b *Bwrap) Runner(spec Spec) RunnerFunc {
	return func(logger hclog.Logger, cmd *exec.Cmd, hostSocketDir string) (runner.Runner, error) {
		args := []string{
			"--unshare-all", "--unshare-user",
			"--uid", sandboxUID, "--gid", sandboxUID,
			"--die-with-parent", "--new-session",
			"--cap-drop", "ALL",
			"--hostname", "sandbox",
			"--clearenv",
			"--proc", "/proc",
			"--dev", "/dev",
			"--ro-bind", spec.Binary, pluginPath,
			// The host dials the socket path the plugin prints, so the
			// directory is visible at the same path inside.
			"--bind", hostSocketDir, hostSocketDir,
			"--remount-ro", "/",
			"--chdir", "/",
		}
		for _, kv := range cmd.Env {
			if !envAllowed(kv) {
				continue
			}
			k, v, _ := strings.Cut(kv, "=")
			args = append(args, "--setenv", k, v)
		}
		args = append(args, pluginPath)

		var bwrapCmd *exec.Cmd
		if spec.MemoryBytes > 0 {
			// prlimit applies the address-space cap to bwrap, which the
			// plugin inherits; the kernel then refuses allocations past it.
			// The Go runtime reserves address space it never touches
			// (measured: a static Go binary cannot start under 600 MiB), so
			// the cap is the budget plus that reservation.
			limit := spec.MemoryBytes + goRuntimeReserve
			bwrapCmd = exec.Command("prlimit", append([]string{"--as=" + strconv.FormatInt(limit, 10), "--core=0", "--", b.path}, args...)...)
		} else {
			bwrapCmd = exec.Command(b.path, args...)
		}
		bwrapCmd.Env = []string{}
		bwrapCmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		stdout, err := bwrapCmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		stderr, err := bwrapCmd.StderrPipe()
		if err != nil {
			return nil, err
		}
		return &bwrapRunner{cmd: bwrapCmd, stdout: stdout, stderr: stderr, socketDir: hostSocketDir, logger: logger}, nil
	}
}

type bwrapRunner struct {
	cmd       *exec.Cmd
	stdout    io.ReadCloser
	stderr    io.ReadCloser
	socketDir string
	logger    hclog.Logger

	killOnce sync.Once
}

var _ runner.Runner = (*bwrapRunner)(nil)

func (r *bwrapRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start bubblewrap: %w", err)
	}
	return nil
}

func (r *bwrapRunner) Wait(context.Context) error { return r.cmd.Wait() }

// Kill ends the whole process group; with --unshare-pid and
// --die-with-parent everything the plugin started goes with it.
func (r *bwrapRunner) Kill(context.Context) error {
	r.killOnce.Do(func() {
		if r.cmd.Process != nil {
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	return nil
}

func (r *bwrapRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *bwrapRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *bwrapRunner) Name() string          { return "bwrap:" + pluginPath }

func (r *bwrapRunner) ID() string {
	if r.cmd.Process == nil {
		return ""
	}
	return strconv.Itoa(r.cmd.Process.Pid)
}

func (r *bwrapRunner) Diagnose(context.Context) string {
	return "the plugin did not complete the go-plugin handshake: it must be a static linux/amd64 binary whose main calls sdk.Serve (build it with `hackctl build`)"
}

// PluginToHost accepts only a unix socket inside this run's socket
// directory: a plugin must not make the judge dial anything else.
func (r *bwrapRunner) PluginToHost(network, addr string) (string, string, error) {
	if network != "unix" {
		return "", "", fmt.Errorf("plugin offered a %s address; only unix sockets are accepted", network)
	}
	if !strings.HasPrefix(addr, r.socketDir+"/") || strings.Contains(addr, "..") {
		return "", "", fmt.Errorf("plugin socket %q is outside its socket directory", addr)
	}
	return checkSocket(network, addr)
}

// checkSocket accepts a path only if it is a socket itself, not a symlink
// to one elsewhere.
func checkSocket(network, addr string) (string, string, error) {
	fi, err := os.Lstat(addr)
	if err != nil {
		return "", "", fmt.Errorf("plugin socket %q: %w", addr, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return "", "", fmt.Errorf("plugin address %q is not a socket", addr)
	}
	return network, addr, nil
}

func (r *bwrapRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
