package onnx

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hackarena/hackarena/sdk/nn"
)

// conformanceCase is one of ONNX's node tests of an op the importer claims.
type conformanceCase struct {
	name, op string
	// applicable: float32 in and out (int64 indices for Gather), one
	// output; the others are counted, not run.
	applicable bool
	passed     bool
	reason     string
}

// TestConformanceOnONNXsNodeTests imports and runs, through the layers the
// Engine compiles (sdk/nn), every node test of every claimed op in ONNX's
// own backend test data, compares the output with ONNX's at the tolerance
// ONNX's backend tests use (rtol 1e-3, atol 1e-7), prints "N of M
// passed", and requires the README's table to be the one this run makes
// (HACKARENA_UPDATE_CONFORMANCE=1 rewrites it).
func TestConformanceOnONNXsNodeTests(t *testing.T) {
	dir := testdata(t)
	models, err := filepath.Glob(filepath.Join(dir, "node", "test_*", "model.onnx"))
	if err != nil || len(models) < 500 {
		t.Fatalf("%d node test models (%v)", len(models), err)
	}
	var cases []conformanceCase
	for _, path := range models {
		c, ok := runNodeTest(t, path)
		if ok {
			cases = append(cases, c)
		}
	}
	table, passed, applicable := conformanceTable(cases)
	t.Logf("ONNX node tests of the claimed ops: %d of %d passed", passed, applicable)
	fmt.Printf("ONNX conformance: %d of %d passed\n", passed, applicable)
	readme := filepath.Join("..", "..", "README.md")
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- onnx-conformance:begin -->\n", "<!-- onnx-conformance:end -->"
	text := string(raw)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q … %q section for the conformance table", begin, end)
	}
	want := text[:i+len(begin)] + table + text[j:]
	if want != text {
		if os.Getenv("HACKARENA_UPDATE_CONFORMANCE") == "1" {
			if err := os.WriteFile(readme, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README.md's conformance table is not this run's (rerun with HACKARENA_UPDATE_CONFORMANCE=1 to rewrite it):\n%s", table)
	}
	// Every applicable test of a claimed op passes, or the table lists it
	// with its reason; a test that used to pass and no longer does changes
	// the table, which fails above.
	for _, c := range cases {
		if c.applicable && !c.passed && c.reason == "" {
			t.Errorf("%s failed without a reason", c.name)
		}
	}
}

// runNodeTest runs one test; ok is false when it is not a test of one
// claimed op (an "_expanded" test, another op).
func runNodeTest(t *testing.T, path string) (conformanceCase, bool) {
	t.Helper()
	name := filepath.Base(filepath.Dir(path))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(raw, DefaultLimits)
	if err != nil || len(m.Graph.Nodes) != 1 || !slices.Contains(Ops, m.Graph.Nodes[0].OpType) || strings.HasSuffix(name, "_expanded") {
		return conformanceCase{}, false
	}
	node := m.Graph.Nodes[0]
	c := conformanceCase{name: name, op: node.OpType}
	set := filepath.Join(filepath.Dir(path), "test_data_set_0")
	var inputs []*Tensor
	for i := range m.Graph.Inputs {
		tensor, err := readTensor(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
		if err != nil {
			c.reason = "its input is not a tensor"
			return c, true
		}
		tensor.Name = m.Graph.Inputs[i].Name
		inputs = append(inputs, tensor)
	}
	want, err := readTensor(filepath.Join(set, "output_0.pb"))
	if err != nil || len(m.Graph.Outputs) != 1 {
		c.reason = "not one tensor output"
		return c, true
	}
	// The running input: the data, or a Gather's indices (the data is then
	// the embedding table, an initializer).
	runtime := 0
	if node.OpType == "Gather" {
		runtime = 1
	}
	if len(inputs) <= runtime || want.DataType != Float {
		return c, true
	}
	for i, in := range inputs {
		wantType := Float
		if i == runtime && node.OpType == "Gather" {
			wantType = Int64
		}
		if i != runtime {
			continue // constants of any type are the op's parameters
		}
		if in.DataType != wantType {
			return c, true
		}
	}
	c.applicable = true
	// The other inputs become initializers, as a model's weights are.
	g := &m.Graph
	var kept []ValueInfo
	for i, in := range inputs {
		if i == runtime {
			kept = append(kept, g.Inputs[i])
			continue
		}
		g.Initializers = append(g.Initializers, *in)
	}
	g.Inputs = kept
	// First as a model is read (batch first); where that fails, as one
	// example. The reason given is the first try's, unless it was only
	// that the test's constants vary along the batch.
	var firstErr, lastErr error
	for _, one := range []bool{false, true} {
		if lastErr != nil && firstErr == nil {
			firstErr = lastErr
		}
		got, gotShape, err := runImported(m, inputs[runtime], one)
		if err != nil {
			lastErr = err
			continue
		}
		wantVals, err := want.FloatValues()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gotShape, dimsOf(want)) && size(gotShape) == len(wantVals) && len(gotShape) != len(want.Dims) {
			// A scalar or squeezed result the Engine keeps as [1] or [n].
			gotShape = dimsOf(want)
		}
		if !slices.Equal(gotShape, dimsOf(want)) {
			lastErr = fmt.Errorf("output shape %v, ONNX's is %v", gotShape, want.Dims)
			continue
		}
		if i, ok := allClose(got, wantVals); !ok {
			lastErr = fmt.Errorf("output %d is %v, ONNX's is %v", i, got[i], wantVals[i])
			continue
		}
		c.passed, c.reason = true, ""
		return c, true
	}
	if firstErr != nil && !strings.Contains(firstErr.Error(), "batch") {
		lastErr = firstErr
	}
	c.reason = reasonOf(lastErr)
	return c, true
}

func readTensor(path string) (*Tensor, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return DecodeTensor(raw, DefaultLimits)
}

func dimsOf(t *Tensor) []int {
	out := make([]int, len(t.Dims))
	for i, d := range t.Dims {
		out[i] = int(d)
	}
	return out
}

// runImported imports m (batch first, or the input as one example) and
// runs its input through sdk/nn, returning the output and its full shape.
func runImported(m *Model, input *Tensor, oneExample bool) ([]float32, []int, error) {
	net, w, err := Import(m, ImportOptions{OneExample: oneExample})
	if err != nil {
		return nil, nil, err
	}
	x, err := input.FloatValues()
	if err != nil {
		return nil, nil, err
	}
	batch := 1
	if !oneExample {
		batch = int(input.Dims[0])
	}
	inf, err := nn.NewInference(net, w, batch)
	if err != nil {
		return nil, nil, err
	}
	defer inf.Close()
	out, err := inf.Run(x)
	if err != nil {
		return nil, nil, err
	}
	shapes, err := net.Shapes()
	if err != nil {
		return nil, nil, err
	}
	shape := shapes[len(shapes)-1]
	if !oneExample {
		shape = append([]int{batch}, shape...)
	}
	return out, shape, nil
}

// allClose is numpy's allclose at ONNX's backend-test tolerance, NaN
// equal to NaN; it returns the first index that differs.
func allClose(got, want []float32) (int, bool) {
	if len(got) != len(want) {
		return 0, false
	}
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(w) && math.IsNaN(g) || g == w {
			continue
		}
		if math.Abs(g-w) > 1e-7+1e-3*math.Abs(w) {
			return i, false
		}
	}
	return 0, true
}

// reasonOf is the table's reason for a test that did not pass: the
// importer's own words, without the node's name.
func reasonOf(err error) string {
	var ie *ImportError
	if errors.As(err, &ie) {
		return strings.TrimSuffix(ie.Msg, ".")
	}
	return err.Error()
}

// conformanceTable is the README's table: per op, passed of applicable,
// and each applicable test that did not pass with its reason.
func conformanceTable(cases []conformanceCase) (string, int, int) {
	type row struct{ passed, applicable, other int }
	rows := map[string]*row{}
	var notPassed []conformanceCase
	passed, applicable := 0, 0
	for _, c := range cases {
		r := rows[c.op]
		if r == nil {
			r = &row{}
			rows[c.op] = r
		}
		switch {
		case !c.applicable:
			r.other++
		case c.passed:
			r.passed++
			r.applicable++
		default:
			r.applicable++
			notPassed = append(notPassed, c)
		}
	}
	var b strings.Builder
	b.WriteString("| op | node tests passed | not run (not float32, or no input) |\n| --- | --- | --- |\n")
	ops := slices.Clone(Ops)
	sort.Strings(ops)
	for _, op := range ops {
		r := rows[op]
		if r == nil {
			fmt.Fprintf(&b, "| %s%s | no node test | |\n", op, onlyOnConstants(op))
			continue
		}
		passed += r.passed
		applicable += r.applicable
		fmt.Fprintf(&b, "| %s%s | %d of %d | %d |\n", op, onlyOnConstants(op), r.passed, r.applicable, r.other)
	}
	fmt.Fprintf(&b, "\n**%d of %d passed.** The tests that do not pass, and why:\n\n", passed, applicable)
	sort.Slice(notPassed, func(i, j int) bool { return notPassed[i].name < notPassed[j].name })
	b.WriteString("| test | reason |\n| --- | --- |\n")
	for _, c := range notPassed {
		fmt.Fprintf(&b, "| `%s` | %s |\n", c.name, strings.ReplaceAll(c.reason, "|", "\\|"))
	}
	return b.String(), passed, applicable
}

func onlyOnConstants(op string) string {
	if op == "Concat" || op == "Constant" || op == "Shape" {
		return " (on constants)"
	}
	return ""
}
