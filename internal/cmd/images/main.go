// Command images builds Hackarena's container images on this machine, with
// no registry (make images): the platform, Redis and the load balancer,
// each tagged with the build's version and "local".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/docker/docker/client"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/internal/images"
)

func main() {
	version := flag.String("version", "dev", "the tag every image gets besides local (make images: git describe)")
	repo := flag.String("repo", ".", "the repository root")
	flag.Parse()
	if err := run(context.Background(), *version, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, version, repo string) error {
	root, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	bin := filepath.Join(root, "bin", "images")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	// Static and reproducible: the same source makes the same bytes, so an
	// unchanged rebuild finds its image and imports nothing.
	for _, pkg := range []struct{ out, pkg string }{{"hackarena", "./platform/cmd/hackarena"}, {"hackctl", "./sdk/cmd/hackctl"}} {
		// The judge names its version in every receipt it makes possible.
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -X github.com/hackarena/hackarena/judge.Version="+version, "-o", filepath.Join(bin, pkg.out), pkg.pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg.out, err, out)
		}
	}
	mnist, err := challenges.LocateMNIST(ctx, os.Getenv("HACKARENA_MNIST_DIR"))
	if err != nil {
		return err
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx); err != nil {
		return fmt.Errorf("no Docker Engine answers (%w): start it, or set DOCKER_HOST", err)
	}
	for _, spec := range []*images.Spec{
		images.Platform(filepath.Join(bin, "hackarena"), filepath.Join(bin, "hackctl"), mnist, root),
		images.Redis(),
		images.LoadBalancer(),
	} {
		start := time.Now()
		b, err := images.Build(ctx, cli, spec, version)
		if err != nil {
			return err
		}
		what := "built"
		if b.Skipped {
			what = "unchanged"
		}
		fmt.Printf("%-22s %-9s %6.1f MiB  content %s  %v  (%.1fs)\n", b.Tags[0], what, float64(b.Bytes)/(1<<20), b.Digest, b.Tags[1], time.Since(start).Seconds())
	}
	return nil
}
