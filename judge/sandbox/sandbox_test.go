package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// backends starts each sandbox backend; both must work on CI.
func backends(t *testing.T) map[string]Sandbox {
	t.Helper()
	out := map[string]Sandbox{}
	b, err := NewBwrap()
	if err != nil {
		t.Fatalf("%v (run `make test`, which installs bubblewrap)", err)
	}
	out["bwrap"] = b
	d, err := NewDocker(context.Background(), DockerOptions{})
	if err != nil {
		t.Fatalf("%v (the tests need a running Docker Engine)", err)
	}
	t.Cleanup(func() { d.Close() })
	out["docker"] = d
	return out
}

func buildProbe(t *testing.T) string {
	t.Helper()
	probe := filepath.Join(t.TempDir(), "probe")
	build := exec.Command("go", "build", "-o", probe, "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	return probe
}

// TestIsolation runs a probe under each backend, as go-plugin would start a
// plugin, and checks what it could see and do.
func TestIsolation(t *testing.T) {
	probe := buildProbe(t)
	// Listeners the probe must not reach: the host's loopback and every
	// host address (Docker's bridge gateway included).
	var targets []string
	for _, host := range []string{"127.0.0.1", "0.0.0.0"} {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		targets = append(targets, "127.0.0.1:"+port, "172.17.0.1:"+port)
	}
	targets = append(targets, "1.1.1.1:53")
	secret := filepath.Join(t.TempDir(), "hidden-labels")
	if err := os.WriteFile(secret, []byte("7,2,1,0"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, sb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			socketDir, err := os.MkdirTemp("", "probe-sock-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(socketDir)
			cmd := exec.Command("unused")
			cmd.Env = []string{"PLUGIN_UNIX_SOCKET_DIR=" + socketDir, "HACKARENA_PLUGIN=cookie", "SECRET_TOKEN=leak", "REDIS_URL=redis://x"}
			run, err := sb.Runner(Spec{Binary: probe, MemoryBytes: 512 << 20})(hclog.NewNullLogger(), cmd, socketDir)
			if err != nil {
				t.Fatal(err)
			}
			// The runner gave the directory its own filesystem (as root):
			// the control file goes in now, as go-plugin's sockets would.
			ctl, _ := json.Marshal(map[string]any{"tcp": targets, "secret": secret})
			if err := os.WriteFile(filepath.Join(socketDir, "probe.json"), ctl, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := run.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer run.Kill(context.Background())
			stderr := make(chan string, 1)
			go func() {
				var b strings.Builder
				sc := bufio.NewScanner(run.Stderr())
				for sc.Scan() {
					b.WriteString(sc.Text() + "\n")
				}
				stderr <- b.String()
			}()
			got := map[string]string{}
			sc := bufio.NewScanner(run.Stdout())
			for sc.Scan() {
				k, v, _ := strings.Cut(sc.Text(), "=")
				got[k] = v
			}
			errOut := <-stderr
			// Before Wait, which releases the run's directory.
			// What the plugin wrote belongs to an unprivileged host uid:
			// nobody in Docker, a run's own uid in bubblewrap.
			if fi, err := os.Stat(filepath.Join(socketDir, "probe")); err != nil {
				t.Errorf("the probe's write to the socket dir is not visible to the host: %v", err)
			} else {
				uid := fi.Sys().(*syscall.Stat_t).Uid
				ok := uid == 65534
				if name == "bwrap" && os.Geteuid() == 0 {
					ok = uid >= RunUIDBase && uid < RunUIDBase+RunUIDCount
				}
				if !ok {
					t.Errorf("the plugin runs as host uid %d", uid)
				}
			}
			if err := run.Wait(context.Background()); err != nil {
				t.Fatalf("probe exited with %v; report so far %v; stderr:\n%s", err, got, errOut)
			}
			want := map[string]string{
				"control_read_ok":     "true",
				"uid":                 "65534",
				"cap_eff":             "0000000000000000",
				"tcp_dial_ok":         "false",
				"dns_ok":              "false",
				"docker_sock_ok":      "false",
				"secret_read_ok":      "false",
				"root_write_ok":       "false",
				"binary_write_ok":     "false",
				"tmp_exec_ok":         "false",
				"mount_ok":            "false",
				"socket_dir_write_ok": "true",
				"keyctl_ok":           "false",
				"io_uring_ok":         "false",
				"ptrace_ok":           "false",
				"socket_vsock_ok":     "false",
				"socket_alg_ok":       "false",
				"unshare_user_ok":     "false",
				"unshare_net_ok":      "false",
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			env := map[string]string{
				// bwrap itself sets PWD (to "/") for --chdir; Docker sets
				// PATH and HOSTNAME.
				"bwrap":  "HACKARENA_PLUGIN,PLUGIN_UNIX_SOCKET_DIR,PWD",
				"docker": "HACKARENA_PLUGIN,HOME,HOSTNAME,PATH,PLUGIN_UNIX_SOCKET_DIR",
			}[name]
			if got["env"] != env {
				t.Errorf("env %q, want %q", got["env"], env)
			}
			// PID 1's root is the host's unless it is the sandbox's own.
			if p := got["proc1_root"]; p != "denied" && p != got["root"] {
				t.Errorf("/proc/1/root shows %q, not the sandbox root %q", p, got["root"])
			}
			t.Logf("%s root: %s", name, got["root"])
			if name == "bwrap" {
				// Only the plugin, /proc, /dev and the top of the socket
				// path exist.
				top := strings.Split(strings.TrimPrefix(socketDir, "/"), "/")[0]
				for _, entry := range strings.Split(got["root"], ",") {
					switch entry {
					case "plugin", "proc", "dev", top:
					default:
						t.Errorf("sandbox root shows %q (all: %s)", entry, got["root"])
					}
				}
			}
		})
	}
}

// TestDockerRemovesLeftoversOfItsOwner: a judge that crashed mid-run left
// a container; the next judge with the same owner removes it, and leaves
// another owner's alone.
func TestDockerRemovesLeftoversOfItsOwner(t *testing.T) {
	probe := buildProbe(t)
	owner := fmt.Sprintf("test-leftovers-%d", os.Getpid())
	other := owner + "-other"
	start := func(owner string) string {
		d, err := NewDocker(context.Background(), DockerOptions{Owner: owner})
		if err != nil {
			t.Fatalf("%v (the tests need a running Docker Engine)", err)
		}
		defer d.Close()
		socketDir, err := os.MkdirTemp("", "leftover-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(socketDir) })
		cmd := exec.Command("unused")
		cmd.Env = []string{"PLUGIN_UNIX_SOCKET_DIR=" + socketDir}
		run, err := d.Runner(Spec{Binary: probe})(hclog.NewNullLogger(), cmd, socketDir)
		if err != nil {
			t.Fatal(err)
		}
		// Started and never waited for or killed: what a crash leaves.
		if err := run.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return run.ID()
	}
	mine, theirs := start(owner), start(other)
	exists := func(id string) bool {
		return exec.Command("docker", "inspect", id).Run() == nil
	}
	if !exists(mine) || !exists(theirs) {
		t.Fatal("the containers were not created")
	}
	d, err := NewDocker(context.Background(), DockerOptions{Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if exists(mine) {
		t.Error("a restarted judge left its predecessor's container")
	}
	if !exists(theirs) {
		t.Error("a judge removed another judge's container")
	}
	_ = exec.Command("docker", "rm", "-f", theirs).Run()
}

// TestGiveSocketHandsOnlyTheRunsSocketsToTheSandboxUser: a socket the
// judge opens in a run's directory (the Engine's) becomes the sandbox
// user's, so it can connect and other unprivileged users cannot; nothing
// outside the directory is touched.
func TestGiveSocketHandsOnlyTheRunsSocketsToTheSandboxUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs the judge's tests as root; this one needs it to chown")
		}
		t.Skip("chown needs root")
	}
	dir := t.TempDir()
	inside := filepath.Join(dir, "run", "engine.sock")
	if err := os.MkdirAll(filepath.Dir(inside), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", inside)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	outside := filepath.Join(dir, "other.sock")
	ln2, err := net.Listen("unix", outside)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	const uid = RunUIDBase + 7
	for _, addr := range []string{inside, outside} {
		if err := giveSocket("unix", addr, filepath.Dir(inside), uid); err != nil {
			t.Fatal(err)
		}
	}
	owner := func(path string) (uint32, os.FileMode) {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Uid, fi.Mode().Perm()
	}
	if got, mode := owner(inside); got != uid || mode&0o002 != 0 {
		t.Errorf("run's socket: owner %d mode %v, want %d and no write for others", got, mode, uid)
	}
	if got, _ := owner(outside); got != 0 {
		t.Errorf("a socket outside the run's directory was given to uid %d", got)
	}
}

// TestDockerRemovesTheContainerOfACreateWhoseAnswerWasLost: a judge frozen
// while the engine created its container gets an error from the create
// and never learns the container's id; the container, made after all,
// is found by the name the judge gave it and removed. (The lost answer
// cannot be caused on demand, so the container is made here as the
// engine made it, by name, and the judge's cleanup of a failed create
// runs on it.)
func TestDockerRemovesTheContainerOfACreateWhoseAnswerWasLost(t *testing.T) {
	d, err := NewDocker(context.Background(), DockerOptions{Owner: fmt.Sprintf("test-lost-create-%d", os.Getpid())})
	if err != nil {
		t.Fatalf("%v (the tests need a running Docker Engine)", err)
	}
	defer d.Close()
	socketDir, err := os.MkdirTemp("", "lost-create-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(socketDir) })
	cmd := exec.Command("unused")
	cmd.Env = []string{"PLUGIN_UNIX_SOCKET_DIR=" + socketDir}
	run, err := d.Runner(Spec{Binary: buildProbe(t)})(hclog.NewNullLogger(), cmd, socketDir)
	if err != nil {
		t.Fatal(err)
	}
	// Never started: its directory is given up as a failed start's is.
	defer run.(*dockerRunner).dir.abandon()
	name, err := containerName()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("docker", "create", "--name", name, dockerImage).CombinedOutput(); err != nil {
		t.Fatalf("docker create: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	run.(*dockerRunner).removeNamed(name)
	if exec.Command("docker", "inspect", name).Run() == nil {
		t.Error("the container of the lost create is still there")
	}
	// A create that failed outright left nothing: removing is quiet.
	run.(*dockerRunner).removeNamed(name)
}
