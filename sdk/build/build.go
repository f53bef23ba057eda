// Package build compiles a plugin folder into the static linux/amd64 binary
// the judge accepts.
package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Plugin builds the Go main package in dir into out, statically linked for
// linux/amd64 (CGO_ENABLED=0), stripped and without local paths; env is
// added to the go command's environment (where to fetch modules from).
func Plugin(ctx context.Context, dir, out string, env ...string) error {
	absOut, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("build %s: output path: %w", dir, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", absOut, ".")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), env...), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build plugin in %s: %v\n%s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
