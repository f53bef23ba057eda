package onnx

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/sdk/network"
)

func floatsTensor(name string, dims []int64, vals []float32) Tensor {
	return Tensor{Name: name, Dims: dims, DataType: Float, Floats: vals}
}

func intsAttr(name string, v ...int64) Attribute {
	return Attribute{Name: name, Type: AttrInts, Ints: v}
}
func intAttr(name string, v int64) Attribute { return Attribute{Name: name, Type: AttrInt, I: v} }

// mlp is what torch.onnx.export writes for Flatten → Linear → ReLU →
// Linear, with a dynamic batch.
func mlp() *Model {
	w1 := make([]float32, 6*4)
	for i := range w1 {
		w1[i] = float32(i%5) / 10
	}
	return &Model{Opsets: map[string]int64{"": 17}, Graph: Graph{
		Nodes: []Node{
			{Name: "/Flatten", OpType: "Flatten", Inputs: []string{"input"}, Outputs: []string{"f"}, Attributes: []Attribute{intAttr("axis", 1)}},
			{Name: "/fc1/Gemm", OpType: "Gemm", Inputs: []string{"f", "w1", "b1"}, Outputs: []string{"g"}, Attributes: []Attribute{intAttr("transB", 1)}},
			{Name: "/Relu", OpType: "Relu", Inputs: []string{"g"}, Outputs: []string{"r"}},
			{Name: "/fc2/Gemm", OpType: "Gemm", Inputs: []string{"r", "w2", "b2"}, Outputs: []string{"output"}, Attributes: []Attribute{intAttr("transB", 1)}},
		},
		Initializers: []Tensor{
			floatsTensor("w1", []int64{4, 6}, w1), floatsTensor("b1", []int64{4}, []float32{1, 2, 3, 4}),
			floatsTensor("w2", []int64{2, 4}, []float32{1, 0, 0, 1, 0, 1, 1, 0}), floatsTensor("b2", []int64{2}, []float32{0, 0}),
		},
		Inputs:  []ValueInfo{{Name: "input", ElemType: Float, Shape: []Dim{{Param: "batch", Value: -1}, {Value: 2}, {Value: 3}}}},
		Outputs: []ValueInfo{{Name: "output", ElemType: Float}},
	}}
}

func TestImportMapsAnExportedMLPOntoTheEnginesLayers(t *testing.T) {
	m, err := Decode(Encode(mlp()), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	net, w, err := Import(m, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := net.Encode()
	want := `{"input":[2,3],"layers":[{"kind":"Flatten","name":"Flatten"},{"kind":"Dense","name":"fc1/Gemm","units":4,"activation":"relu"},{"kind":"Dense","name":"fc2/Gemm","units":2}]}`
	if string(js) != want {
		t.Fatalf("imported\n%s\nwant\n%s", js, want)
	}
	// A Dropout whose mask nothing reads imports as nothing.
	withMask := mlp()
	withMask.Graph.Nodes[2].Outputs = []string{"r", "unused_mask"}
	withMask.Graph.Nodes[2].OpType = "Dropout"
	if n2, _, err := Import(withMask, ImportOptions{}); err != nil || len(n2.Layers) != 3 || n2.Layers[1].Activation != "" {
		t.Fatalf("an unused second output: %v %+v", err, n2)
	}
	// transB: the kernel is B transposed, [in, out].
	if k := w["fc1/Gemm.kernel"]; k.Shape[0] != 6 || k.Shape[1] != 4 || k.Data[1*4+2] != float32((2*6+1)%5)/10 {
		t.Fatalf("kernel %v %v", k.Shape, k.Data[:8])
	}
}

// hostileModels are files a participant (or an attacker) may send: each
// must be refused with a typed error, quickly, without a panic.
func hostileModels() map[string]struct {
	model *Model
	want  string
} {
	cases := map[string]struct {
		model *Model
		want  string
	}{}
	add := func(name, want string, edit func(m *Model)) {
		m := mlp()
		edit(m)
		cases[name] = struct {
			model *Model
			want  string
		}{m, want}
	}
	add("cycle", "used before any node makes it", func(m *Model) {
		m.Graph.Nodes[0].Inputs = []string{"output"}
	})
	add("huge input", "export with a fixed example shape", func(m *Model) {
		m.Graph.Inputs[0].Shape[1].Value = 1 << 40
	})
	add("huge example", "more values than the engine allows", func(m *Model) {
		m.Graph.Inputs[0].Shape = []Dim{{Param: "n", Value: -1}, {Value: 1 << 20}, {Value: 1 << 20}}
	})
	add("unsupported op", `node "/Relu" (LeakyRelu, opset 17): LeakyRelu is not an operator the Engine has`, func(m *Model) {
		m.Graph.Nodes[2].OpType = "LeakyRelu"
	})
	add("second output used", `its output "mask" is used`, func(m *Model) {
		m.Graph.Nodes = append(m.Graph.Nodes, Node{Name: "/drop", OpType: "Dropout", Inputs: []string{"output"}, Outputs: []string{"d", "mask"}})
		m.Graph.Outputs[0].Name = "mask"
	})
	add("folding bomb", "computed from constants reach", func(m *Model) {
		// Each Concat doubles a constant; the last is added to the input.
		m.Graph.Initializers = append(m.Graph.Initializers, Tensor{Name: "c0", Dims: []int64{1 << 16}, DataType: Float, Floats: make([]float32, 1<<16)})
		var nodes []Node
		for i := 0; i < 12; i++ {
			nodes = append(nodes, Node{OpType: "Concat", Inputs: []string{fmt.Sprintf("c%d", i), fmt.Sprintf("c%d", i)}, Outputs: []string{fmt.Sprintf("c%d", i+1)},
				Attributes: []Attribute{intAttr("axis", 0)}})
		}
		nodes = append(nodes, m.Graph.Nodes[0], Node{OpType: "Add", Inputs: []string{"f", "c12"}, Outputs: []string{"fa"}})
		m.Graph.Nodes[1].Inputs[0] = "fa"
		m.Graph.Nodes = append(nodes, m.Graph.Nodes[1:]...)
	})
	add("future opset", "opset 99", func(m *Model) { m.Opsets[""] = 99 })
	add("foreign domain", `domain "com.microsoft"`, func(m *Model) { m.Graph.Nodes[2].Domain = "com.microsoft" })
	add("flatten batch", "merges the batch axis", func(m *Model) { m.Graph.Nodes[0].Attributes[0].I = 0 })
	add("two inputs", "two inputs", func(m *Model) {
		m.Graph.Inputs = append(m.Graph.Inputs, ValueInfo{Name: "extra", ElemType: Float, Shape: []Dim{{Value: 1}, {Value: 1}}})
	})
	add("branch", "without branches", func(m *Model) {
		m.Graph.Nodes[3].Inputs[0] = "f" // reads the Flatten's output after the Relu ran on a later value
		m.Graph.Nodes[3].OpType = "Add"
		m.Graph.Nodes[3].Inputs = []string{"f", "r"}
	})
	add("absurd reshape", "has 1099511627776", func(m *Model) {
		m.Graph.Initializers = append(m.Graph.Initializers, Tensor{Name: "shape", Dims: []int64{2}, DataType: Int64, Int64s: []int64{-1, 1 << 40}})
		m.Graph.Nodes[0] = Node{Name: "/Reshape", OpType: "Reshape", Inputs: []string{"input", "shape"}, Outputs: []string{"f"}}
	})
	conv := func(attrs ...Attribute) func(m *Model) {
		return func(m *Model) {
			m.Graph.Inputs[0].Shape = []Dim{{Param: "n", Value: -1}, {Value: 1}, {Value: 8}, {Value: 8}}
			m.Graph.Initializers = append(m.Graph.Initializers, floatsTensor("k", []int64{1, 1, 3, 3}, make([]float32, 9)))
			m.Graph.Nodes = []Node{{Name: "/conv", OpType: "Conv", Inputs: []string{"input", "k"}, Outputs: []string{"output"}, Attributes: attrs}}
		}
	}
	add("zero stride", "stride [0 0] must be two numbers > 0", conv(intsAttr("strides", 0, 0)))
	add("huge pads", "larger than any tensor's axis", conv(intsAttr("pads", 1<<40, 0, 0, 0)))
	add("negative dilation", "dilation [-1 1]", conv(intsAttr("dilations", -1, 1)))
	add("grouped conv", "group = 2", conv(intAttr("group", 2)))
	add("huge window", "larger than the input", func(m *Model) {
		conv()(m)
		m.Graph.Nodes[0] = Node{Name: "/pool", OpType: "MaxPool", Inputs: []string{"input"}, Outputs: []string{"output"},
			Attributes: []Attribute{intsAttr("kernel_shape", 1<<25, 1<<25)}}
	})
	add("deep", "layers, more than", func(m *Model) {
		m.Graph.Nodes = m.Graph.Nodes[:1]
		m.Graph.Nodes[0].Outputs = []string{"x0"}
		for i := 0; i < 5000; i++ {
			m.Graph.Nodes = append(m.Graph.Nodes, Node{OpType: "Relu", Inputs: []string{fmt.Sprintf("x%d", i)}, Outputs: []string{fmt.Sprintf("x%d", i+1)}})
		}
		m.Graph.Nodes = append(m.Graph.Nodes, Node{OpType: "Identity", Inputs: []string{"x5000"}, Outputs: []string{"output"}})
	})
	return cases
}

func TestHostileModelsAreRefusedWithTheirReason(t *testing.T) {
	for name, c := range hostileModels() {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			m, err := Decode(Encode(c.model), DefaultLimits)
			if err == nil {
				_, _, err = Import(m, ImportOptions{})
			}
			var ie *ImportError
			var de *Error
			if err == nil || !(errors.As(err, &ie) || errors.As(err, &de)) {
				t.Fatalf("error %v (%T), want a typed refusal", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to say %q", err, c.want)
			}
			// What bounds the work is the refusal's own limit (the reason
			// above), not a clock: a loaded CI machine under the race
			// detector took 4.6 s over the folding bomb's 2^24 values.
			t.Logf("refused in %v", time.Since(start))
		})
	}
	m, _ := Decode(Encode(hostileModels()["unsupported op"].model), DefaultLimits)
	if _, _, err := Import(m, ImportOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("an unsupported op: %v, want errors.Is ErrUnsupported", err)
	}
}

// TestAnInitializerBombIsRefusedBeforeItIsAllocated: dims that claim 2^40
// values over a few bytes of data.
func TestAnInitializerBombIsRefusedBeforeItIsAllocated(t *testing.T) {
	m := mlp()
	m.Graph.Initializers[0] = Tensor{Name: "w1", Dims: []int64{1 << 20, 1 << 20}, DataType: Float, Raw: make([]byte, 16)}
	_, err := Decode(Encode(m), DefaultLimits)
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v, want the decoder's refusal", err)
	}
}

func FuzzImport(f *testing.F) {
	f.Add(Encode(mlp()))
	for _, c := range hostileModels() {
		f.Add(Encode(c.model))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, DefaultLimits)
		if err != nil {
			return
		}
		for _, one := range []bool{false, true} {
			net, w, err := Import(m, ImportOptions{OneExample: one})
			if err != nil {
				continue
			}
			if err := net.Validate(); err != nil {
				t.Fatalf("imported an invalid network: %v", err)
			}
			if err := net.CheckWeights(w); err != nil {
				t.Fatalf("imported weights that do not fit: %v", err)
			}
			var _ *network.Network = net
		}
	})
}
