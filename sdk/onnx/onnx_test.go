package onnx

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// testdata is ONNX's own backend test data (Debian's libonnx-testdata,
// which make deps installs).
func testdata(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("HACKARENA_ONNX_TESTDATA")
	if dir == "" {
		dir = "/usr/share/libonnx-testdata/data"
	}
	if _, err := os.Stat(filepath.Join(dir, "node", "test_relu", "model.onnx")); err != nil {
		t.Fatalf("ONNX's test data is missing (run make deps, which installs libonnx-testdata, or set HACKARENA_ONNX_TESTDATA): %v", err)
	}
	return dir
}

// TestDecodesONNXsOwnNodeTests decodes every node test model and its
// tensors of ONNX's backend test data, and checks one model and its data
// in full: Relu on a float [3,4,5].
func TestDecodesONNXsOwnNodeTests(t *testing.T) {
	dir := testdata(t)
	models, err := filepath.Glob(filepath.Join(dir, "node", "*", "model.onnx"))
	if err != nil || len(models) < 500 {
		t.Fatalf("%d node test models (%v)", len(models), err)
	}
	decoded := 0
	refused := map[string]int{}
	for _, path := range models {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(raw, DefaultLimits); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: an untyped error %v", path, err)
			}
			refused[e.Msg]++
			continue
		}
		decoded++
		tensors, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "test_data_set_0", "*.pb"))
		for _, tp := range tensors {
			raw, err := os.ReadFile(tp)
			if err != nil {
				t.Fatal(err)
			}
			// Sequences and optionals are other messages; only a refusal
			// that is not a typed Error is a bug.
			if _, err := DecodeTensor(raw, DefaultLimits); err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%s: an untyped error %v", tp, err)
				}
			}
		}
	}
	t.Logf("decoded %d of %d node test models; refused: %v", decoded, len(models), refused)
	if decoded*100 < len(models)*97 {
		t.Fatalf("decoded only %d of %d node test models; refused: %v", decoded, len(models), refused)
	}

	relu := filepath.Join(dir, "node", "test_relu")
	raw, _ := os.ReadFile(filepath.Join(relu, "model.onnx"))
	m, err := Decode(raw, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Graph.Nodes) != 1 || m.Graph.Nodes[0].OpType != "Relu" || m.Opsets[""] < 6 {
		t.Fatalf("relu model: %+v, opsets %v", m.Graph.Nodes, m.Opsets)
	}
	in := m.Graph.Inputs[0]
	if in.Name != "x" || in.ElemType != Float || len(in.Shape) != 3 || in.Shape[0].Value != 3 || in.Shape[2].Value != 5 {
		t.Fatalf("relu input %+v", in)
	}
	x := mustTensor(t, filepath.Join(relu, "test_data_set_0", "input_0.pb"))
	y := mustTensor(t, filepath.Join(relu, "test_data_set_0", "output_0.pb"))
	xs, err := x.FloatValues()
	if err != nil {
		t.Fatal(err)
	}
	ys, _ := y.FloatValues()
	if len(xs) != 60 || len(ys) != 60 || x.Elements() != 60 {
		t.Fatalf("relu data: %d inputs, %d outputs", len(xs), len(ys))
	}
	for i := range xs {
		if ys[i] != float32(math.Max(0, float64(xs[i]))) {
			t.Fatalf("relu output %d is %v for input %v", i, ys[i], xs[i])
		}
	}
}

func mustTensor(t *testing.T, path string) *Tensor {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tensor, err := DecodeTensor(raw, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	return tensor
}

// message builds protobuf bytes field by field.
type message []byte

func (m message) bytes(num protowire.Number, v []byte) message {
	return protowire.AppendBytes(protowire.AppendTag(m, num, protowire.BytesType), v)
}

func (m message) varint(num protowire.Number, v uint64) message {
	return protowire.AppendVarint(protowire.AppendTag(m, num, protowire.VarintType), v)
}

func packed(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = protowire.AppendVarint(b, v)
	}
	return b
}

// model wraps one initializer tensor into a model.
func model(tensor message) []byte {
	graph := message(nil).bytes(1, message(nil).bytes(4, []byte("Relu"))).bytes(5, tensor)
	return message(nil).varint(1, 8).bytes(7, graph)
}

// TestHostileModelsAreRefusedCheaplyWithTheirPlace: files that claim
// absurd sizes, lie about their data, point outside themselves, are cut
// short or are not ONNX at all are refused with a message that names the
// place, before anything of the claimed size is allocated.
func TestHostileModelsAreRefusedCheaplyWithTheirPlace(t *testing.T) {
	huge := uint64(1) << 40
	cases := map[string]struct {
		file []byte
		want string
	}{
		"absurd dims":                    {model(message(nil).bytes(1, packed(huge, huge)).varint(2, 1).bytes(9, make([]byte, 16))), "hold more than"},
		"overflowing dims":               {model(message(nil).bytes(1, packed(1<<62, 1<<62, 1<<62)).varint(2, 1)), "hold more than"},
		"raw data shorter than its dims": {model(message(nil).bytes(1, packed(10, 10)).varint(2, 1).bytes(9, make([]byte, 40))), "raw_data has 40 bytes"},
		"floats fewer than its dims":     {model(message(nil).bytes(1, packed(4)).varint(2, 1).bytes(4, make([]byte, 8))), "float_data has 2 values"},
		"no values":                      {model(message(nil).bytes(1, packed(4)).varint(2, 1)), "none are stored"},
		"negative dim":                   {model(message(nil).bytes(1, packed(uint64(1<<64-1))).varint(2, 1)), "negative"},
		"external data":                  {model(message(nil).bytes(8, []byte("w")).varint(14, 1)), "external file"},
		"too many axes":                  {model(message(nil).bytes(1, packed(1, 1, 1, 1, 1, 1, 1, 1, 1)).varint(2, 1)), "more than 8 dimensions"},
		"cut short":                      {model(message(nil).bytes(1, packed(4)).varint(2, 1).bytes(9, make([]byte, 16)))[:20], "not valid protobuf"},
		"json":                           {[]byte(`{"layers":[]}`), ""},
		"no graph":                       {message(nil).varint(1, 8), "has no graph"},
		"a node without an op":           {message(nil).bytes(7, message(nil).bytes(1, message(nil).bytes(3, []byte("nameless")))), "without an op_type"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(tc.file, DefaultLimits)
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal mentioning %q", err, tc.want)
			}
		})
	}
	lim := DefaultLimits
	lim.MaxNodes = 3
	node := message(nil).bytes(4, []byte("Relu"))
	graph := message(nil)
	for range 4 {
		graph = graph.bytes(1, node)
	}
	if _, err := Decode(message(nil).bytes(7, graph), lim); err == nil || !strings.Contains(err.Error(), "more than 3 nodes") {
		t.Fatalf("too many nodes: %v", err)
	}
	if Sniff([]byte(`{"layers":[]}`)) == nil || Sniff(model(message(nil).bytes(1, packed(1)).varint(2, 1).bytes(4, make([]byte, 4)))) != nil {
		t.Fatal("Sniff does not tell network JSON from ONNX")
	}
}

// FuzzDecode: no input makes the decoder panic or hold more than its
// limits allow; whatever it accepts is consistent.
func FuzzDecode(f *testing.F) {
	if raw, err := os.ReadFile(filepath.Join(testdata(f), "node", "test_conv_with_strides_padding", "model.onnx")); err == nil {
		f.Add(raw)
	}
	f.Add(model(message(nil).bytes(1, packed(2, 2)).varint(2, 1).bytes(9, make([]byte, 16))))
	f.Add([]byte(`{"layers":[]}`))
	lim := Limits{MaxNodes: 64, MaxDims: 8, MaxElements: 1 << 16, MaxTotalElements: 1 << 17, MaxInts: 1 << 12}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, lim)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for _, init := range m.Graph.Initializers {
			if init.Elements() > lim.MaxElements {
				t.Fatalf("accepted a tensor of %d values", init.Elements())
			}
			if init.DataType == Float || init.DataType == Double {
				if vs, err := init.FloatValues(); err == nil && int64(len(vs)) != init.Elements() {
					t.Fatalf("tensor of %d values decoded to %d", init.Elements(), len(vs))
				}
			}
		}
	})
}
