// Package chaos breaks the production shape (docker-compose.yml) on
// purpose, one fault at a time, while submissions flow through its load
// balancer, and reports what each fault cost: nothing may be lost, scored
// twice or left behind (make chaos).
package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stack is one compose project of the platform, brought up with `make up`
// and driven with docker and docker-compose.
type Stack struct {
	Repo    string
	Project string
	HostDir string
	Port    int
	Lease   time.Duration
	// Compose is the compose command: docker-compose, or "docker compose".
	Compose []string
}

// NewStack names a project of its own, on a free port, with a host folder
// under /tmp (the judges' socket paths live under it and must stay short).
func NewStack(repo string, lease time.Duration) (*Stack, error) {
	root, err := filepath.Abs(repo)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("/tmp", "hc-chaos-")
	if err != nil {
		return nil, err
	}
	// As make chooses: $COMPOSE when set, else docker-compose when
	// installed, else compose v2's "docker compose".
	compose := strings.Fields(os.Getenv("COMPOSE"))
	if len(compose) == 0 {
		compose = []string{"docker", "compose"}
		if path, err := exec.LookPath("docker-compose"); err == nil {
			compose = []string{path}
		}
	}
	return &Stack{Repo: root, Project: fmt.Sprintf("hackarena-chaos-%d", os.Getpid()), HostDir: dir, Port: port, Lease: lease, Compose: compose}, nil
}

// URL is the load balancer's address.
func (s *Stack) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", s.Port) }

func (s *Stack) makeArgs(target string) []string {
	return []string{"-C", s.Repo, "HACKARENA_HOST_DIR=" + s.HostDir, fmt.Sprintf("HACKARENA_PORT=%d", s.Port), target}
}

func (s *Stack) env() []string {
	secret, _ := os.ReadFile(filepath.Join(s.HostDir, "jwt-secret"))
	return append(os.Environ(), "COMPOSE_PROJECT_NAME="+s.Project, "HACKARENA_JUDGE_LEASE="+s.Lease.String(),
		"HACKARENA_HOST_DIR="+s.HostDir, fmt.Sprintf("HACKARENA_PORT=%d", s.Port), "HACKARENA_JWT_SECRET="+strings.TrimSpace(string(secret)))
}

// Up runs `make up` as the README says, in this project.
func (s *Stack) Up(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "make", s.makeArgs("up")...)
	cmd.Env = s.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make up: %v\n%s", err, out)
	}
	return nil
}

// Down runs `make down` and removes the host folder.
func (s *Stack) Down() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", s.makeArgs("down")...)
	cmd.Env = s.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("make down: %v\n%s", err, out)
	}
	return os.RemoveAll(s.HostDir)
}

// ComposeRun runs a compose command in this project.
func (s *Stack) ComposeRun(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, s.Compose[0], append(s.Compose[1:], args...)...)
	cmd.Dir, cmd.Env = s.Repo, s.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", strings.Join(s.Compose, " "), strings.Join(args, " "), err, out)
	}
	return nil
}

// Docker runs a docker command and returns its output.
func Docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Containers lists the full ids of the service's containers, running
// ones only unless all.
func (s *Stack) Containers(ctx context.Context, service string, all bool) ([]string, error) {
	args := []string{"ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=" + s.Project, "--filter", "label=com.docker.compose.service=" + service}
	if all {
		args = append(args, "-a")
	}
	out, err := Docker(ctx, args...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// Network is the project's default network, which every service is on.
func (s *Stack) Network() string { return s.Project + "_default" }

// IP is a container's address on the project's network, reachable from
// this host.
func (s *Stack) IP(ctx context.Context, id string) (string, error) {
	ip, err := Docker(ctx, "inspect", "-f", `{{with index .NetworkSettings.Networks "`+s.Network()+`"}}{{.IPAddress}}{{end}}`, id)
	if err != nil {
		return "", err
	}
	if ip == "" {
		return "", fmt.Errorf("container %.12s has no address on %s", id, s.Network())
	}
	return ip, nil
}

// Redis is a client of the project's Redis that finds the container's
// address again at every connection (a restarted Redis may get another).
func (s *Stack) Redis() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: "redis:6379",
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			ids, err := s.Containers(ctx, "redis", false)
			if err != nil || len(ids) == 0 {
				return nil, fmt.Errorf("the project's redis is not running (%v)", err)
			}
			ip, err := s.IP(ctx, ids[0])
			if err != nil {
				return nil, err
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", net.JoinHostPort(ip, "6379"))
		},
	})
}

// sandboxLabel is the label every judge puts on its sandbox containers,
// valued with its owner: <hostname>-judge-0, the hostname being the first
// 12 characters of the judge's container id.
const sandboxLabel = "io.hackarena.sandbox"

// Sandboxes lists the sandbox containers of the given judges, running or
// not.
func Sandboxes(ctx context.Context, judges []string) ([]string, error) {
	var ids []string
	for _, j := range judges {
		out, err := Docker(ctx, "ps", "-aq", "--filter", "label="+sandboxLabel+"="+short(j)+"-judge-0")
		if err != nil {
			return nil, err
		}
		ids = append(ids, strings.Fields(out)...)
	}
	return ids, nil
}

// short is a container id as its hostname and a judge's worker names use
// it.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
