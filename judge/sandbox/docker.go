package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-units"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Docker image and labels of the sandbox.
const (
	// dockerImage is made locally from nothing: there is no registry.
	dockerImage = "hackarena-sandbox:v2"
	// dockerLabel marks every container a judge starts, so a restarted
	// judge can remove what a crashed one left.
	dockerLabel = "io.hackarena.sandbox"
	// containerSocketDir is where the run's socket directory appears
	// inside the container.
	containerSocketDir = "/s"
)

// DockerOptions tune the Docker backend.
type DockerOptions struct {
	// Runtime is the OCI runtime, e.g. "runsc" for gVisor; empty uses the
	// engine's default.
	Runtime string
	// CPUs is the CPU quota of one run, in CPUs (default 1).
	CPUs float64
	// Pids caps the processes and threads of one run (default 256).
	Pids int64
	// Owner names this judge process in its containers' label, so a
	// restarted judge removes its own leftovers and not the containers
	// of another judge on the same engine (default "judge").
	Owner string
}

// Docker runs each plugin in a fresh container of an empty image: no
// network, read-only root, no capabilities, no new privileges, uid 65534,
// memory (swap included), CPU, pids and file-size limits.
type Docker struct {
	cli  *client.Client
	opts DockerOptions
	// seccomp is the profile of every container, as JSON.
	seccomp string
}

var _ Sandbox = (*Docker)(nil)

// NewDocker connects to the engine (DOCKER_HOST or the default socket),
// makes the sandbox image if it is missing, and removes containers a
// previous judge left behind.
func NewDocker(ctx context.Context, opts DockerOptions) (*Docker, error) {
	if opts.CPUs <= 0 {
		opts.CPUs = 1
	}
	if opts.Pids <= 0 {
		opts.Pids = 256
	}
	if opts.Owner == "" {
		opts.Owner = "judge"
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine does not answer (%v): start it, or set DOCKER_HOST, or use HACKARENA_SANDBOX=bwrap", err)
	}
	profile, err := dockerSeccompProfile()
	if err != nil {
		cli.Close()
		return nil, err
	}
	d := &Docker{cli: cli, opts: opts, seccomp: profile}
	if err := d.ensureImage(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	if err := d.RemoveLeftovers(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	return d, nil
}

// Name implements Sandbox.
func (d *Docker) Name() string { return "docker" }

// Close releases the engine connection.
func (d *Docker) Close() error { return d.cli.Close() }

// ensureImage imports the sandbox image from a tar made here: mount points
// for the plugin, its socket directory and /tmp, and a passwd entry for
// the unprivileged user. Nothing in it can run.
func (d *Docker) ensureImage(ctx context.Context) error {
	if _, err := d.cli.ImageInspect(ctx, dockerImage); err == nil {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Docker copies the image's /tmp (mode included) into the tmpfs it
	// mounts there, so the directory's mode is what the plugin gets.
	for dir, mode := range map[string]int64{"s/": 0o755, "tmp/": 0o1777, "etc/": 0o755} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: mode}); err != nil {
			return err
		}
	}
	files := map[string]string{
		"plugin":     "",
		"etc/passwd": "nobody:x:65534:65534:nobody:/:/nonexistent\n",
		"etc/group":  "nogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}); err != nil {
			return err
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	rc, err := d.cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, dockerImage,
		image.ImportOptions{Changes: []string{"LABEL " + dockerLabel + "=image", "USER 65534:65534", `CMD ["/plugin"]`}})
	if err != nil {
		return fmt.Errorf("create the sandbox image %s: %w", dockerImage, err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("create the sandbox image %s: %w", dockerImage, err)
	}
	return nil
}

// RemoveLeftovers removes every sandbox container of this owner, running
// or not. Only call it when none of this owner's runs is in progress.
func (d *Docker) RemoveLeftovers(ctx context.Context) error {
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", dockerLabel+"="+d.opts.Owner))})
	if err != nil {
		return fmt.Errorf("list leftover sandbox containers: %w", err)
	}
	for _, c := range list {
		if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove leftover sandbox container %s: %w", c.ID[:12], err)
		}
	}
	return nil
}

// Runner implements Sandbox.
func (d *Docker) Runner(spec Spec) RunnerFunc {
	return func(logger hclog.Logger, cmd *exec.Cmd, hostSocketDir string) (runner.Runner, error) {
		// The plugin (uid 65534) creates its socket in the directory:
		// share it through the group, not with everyone.
		dir, err := mountRunDir(hostSocketDir)
		if err != nil {
			return nil, err
		}
		if !dir.mounted {
			if err := shareSocketDir(hostSocketDir); err != nil {
				return nil, setupError("share the socket directory", err)
			}
		}
		env := []string{}
		for _, kv := range cmd.Env {
			if !envAllowed(kv) {
				continue
			}
			if strings.HasPrefix(kv, "PLUGIN_UNIX_SOCKET_DIR=") {
				kv = "PLUGIN_UNIX_SOCKET_DIR=" + containerSocketDir
			}
			env = append(env, kv)
		}
		r := &dockerRunner{d: d, spec: spec, env: env, socketDir: hostSocketDir, dir: dir, logger: logger,
			stdout: newOutputPipe(), stderr: newOutputPipe(), done: make(chan struct{})}
		spec.Outcome.setKill(func() { _ = r.Kill(context.Background()) })
		return r, nil
	}
}

// nobodyID is the uid and gid the plugin runs as.
const nobodyID = 65534

type dockerRunner struct {
	d         *Docker
	spec      Spec
	env       []string
	socketDir string
	dir       *runDir
	logger    hclog.Logger

	id string
	// stdout and stderr are what go-plugin reads; the container's output
	// is copied into them without ever blocking, so a plugin's output
	// cannot stall the copy, and with it Wait and Kill.
	stdout, stderr *outputPipe

	// done closes when the container has stopped and its output is
	// closed; waitErr is how it ended.
	done    chan struct{}
	waitErr error

	killOnce sync.Once
	cleanup  sync.Once
	mu       sync.Mutex
	killed   bool
}

var _ runner.Runner = (*dockerRunner)(nil)

// pluginLogCap bounds what the engine keeps of a container's output; the
// judge reads the output live and caps it itself.
const pluginLogCap = "1m"

// Bounds of the container's /tmp: bytes (charged to its memory) and
// inodes (kernel memory of empty files, which no other limit counts).
const (
	dockerTmpBytes  = 16 << 20
	dockerTmpInodes = 4096
)

func (r *dockerRunner) Start(ctx context.Context) error {
	if err := r.start(ctx); err != nil {
		r.dir.abandon()
		return err
	}
	return nil
}

func (r *dockerRunner) start(ctx context.Context) error {
	mem := r.spec.MemoryBytes
	fsize := int64(64 << 20)
	hc := &container.HostConfig{
		NetworkMode:    "none",
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges", "seccomp=" + r.d.seccomp},
		IpcMode:        "none",
		Runtime:        r.d.opts.Runtime,
		Tmpfs:          map[string]string{"/tmp": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,nr_inodes=%d", dockerTmpBytes, dockerTmpInodes)},
		LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": pluginLogCap, "max-file": "1"}},
		Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: r.spec.Binary, Target: pluginPath, ReadOnly: true},
			{Type: mount.TypeBind, Source: r.socketDir, Target: containerSocketDir},
		},
		Resources: container.Resources{
			NanoCPUs:  int64(r.d.opts.CPUs * 1e9),
			PidsLimit: &r.d.opts.Pids,
			Ulimits: []*units.Ulimit{
				{Name: "nofile", Soft: 256, Hard: 256},
				{Name: "fsize", Soft: fsize, Hard: fsize},
				{Name: "core", Soft: 0, Hard: 0},
			},
		},
	}
	if mem > 0 {
		hc.Resources.Memory = mem
		hc.Resources.MemorySwap = mem // no swap beyond the memory limit
	}
	cfg := &container.Config{
		Image:           dockerImage,
		Cmd:             []string{pluginPath},
		Env:             r.env,
		User:            fmt.Sprintf("%d:%d", nobodyID, nobodyID),
		WorkingDir:      "/",
		Labels:          map[string]string{dockerLabel: r.d.opts.Owner},
		NetworkDisabled: true,
		AttachStdout:    true,
		AttachStderr:    true,
	}
	// A name of its own: a create whose answer never came back (the judge
	// frozen or its deadline passed while the engine made the container)
	// still leaves a container, which only its name can find.
	name, err := containerName()
	if err != nil {
		return setupError("start docker sandbox: name the container", err)
	}
	created, err := r.d.cli.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		r.removeNamed(name)
		return setupError("start docker sandbox: create container", err)
	}
	r.id = created.ID
	// Attach before start: the handshake line is the first thing the
	// plugin prints.
	att, err := r.d.cli.ContainerAttach(ctx, r.id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		r.remove()
		return setupError("start docker sandbox: attach", err)
	}
	copyDone := make(chan struct{})
	go func() {
		defer close(copyDone)
		_, _ = stdcopy.StdCopy(r.stdout, r.stderr, att.Reader)
	}()
	if err := r.d.cli.ContainerStart(ctx, r.id, container.StartOptions{}); err != nil {
		att.Close()
		<-copyDone
		r.remove()
		return setupError("start docker sandbox", err)
	}
	r.spec.Outcome.setSampler(r.samplePeak)
	go r.supervise(att.Close, copyDone)
	return nil
}

// samplePeak reads the container's memory peak from its cgroup: from the
// cgroup's own file when the judge can see it (a judge on the host), else
// through the engine (a judge in a container cannot see its sibling's
// cgroup). The engine's answer waited for its stats collector's next
// tick, up to a second: 750 ms of judging mnist-mlp's 830.
// cgroup v1 keeps the peak, v2's stats only the current use.
func (r *dockerRunner) samplePeak() int64 {
	if peak, ok := cgroupPeak(r.id); ok {
		return peak
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := r.d.cli.ContainerStatsOneShot(ctx, r.id)
	if err != nil {
		return 0
	}
	defer stats.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(io.LimitReader(stats.Body, 1<<20)).Decode(&s); err != nil {
		return 0
	}
	return int64(max(s.MemoryStats.MaxUsage, s.MemoryStats.Usage))
}

// cgroupPeakFiles are where a container's memory peak is on the host, for
// the cgroupfs and systemd drivers on cgroup v1 and v2 (memory.peak is
// Linux 5.19 and later).
var cgroupPeakFiles = []string{
	"/sys/fs/cgroup/memory/docker/%s/memory.max_usage_in_bytes",
	"/sys/fs/cgroup/memory/system.slice/docker-%s.scope/memory.max_usage_in_bytes",
	"/sys/fs/cgroup/docker/%s/memory.peak",
	"/sys/fs/cgroup/system.slice/docker-%s.scope/memory.peak",
}

// cgroupPeak reads container id's memory peak from its cgroup, if this
// process can see it.
func cgroupPeak(id string) (int64, bool) {
	if id == "" || strings.ContainsAny(id, "/.") {
		return 0, false
	}
	for _, f := range cgroupPeakFiles {
		data, err := os.ReadFile(fmt.Sprintf(f, id))
		if err != nil {
			continue
		}
		if peak, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil && peak > 0 {
			return peak, true
		}
	}
	return 0, false
}

// supervise waits for the container to stop, gives its output exitGrace
// to arrive, then closes the output and records how the run ended (the
// engine knows whether the kernel killed it for memory).
func (r *dockerRunner) supervise(closeAttach func(), copyDone <-chan struct{}) {
	defer close(r.done)
	waitC, errC := r.d.cli.ContainerWait(context.Background(), r.id, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		// The engine lost the container, or an operator removed it: the
		// run was not the plugin's to lose.
		r.waitErr = setupError("docker sandbox: wait for the container", err)
		r.spec.Outcome.setHostFailure(r.waitErr)
	}
	select {
	case <-copyDone:
	case <-time.After(exitGrace):
	}
	closeAttach()
	<-copyDone
	r.stdout.CloseWrite()
	r.stderr.CloseWrite()
	if r.waitErr != nil {
		return
	}
	inspectCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := r.d.cli.ContainerInspect(inspectCtx, r.id)
	if err != nil {
		r.waitErr = setupError("docker sandbox: inspect the stopped container", err)
		r.spec.Outcome.setHostFailure(r.waitErr)
		return
	}
	if info.State != nil {
		r.mu.Lock()
		killed := r.killed
		r.mu.Unlock()
		if !killed && !info.State.OOMKilled {
			r.spec.Outcome.setExited(info.State.ExitCode)
		}
		if info.State.OOMKilled {
			r.spec.Outcome.setOOMKilled()
			// The cgroup went with the container; it was killed at its
			// limit, so that was its peak.
			r.spec.Outcome.setPeak(r.spec.MemoryBytes)
			r.waitErr = errors.New("sandbox container was killed for exceeding its memory limit")
		} else if info.State.ExitCode != 0 {
			r.waitErr = fmt.Errorf("plugin exited with status %d", info.State.ExitCode)
		}
	}
}

// Wait waits for the run to end, then removes its container and releases
// its directory (go-plugin then removes it).
func (r *dockerRunner) Wait(ctx context.Context) error {
	select {
	case <-r.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.cleanup.Do(func() {
		if gone := r.remove(); gone != nil {
			// Someone else removed the container (an operator, a judge
			// clearing leftovers of the same owner): the run was lost to
			// the platform, however it looked when it stopped.
			r.spec.Outcome.setHostFailure(setupError("docker sandbox: the container was removed during the run", gone))
		}
		r.dir.release()
	})
	return r.waitErr
}

// Kill stops the container at once; Wait then removes it.
func (r *dockerRunner) Kill(ctx context.Context) error {
	r.killOnce.Do(func() {
		if r.id == "" {
			return
		}
		r.mu.Lock()
		r.killed = true
		r.mu.Unlock()
		killCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.d.cli.ContainerKill(killCtx, r.id, "KILL"); err != nil && !cerrdefs.IsNotFound(err) && !strings.Contains(err.Error(), "is not running") {
			r.logger.Warn("kill sandbox container", "container", r.id, "err", err)
		}
	})
	return nil
}

// remove removes the container; it returns the engine's answer when the
// container was already gone or being removed by someone else.
// containerName is a fresh sandbox container name.
func containerName() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "hackarena-sandbox-" + hex.EncodeToString(b[:]), nil
}

// removeNamed removes the container a failed create may have made after
// all; there is none when the create really failed.
func (r *dockerRunner) removeNamed(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.d.cli.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		r.logger.Warn("remove the sandbox container of a failed create", "container", name, "err", err)
	}
}

func (r *dockerRunner) remove() (removedElsewhere error) {
	if r.id == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.d.cli.ContainerRemove(ctx, r.id, container.RemoveOptions{Force: true})
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsNotFound(err), strings.Contains(err.Error(), "already in progress"):
		return err
	}
	r.logger.Warn("remove sandbox container", "container", r.id, "err", err)
	return nil
}

func (r *dockerRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *dockerRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *dockerRunner) Name() string          { return "docker:" + pluginPath }
func (r *dockerRunner) ID() string            { return r.id }

func (r *dockerRunner) Diagnose(context.Context) string {
	return "the plugin did not complete the go-plugin handshake: it must be a static linux/amd64 binary whose main calls sdk.Serve (build it with `hackctl build`)"
}

// PluginToHost maps the socket the plugin created in the container's
// socket directory to the same file on the host, accepting nothing else.
func (r *dockerRunner) PluginToHost(network, addr string) (string, string, error) {
	if network != "unix" {
		return "", "", &AddressError{network, addr, "is not a unix socket"}
	}
	rel, ok := strings.CutPrefix(addr, containerSocketDir+"/")
	if !ok || rel == "" || strings.Contains(rel, "/") || strings.Contains(rel, "..") {
		return "", "", &AddressError{network, addr, "is outside its socket directory"}
	}
	return checkSocket(network, filepath.Join(r.socketDir, rel))
}

// HostToPlugin hands a socket the judge opened in the run's directory to
// the container's user and maps it to the path the plugin sees.
func (r *dockerRunner) HostToPlugin(network, addr string) (string, string, error) {
	if err := giveSocket(network, addr, r.socketDir, nobodyID); err != nil {
		return "", "", err
	}
	if network == "unix" {
		if rel, ok := strings.CutPrefix(addr, r.socketDir+"/"); ok {
			return network, containerSocketDir + "/" + rel, nil
		}
	}
	return network, addr, nil
}

// dockerSeccompProfile is Docker's default profile (a whitelist that
// already refuses keyctl, mount, unshare, AF_VSOCK and AF_ALG sockets)
// without ptrace, process_vm_* and io_uring, which it allows and a
// plugin has no use for.
func dockerSeccompProfile() (string, error) {
	profile := seccomp.DefaultProfile()
	denied := map[string]bool{"ptrace": true, "process_vm_readv": true, "process_vm_writev": true,
		"io_uring_setup": true, "io_uring_enter": true, "io_uring_register": true}
	kept := profile.Syscalls[:0]
	for _, sc := range profile.Syscalls {
		if sc.Action == specs.ActAllow {
			sc.Names = slices.DeleteFunc(sc.Names, func(n string) bool { return denied[n] })
			if len(sc.Names) == 0 {
				continue
			}
		}
		kept = append(kept, sc)
	}
	profile.Syscalls = kept
	raw, err := json.Marshal(profile)
	if err != nil {
		return "", fmt.Errorf("encode the sandbox seccomp profile: %w", err)
	}
	return string(raw), nil
}
