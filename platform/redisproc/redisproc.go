// Package redisproc starts and supervises a redis-server child process, for
// single-machine runs (`hackarena serve` without REDIS_URL) and for tests.
package redisproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotInstalled means redis-server is not on PATH.
var ErrNotInstalled = errors.New("redis-server not found on PATH: install it (Debian: apt-get install redis-server) or set REDIS_URL to an existing Redis")

// maxUnixSocketPath is the kernel's sun_path limit less the terminator.
const maxUnixSocketPath = 107

// Options configure a managed server.
type Options struct {
	// Dir holds the AOF files, the pid file and (when it fits) the socket.
	Dir string
	// AppendFsync is Redis' appendfsync: "always" (default, nothing
	// acknowledged is lost on a crash) or "everysec".
	AppendFsync string
	// Log receives supervision messages; nil discards them.
	Log *slog.Logger
}

// Server is a running redis-server child.
type Server struct {
	bin  string
	args []string
	url  string
	addr string
	dir  string
	log  *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// Start launches redis-server with AOF persistence under opts.Dir and waits
// until it answers PING. A redis-server left running by a previous process
// that was killed (found through the pid file) is stopped first, so its data
// is flushed and the new server owns the directory alone.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.AppendFsync == "" {
		opts.AppendFsync = "always"
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("redis data dir %q: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create redis data dir: %w", err)
	}
	pidFile := filepath.Join(dir, "redis.pid")
	stopStale(pidFile, opts.Log)

	args := []string{
		"--dir", dir,
		"--appendonly", "yes",
		"--appendfsync", opts.AppendFsync,
		"--save", "",
		"--pidfile", pidFile,
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
	var url, addr string
	sock := filepath.Join(dir, "redis.sock")
	if len(sock) <= maxUnixSocketPath {
		args = append(args, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700")
		url = "unix://" + sock
		addr = sock
		_ = os.Remove(sock)
	} else {
		// The socket path would not fit the kernel's limit; fall back to a
		// loopback port.
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		args = append(args, "--bind", "127.0.0.1", "--port", strconv.Itoa(port))
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		url = "redis://" + addr
	}

	s := &Server{bin: bin, args: args, url: url, addr: addr, dir: dir, log: opts.Log}
	if err := s.launch(ctx); err != nil {
		return nil, err
	}
	// Other processes on this machine (`hackarena judge`) find the managed
	// server through this file.
	if err := os.WriteFile(filepath.Join(dir, urlFile), []byte(url+"\n"), 0o600); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("record redis url: %w", err)
	}
	opts.Log.Info("redis started", "url", url, "dir", dir, "pid", s.cmd.Process.Pid)
	return s, nil
}

const urlFile = "redis.url"

// RunningURL is the URL of the managed redis-server that another process
// started under dir, if it is running.
func RunningURL(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "redis.pid"))
	if err != nil {
		return "", fmt.Errorf("no managed redis-server under %s (start `hackarena serve` first, or set REDIS_URL)", dir)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || !isRedis(pid) {
		return "", fmt.Errorf("the managed redis-server under %s is not running (start `hackarena serve` first, or set REDIS_URL)", dir)
	}
	url, err := os.ReadFile(filepath.Join(dir, urlFile))
	if err != nil {
		return "", fmt.Errorf("read managed redis url: %w", err)
	}
	return strings.TrimSpace(string(url)), nil
}

// launch starts the process and waits until it answers.
func (s *Server) launch(ctx context.Context) error {
	cmd := exec.Command(s.bin, s.args...)
	// Pdeathsig makes the kernel stop redis when we die, even by SIGKILL;
	// redis handles SIGTERM by flushing the AOF and exiting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		s.waitErr = cmd.Wait()
		close(done)
	}()
	if err := s.waitReady(ctx); err != nil {
		_ = s.Close()
		return err
	}
	return nil
}

// Supervise restarts redis-server whenever it exits on its own, until ctx
// is cancelled; then it stops it. It gives up, returning an error, after
// five restarts within a minute.
func (s *Server) Supervise(ctx context.Context) error {
	var restarts []time.Time
	for {
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return s.Close()
		case <-done:
		}
		s.log.Error("redis-server exited; restarting it", "err", s.waitErr, "log", filepath.Join(s.dir, "redis.log"))
		now := time.Now()
		restarts = append(restarts, now)
		for len(restarts) > 0 && now.Sub(restarts[0]) > time.Minute {
			restarts = restarts[1:]
		}
		if len(restarts) > 5 {
			return fmt.Errorf("redis-server keeps exiting (%d times within a minute); see %s", len(restarts), filepath.Join(s.dir, "redis.log"))
		}
		if err := s.launch(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("restart redis-server: %w", err)
		}
	}
}

func (s *Server) waitReady(ctx context.Context) error {
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		return err
	}
	client := redis.NewClient(opt)
	defer client.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := client.Ping(pingCtx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.currentDone():
			return fmt.Errorf("redis-server exited during start (%v); see %s", s.waitErr, filepath.Join(s.dir, "redis.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer within 30s: %w", err)
		}
	}
}

// URL is the redis URL clients connect to.
func (s *Server) URL() string { return s.url }

func (s *Server) currentDone() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Close stops the server gracefully (SIGTERM lets it finish the AOF), and
// kills it if it has not exited within 10 seconds.
func (s *Server) Close() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	return nil
}

// stopStale stops a redis-server still running from a previous owner of the
// directory.
func stopStale(pidFile string, log *slog.Logger) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return
	}
	if !isRedis(pid) {
		return
	}
	log.Warn("stopping redis-server left by a previous run", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func isRedis(pid int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	return strings.HasPrefix(strings.TrimSpace(line), "redis-server")
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
