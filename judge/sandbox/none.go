package sandbox

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// Unsandboxed runs the plugin as a plain child process, with no isolation
// and no limit but the wall time: the benchmarks' baseline, and `hackctl
// eval --sandbox none` on a machine with neither Docker nor bubblewrap
// (which warns). The judge never offers it: New does not know it.
func Unsandboxed() Sandbox { return unsandboxed{} }

type unsandboxed struct{}

func (unsandboxed) Name() string { return "unsandboxed" }

func (unsandboxed) Runner(spec Spec) RunnerFunc {
	return func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
		c := exec.Command(spec.Binary)
		c.Env = cmd.Env
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stdout, err := c.StdoutPipe()
		if err != nil {
			return nil, err
		}
		stderr, err := c.StderrPipe()
		if err != nil {
			return nil, err
		}
		return &plainRunner{cmd: c, stdout: stdout, stderr: stderr, outcome: spec.Outcome}, nil
	}
}

type plainRunner struct {
	cmd            *exec.Cmd
	stdout, stderr io.ReadCloser
	outcome        *Outcome
}

func (r *plainRunner) Start(context.Context) error { return r.cmd.Start() }
func (r *plainRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.outcome.setPeakFrom(r.cmd.ProcessState)
	return err
}
func (r *plainRunner) Kill(context.Context) error {
	if r.cmd.Process != nil {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	}
	return nil
}
func (r *plainRunner) Stdout() io.ReadCloser           { return r.stdout }
func (r *plainRunner) Stderr() io.ReadCloser           { return r.stderr }
func (r *plainRunner) Name() string                    { return "plain" }
func (r *plainRunner) ID() string                      { return fmt.Sprint(r.cmd.Process.Pid) }
func (r *plainRunner) Diagnose(context.Context) string { return "" }
func (r *plainRunner) PluginToHost(n, a string) (string, string, error) {
	return n, a, nil
}
func (r *plainRunner) HostToPlugin(n, a string) (string, string, error) {
	return n, a, nil
}
