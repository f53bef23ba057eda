// Package sandbox runs untrusted plugin binaries isolated from the host, as
// go-plugin runners.
package sandbox

import (
	"context"
	"fmt"
	"os/exec"
	"sync"

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

// Outcome is how a sandboxed run ended.
type Outcome struct {
	mu        sync.Mutex
	oomKilled bool
	exitCode  int
	known     bool
}

func (o *Outcome) set(oomKilled bool, exitCode int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.oomKilled, o.exitCode, o.known = oomKilled, exitCode, true
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
