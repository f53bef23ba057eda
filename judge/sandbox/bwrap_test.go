package sandbox

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestBwrapIsolation runs a probe under the bubblewrap runner, as go-plugin
// would start a plugin, and checks what it could see and do.
func TestBwrapIsolation(t *testing.T) {
	sb, err := NewBwrap()
	if err != nil {
		t.Fatalf("%v (run `make test`, which installs bubblewrap)", err)
	}
	probe := filepath.Join(t.TempDir(), "probe")
	build := exec.Command("go", "build", "-o", probe, "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	// A listener on the host's loopback: the probe must not reach it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	socketDir, err := os.MkdirTemp("", "probe-sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(socketDir)
	cmd := exec.Command("unused")
	cmd.Env = []string{"PLUGIN_UNIX_SOCKET_DIR=" + socketDir, "HACKARENA_PLUGIN=cookie", "SECRET_TOKEN=leak", "REDIS_URL=redis://x"}
	spec := Spec{Binary: probe, MemoryBytes: 512 << 20}
	run, err := sb.Runner(spec)(hclog.NewNullLogger(), cmd, socketDir)
	if err != nil {
		t.Fatal(err)
	}
	// bwrap runs /plugin without arguments; the probe needs the address.
	br := run.(*bwrapRunner)
	br.cmd.Args = append(br.cmd.Args, ln.Addr().String())
	if err := run.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
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
	if err := run.Wait(context.Background()); err != nil {
		t.Fatalf("probe exited with %v; report so far %v; stderr:\n%s", err, got, errOut)
	}
	_ = run.Kill(context.Background())

	want := map[string]string{
		"uid":                 "65534",
		"tcp_dial_ok":         "false",
		"root_write_ok":       "false",
		"binary_write_ok":     "false",
		"socket_dir_write_ok": "true",
		// bwrap itself sets PWD (to "/") for --chdir.
		"env": "HACKARENA_PLUGIN,PLUGIN_UNIX_SOCKET_DIR,PWD",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// Only the plugin, /proc, /dev and the top of the socket path exist.
	top := strings.Split(strings.TrimPrefix(socketDir, "/"), "/")[0]
	for _, name := range strings.Split(got["root"], ",") {
		switch name {
		case "plugin", "proc", "dev", top:
		default:
			t.Errorf("sandbox root shows %q (all: %s)", name, got["root"])
		}
	}
	if _, err := os.Stat(filepath.Join(socketDir, "probe")); err != nil {
		t.Errorf("the probe's write to the socket dir is not visible to the host: %v", err)
	}
}
