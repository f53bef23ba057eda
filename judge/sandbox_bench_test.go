package judge

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hackarena/hackarena/judge/sandbox"
	"github.com/hackarena/hackarena/sdk"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// coldStart starts the plugin in sb and returns the time to a completed
// handshake and Describe, then stops it.
func coldStart(b *testing.B, sb sandbox.Sandbox, socketRoot, binary string) time.Duration {
	b.Helper()
	outcome := &sandbox.Outcome{}
	begin := time.Now()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginSet(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		RunnerFunc:       sb.Runner(sandbox.Spec{Binary: binary, MemoryBytes: 1 << 30, Outcome: outcome}),
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: socketRoot},
		SkipHostEnv:      true,
		StartTimeout:     10 * time.Second,
		Logger:           hclog.NewNullLogger(),
	})
	defer shutdown(client, outcome)
	e := &Evaluator{}
	model, err := e.connect(client)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := model.Describe(context.Background()); err != nil {
		b.Fatal(err)
	}
	return time.Since(begin)
}

// BenchmarkSandbox measures, per iteration and for each backend, the cold
// start of the reference plugin (to a completed handshake) and the whole
// MNIST judging of it, and reports both as ratios to the same plugin
// unsandboxed in the same run (make bench-sandbox).
func BenchmarkSandbox(b *testing.B) {
	ch := loadMNIST(b)
	binary := buildPlugin(b, "mnist-centroid")
	all := map[string]sandbox.Sandbox{"unsandboxed": sandbox.Unsandboxed()}
	for _, name := range []string{"bwrap", "docker"} {
		sb, err := sandbox.New(context.Background(), name, sandbox.DockerOptions{Owner: testOwner()})
		if err != nil {
			b.Fatal(err)
		}
		all[name] = sb
	}
	root, err := os.MkdirTemp("", "bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(root)
	if err := os.Chmod(root, 0o711); err != nil {
		b.Fatal(err)
	}
	start := map[string]time.Duration{}
	judge := map[string]time.Duration{}
	for i := 0; i < b.N; i++ {
		for name, sb := range all {
			start[name] += coldStart(b, sb, root, binary)
			e := &Evaluator{Sandbox: sb, SocketRoot: root, BatchSize: 1000, StartTimeout: 10 * time.Second, WallTime: time.Minute, LogLimit: 64 << 10}
			begin := time.Now()
			if _, _, _, err := e.Evaluate(context.Background(), "team", binary, ch); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			judge[name] += time.Since(begin)
		}
	}
	for _, name := range []string{"bwrap", "docker"} {
		b.ReportMetric(float64(start[name])/float64(start["unsandboxed"]), name+"-start-x")
		b.ReportMetric(float64(judge[name])/float64(judge["unsandboxed"]), name+"-judge-x")
	}
	n := float64(b.N)
	b.ReportMetric(float64(start["unsandboxed"].Milliseconds())/n, "unsandboxed-start-ms")
	b.ReportMetric(float64(judge["unsandboxed"].Milliseconds())/n, "unsandboxed-judge-ms")
}
