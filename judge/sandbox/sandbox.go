// Package sandbox runs untrusted plugin binaries isolated from the host, as
// go-plugin runners.
package sandbox

import (
	"fmt"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// Spec says what one plugin run may use.
type Spec struct {
	// Binary is the host path of the plugin executable.
	Binary string
	// MemoryBytes caps the plugin's address space (0: no cap).
	MemoryBytes int64
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

// New picks a backend by name: "bwrap", or "auto" (the best available).
// With none available it says how to fix that instead of running plugins
// unsandboxed.
func New(name string) (Sandbox, error) {
	switch name {
	case "", "auto", "bwrap":
		b, err := NewBwrap()
		if err != nil {
			return nil, fmt.Errorf("sandbox %q: %w", name, err)
		}
		return b, nil
	case "docker":
		return nil, fmt.Errorf("sandbox %q is not built yet: use HACKARENA_SANDBOX=bwrap", name)
	}
	return nil, fmt.Errorf("unknown sandbox %q: HACKARENA_SANDBOX must be auto, bwrap or docker", name)
}
