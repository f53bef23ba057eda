package judge

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hackarena/hackarena/gpu"
	"github.com/hackarena/hackarena/judge/sandbox"
)

// LocalOptions configure a judge on a participant's machine.
type LocalOptions struct {
	// Sandbox is what the judge accepts (auto, docker, bwrap), or "none":
	// the plugin as a plain process, which the caller must warn about.
	Sandbox string
	// EngineMemory is the Engine slot's memory (default: what one slot of
	// the platform's default device has, 2 GiB).
	EngineMemory int64
	// WallTime, when non-zero, overrides the challenge's limit.
	WallTime time.Duration
	Log      *slog.Logger
}

// Local is the judge run on a participant's machine by `hackctl eval`:
// the sandbox backend the judge would choose, a socket root made as the
// judge makes it, one Engine slot served by an engine process, and the
// judge's own Evaluator. Close releases them.
type Local struct {
	Evaluator *Evaluator
	cleanup   []func()
}

// NewLocal sets up a local judge. The engine process is this executable's
// `engine` sub-command, as in the platform.
func NewLocal(ctx context.Context, opts LocalOptions) (*Local, error) {
	l := &Local{}
	var sb sandbox.Sandbox
	if opts.Sandbox == "none" {
		sb = sandbox.Unsandboxed()
	} else {
		var err error
		if sb, err = sandbox.New(ctx, opts.Sandbox, sandbox.DockerOptions{Owner: fmt.Sprintf("hackctl-eval-%d", os.Getpid())}); err != nil {
			return nil, fmt.Errorf("%w (or judge without isolation: --sandbox none)", err)
		}
	}
	// A short root, as the platform's: socket paths have a 107-byte
	// limit. Sandboxed plugins (nobody) reach their own run's directory
	// by name and cannot list the others.
	root, err := os.MkdirTemp("", "hackarena-eval-")
	if err != nil {
		return nil, fmt.Errorf("make the socket folder: %w", err)
	}
	l.cleanup = append(l.cleanup, func() { _ = os.RemoveAll(root) })
	if err := os.Chmod(root, 0o711); err != nil {
		l.Close()
		return nil, err
	}
	unmount, _, err := sandbox.MountSocketRoot(root)
	if err != nil {
		l.Close()
		return nil, err
	}
	l.cleanup = append(l.cleanup, func() { _ = unmount() })
	memory := opts.EngineMemory
	if memory <= 0 {
		memory = 2 << 30
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := gpu.NewPool(gpu.PoolConfig{Devices: []gpu.Device{gpu.CPUDevice(memory)}, SlotsPerDevice: 1, Log: log})
	if err != nil {
		l.Close()
		return nil, err
	}
	if err := pool.Start(ctx); err != nil {
		pool.Close()
		l.Close()
		return nil, fmt.Errorf("start the engine process: %w", err)
	}
	l.cleanup = append(l.cleanup, pool.Close)
	l.Evaluator = NewEvaluator(sb, filepath.Join(root, "0"), opts.WallTime, pool)
	return l, nil
}

// SandboxName is the backend the local judge runs plugins in.
func (l *Local) SandboxName() string { return l.Evaluator.Sandbox.Name() }

// Close stops the engine process and removes the socket root.
func (l *Local) Close() {
	for i := len(l.cleanup) - 1; i >= 0; i-- {
		l.cleanup[i]()
	}
	l.cleanup = nil
}
