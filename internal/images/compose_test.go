package images_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const repoRoot = "../.."

// need fails the test when a tool the CI machine has is missing.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if !ok {
		t.Fatalf("the compose test needs %s (make deps installs what it can; the CI machine has Docker and runs as root)", what)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestMakeUpServesThroughTheLoadBalancer runs `make up` as the README says,
// in a compose project of its own: the page and the API answer through
// HAProxy, a participant registers and submits with hackctl, a judge
// scores the plugin in a sibling sandbox container, the submission's
// events stream through the load balancer, and `make down` leaves no
// container, sandbox or mount behind.
func TestMakeUpServesThroughTheLoadBalancer(t *testing.T) {
	_, dockerErr := exec.LookPath("docker")
	need(t, "docker", dockerErr == nil)
	need(t, "root (make up bind-mounts the shared folder)", os.Geteuid() == 0)
	project := fmt.Sprintf("hackarena-test-%d", os.Getpid())
	port := freePort(t)
	// Short: the judges' socket paths live under it.
	hostDir, err := os.MkdirTemp("/tmp", "hc-")
	if err != nil {
		t.Fatal(err)
	}
	makeArgs := []string{"-C", repoRoot, "HACKARENA_HOST_DIR=" + hostDir, fmt.Sprintf("HACKARENA_PORT=%d", port)}
	env := append(os.Environ(), "COMPOSE_PROJECT_NAME="+project)
	runMake := func(target string) (string, error) {
		cmd := exec.Command("make", append(makeArgs, target)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := runMake("down"); err != nil {
			t.Errorf("make down: %v\n%s", err, out)
		}
		os.RemoveAll(hostDir)
	})
	if out, err := runMake("up"); err != nil {
		t.Fatalf("make up: %v\n%s", err, out)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, path := range []string{"/", "/api/v1/challenges", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s through the load balancer: %d", path, resp.StatusCode)
		}
	}
	// Events through the load balancer, while the submission is judged.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/events", nil)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	scored := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"status":"scored"`) {
				scored <- sc.Text()
				return
			}
		}
	}()
	hackctl := filepath.Join(t.TempDir(), "hackctl")
	build := exec.Command("go", "build", "-o", hackctl, "./sdk/cmd/hackctl")
	build.Dir, build.Env = repoRoot, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build hackctl: %v\n%s", err, out)
	}
	plugin, err := filepath.Abs(filepath.Join(repoRoot, "plugins", "mnist-centroid"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.json")
	hack := func(args ...string) string {
		cmd := exec.CommandContext(ctx, hackctl, append([]string{"--server", base}, args...)...)
		cmd.Env = append(os.Environ(), "HACKARENA_CONFIG="+cfg, "HACKARENA_PASSWORD=compose-password")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("hackctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	hack("register", "--name", "compose team")
	if out := hack("submit", "mnist", plugin, "--wait"); !strings.Contains(out, "status scored") || !strings.Contains(out, "accuracy=0.8214") {
		t.Fatalf("hackctl submit through the load balancer:\n%s", out)
	}
	select {
	case <-scored:
	case <-time.After(30 * time.Second):
		t.Fatal("no scored event came through the load balancer")
	}
	if out := hack("leaderboard", "mnist"); !strings.Contains(out, "compose team") {
		t.Fatalf("leaderboard:\n%s", out)
	}
	cancel()
	judges, err := exec.Command("docker", "ps", "-q", "--filter", "label=com.docker.compose.project="+project, "--filter", "label=com.docker.compose.service=judge").Output()
	if err != nil || len(strings.Fields(string(judges))) != 3 {
		// Why a judge is gone: its own last words.
		all, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+project, "--filter", "label=com.docker.compose.service=judge").Output()
		for _, id := range strings.Fields(string(all)) {
			state, _ := exec.Command("docker", "inspect", "-f", "{{.State.Status}} exit {{.State.ExitCode}} oom {{.State.OOMKilled}}", id).CombinedOutput()
			logs, _ := exec.Command("docker", "logs", "--tail", "20", id).CombinedOutput()
			t.Logf("judge %s: %s\n%s", id, state, logs)
		}
		t.Fatalf("the project's judges: %q %v, want 3", judges, err)
	}
	if out, err := runMake("down"); err != nil {
		t.Fatalf("make down: %v\n%s", err, out)
	}
	left, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+project).Output()
	if len(strings.TrimSpace(string(left))) > 0 {
		t.Fatalf("make down left containers: %q", left)
	}
	// Only this project's judges' sandboxes: other runs on this Docker
	// Engine (a judge on the host, another test) keep theirs.
	for _, j := range strings.Fields(string(judges)) {
		sandboxes, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=io.hackarena.sandbox="+j[:12]+"-judge-0").Output()
		if len(strings.TrimSpace(string(sandboxes))) > 0 {
			t.Fatalf("make down left judge %s's sandboxes: %q", j[:12], sandboxes)
		}
	}
	if exec.Command("mountpoint", "-q", hostDir).Run() == nil {
		t.Fatalf("make down left %s mounted", hostDir)
	}
}
