package network

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mlp() *Network {
	return &Network{Input: []int{784}, Layers: []Layer{
		{Kind: Dense, Name: "hidden", Units: 128, Activation: "relu"},
		{Kind: Dropout, Rate: 0.2},
		{Kind: Dense, Name: "out", Units: 10},
		{Kind: Softmax},
	}}
}

func TestShapesAndParams(t *testing.T) {
	cnn := &Network{Input: []int{1, 28, 28}, Layers: []Layer{
		{Kind: Conv2D, Name: "c1", Filters: 32, Kernel: []int{3, 3}, Activation: "relu"},
		{Kind: MaxPool2D, Pool: []int{2, 2}},
		{Kind: Conv2D, Name: "c2", Filters: 64, Kernel: []int{3, 3}, Padding: "same"},
		{Kind: Flatten},
		{Kind: Dense, Name: "out", Units: 10},
	}}
	shapes, err := cnn.Shapes()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int{{32, 26, 26}, {32, 13, 13}, {64, 13, 13}, {64 * 13 * 13}, {10}}
	for i := range want {
		if !slices.Equal(shapes[i], want[i]) {
			t.Errorf("layer %d: shape %v, want %v", i, shapes[i], want[i])
		}
	}
	ps, err := cnn.Params()
	if err != nil {
		t.Fatal(err)
	}
	if got := paramNames(ps); got != "c1.kernel, c1.bias, c2.kernel, c2.bias, out.kernel, out.bias" {
		t.Errorf("params %s", got)
	}
	if !slices.Equal(ps[2].Shape, []int{64, 32, 3, 3}) {
		t.Errorf("c2.kernel shape %v", ps[2].Shape)
	}
	emb := &Network{Input: []int{256}, Layers: []Layer{{Kind: Embedding, InputDim: 10000, OutputDim: 16}, {Kind: GlobalAveragePooling1D}, {Kind: Dense, Units: 1, Activation: "sigmoid"}}}
	if shapes, err := emb.Shapes(); err != nil || !slices.Equal(shapes[0], []int{256, 16}) || !slices.Equal(shapes[1], []int{16}) {
		t.Errorf("embedding shapes %v, %v", shapes, err)
	}
}

func TestInvalidNetworksNameTheLayer(t *testing.T) {
	cases := map[string]struct {
		json string
		want string
	}{
		"unknown key":        {`{"input":[4],"layers":[{"kind":"Dense","units":2,"activaton":"relu"}]}`, `unknown field "activaton"`},
		"unknown kind":       {`{"input":[4],"layers":[{"kind":"LSTM"}]}`, `layer 0 (LSTM "lstm_0")`},
		"reshape count":      {`{"input":[1,28,28],"layers":[{"kind":"Reshape","shape":[780]}]}`, "holds 780 values, the input 784"},
		"add shape":          {`{"input":[3,4],"layers":[{"kind":"Add","shape":[3]}]}`, "does not broadcast"},
		"pool pads":          {`{"input":[1,4,4],"layers":[{"kind":"AveragePool2D","pool":[2,2],"pads":[2,0,0,0]}]}`, "as large as the window"},
		"reduce axes":        {`{"input":[3,4],"layers":[{"kind":"ReduceMean","axes":[2]}]}`, "axes [2]"},
		"softmax axis":       {`{"input":[3,4],"layers":[{"kind":"Softmax","axis":2}]}`, "axis 2 is not one"},
		"window too big":     {`{"input":[1,2,2],"layers":[{"kind":"Conv2D","filters":1,"kernel":[3,3]}]}`, "larger than the input"},
		"bad activation":     {`{"input":[4],"layers":[{"kind":"Dense","units":2,"activation":"gelu"}]}`, `unknown activation "gelu"`},
		"duplicate names":    {`{"input":[4],"layers":[{"kind":"Dense","name":"a","units":2},{"kind":"Dense","name":"a","units":2}]}`, `"a" is used twice`},
		"no input":           {`{"layers":[{"kind":"Flatten"}]}`, "input shape is empty"},
		"dropout rate":       {`{"input":[4],"layers":[{"kind":"Dropout","rate":1}]}`, "outside [0, 1)"},
		"activation on pool": {`{"input":[4],"layers":[{"kind":"ReLU","activation":"relu"}]}`, "only Dense and Conv2D"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(c.json))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestCheckWeights(t *testing.T) {
	n := mlp()
	w := Weights{
		"hidden.kernel": {Shape: []int{784, 128}, Data: make([]float32, 784*128)},
		"hidden.bias":   {Shape: []int{128}, Data: make([]float32, 128)},
		"out.kernel":    {Shape: []int{128, 10}, Data: make([]float32, 1280)},
		"out.bias":      {Shape: []int{10}, Data: make([]float32, 10)},
	}
	if err := n.CheckWeights(w); err != nil {
		t.Fatal(err)
	}
	w["extra"] = &Array{Shape: []int{1}, Data: []float32{1}}
	if err := n.CheckWeights(w); err == nil || !strings.Contains(err.Error(), `"extra" is not a weight`) {
		t.Errorf("extra weight: %v", err)
	}
	delete(w, "extra")
	w["out.bias"] = &Array{Shape: []int{9}, Data: make([]float32, 9)}
	if err := n.CheckWeights(w); err == nil || !strings.Contains(err.Error(), `"out.bias" has shape [9], the network needs [10]`) {
		t.Errorf("wrong shape: %v", err)
	}
	delete(w, "out.bias")
	if err := n.CheckWeights(w); err == nil || !strings.Contains(err.Error(), `"out.bias" is missing`) {
		t.Errorf("missing: %v", err)
	}
}

func TestNPZRoundTripIsDeterministic(t *testing.T) {
	w := Weights{
		"a":      {Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, -6.5}},
		"b.bias": {Shape: []int{3}, Data: []float32{0.1, 0.2, 0.3}},
	}
	var one, two bytes.Buffer
	if err := WriteNPZ(&one, w); err != nil {
		t.Fatal(err)
	}
	if err := WriteNPZ(&two, w); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("the same weights gave different .npz bytes")
	}
	got, err := ReadNPZ(one.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range w {
		g := got[name]
		if g == nil || !slices.Equal(g.Shape, a.Shape) || !slices.Equal(g.Data, a.Data) {
			t.Errorf("%s: got %+v, want %+v", name, g, a)
		}
	}
}

// numpy.npz was written by numpy itself (testdata/make_fixture.py).
func TestReadNPZFromNumpy(t *testing.T) {
	data, err := os.ReadFile("testdata/numpy.npz")
	if err != nil {
		t.Fatal(err)
	}
	w, err := ReadNPZ(data)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, shape []int, values []float32) {
		t.Helper()
		a := w[name]
		if a == nil || !slices.Equal(a.Shape, shape) || !slices.Equal(a.Data, values) {
			t.Errorf("%s = %+v, want shape %v values %v", name, a, shape, values)
		}
	}
	check("dense.kernel", []int{2, 3}, []float32{0, 0.25, 0.5, 0.75, 1, 1.25})
	check("dense.bias", []int{3}, []float32{1.5, -2, 0.25})
	check("wide", []int{1, 2}, []float32{1e-3, 2})
	check("scalar", nil, []float32{7})
}

// TestNumpyReadsOurNPZ closes the loop the other way when Debian's numpy
// is installed (make deps installs it); on CI it must be there.
func TestNumpyReadsOurNPZ(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("/usr/bin/python3 is missing on CI: make deps installs python3-numpy")
		}
		t.Skip("no /usr/bin/python3")
	}
	path := t.TempDir() + "/w.npz"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteNPZ(f, Weights{"k": {Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4.5}}, "v": {Shape: []int{1}, Data: []float32{-1}}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("/usr/bin/python3", "-c", `import numpy as np, sys; z = np.load(sys.argv[1]); print(z["k"].dtype, z["k"].tolist(), z["v"].tolist())`, path).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No module named 'numpy'") && os.Getenv("CI") != "true" {
			t.Skip("Debian's python3-numpy is not installed")
		}
		t.Fatalf("numpy could not read our .npz: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "float32 [[1.0, 2.0], [3.0, 4.5]] [-1.0]" {
		t.Errorf("numpy read %q", got)
	}
}

func TestReadNPZRejectsBadInput(t *testing.T) {
	var good bytes.Buffer
	if err := WriteNPZ(&good, Weights{"a": {Shape: []int{2}, Data: []float32{1, 2}}}); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"not a zip": []byte("hello"),
		"truncated": good.Bytes()[:good.Len()/2],
	}
	for name, data := range cases {
		if _, err := ReadNPZ(data); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A header that claims a huge array must not be allocated.
	var huge bytes.Buffer
	_ = writeNPYHeaderOnly(&huge, "(100000, 100000)")
	if _, err := readNPY(&huge, MaxNPZBytes); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge array: %v", err)
	}
}

func writeNPYHeaderOnly(buf *bytes.Buffer, shape string) error {
	h := "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }\n"
	buf.WriteString("\x93NUMPY\x01\x00")
	buf.WriteByte(byte(len(h)))
	buf.WriteByte(byte(len(h) >> 8))
	buf.WriteString(h)
	return nil
}

func FuzzReadNPZ(f *testing.F) {
	var good bytes.Buffer
	_ = WriteNPZ(&good, Weights{"a": {Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}}})
	f.Add(good.Bytes())
	if data, err := os.ReadFile("testdata/numpy.npz"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := ReadNPZ(data)
		if err != nil {
			return
		}
		for name, a := range w {
			if len(a.Data) != size(a.Shape) {
				t.Fatalf("%s: %d values for shape %v", name, len(a.Data), a.Shape)
			}
		}
	})
}

func FuzzDecodeNetwork(f *testing.F) {
	b, _ := mlp().Encode()
	f.Add(b)
	f.Add([]byte(`{"input":[1,28,28],"layers":[{"kind":"Conv2D","filters":2,"kernel":[3,3],"stride":[2,2]},{"kind":"MaxPool2D","pool":[2,2]}]}`))
	for _, js := range overflowNetworks {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Decode(data)
		if err != nil {
			return
		}
		if _, err := n.Params(); err != nil {
			t.Fatalf("valid network has no params: %v", err)
		}
	})
}

// overflowNetworks are shapes whose element counts wrap a 64-bit int, or
// pass the per-example cap, if multiplied unchecked.
var overflowNetworks = map[string]string{
	"flatten wraps to 0":   `{"input":[4294967296,4294967296,1],"layers":[{"kind":"Flatten"},{"kind":"Dense","units":10}]}`,
	"input over the cap":   `{"input":[67108865],"layers":[{"kind":"ReLU"}]}`,
	"dense kernel":         `{"input":[65536],"layers":[{"kind":"Dense","units":65536}]}`,
	"dense units":          `{"input":[4],"layers":[{"kind":"Dense","units":9223372036854775807}]}`,
	"embedding table":      `{"input":[4],"layers":[{"kind":"Embedding","input_dim":4294967296,"output_dim":4294967296}]}`,
	"conv filters":         `{"input":[1,8,8],"layers":[{"kind":"Conv2D","filters":4611686018427387904,"kernel":[1,1]}]}`,
	"conv im2col":          `{"input":[4096,64,64],"layers":[{"kind":"Conv2D","filters":1,"kernel":[33,33],"padding":"same"}]}`,
	"same padding wraps":   `{"input":[1,8,8],"layers":[{"kind":"Conv2D","filters":1,"kernel":[9223372036854775807,1],"padding":"same"}]}`,
	"pool window":          `{"input":[1,8,8],"layers":[{"kind":"MaxPool2D","pool":[9223372036854775807,9223372036854775807]}]}`,
	"negative after wrap":  `{"input":[3037000500,3037000500],"layers":[{"kind":"Flatten"}]}`,
	"embedding steps wrap": `{"input":[4294967296],"layers":[{"kind":"Embedding","input_dim":2,"output_dim":4294967296}]}`,
}

func TestShapeArithmeticIsChecked(t *testing.T) {
	for name, js := range overflowNetworks {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(js))
			if err == nil {
				t.Fatal("decoded")
			}
			if !strings.Contains(err.Error(), "layer") && !strings.Contains(err.Error(), "input shape") {
				t.Errorf("error %q names neither the layer nor the input", err)
			}
		})
	}
	// The cap itself is allowed.
	if _, err := Decode([]byte(`{"input":[67108864],"layers":[{"kind":"ReLU"}]}`)); err != nil {
		t.Errorf("an input of exactly MaxElements: %v", err)
	}
	deep := &Network{Input: []int{2}}
	for range MaxLayers + 1 {
		deep.Layers = append(deep.Layers, Layer{Kind: ReLU})
	}
	if err := deep.Validate(); err == nil || !strings.Contains(err.Error(), "1025 layers") {
		t.Errorf("a network deeper than MaxLayers: %v", err)
	}
}

func TestFLOPsAndActivationBytes(t *testing.T) {
	n := mlp()
	flops, err := n.FLOPs(10)
	if err != nil {
		t.Fatal(err)
	}
	// Dense 784→128: 2·784·128; ReLU is fused, Dropout 128, Dense 128→10:
	// 2·128·10, Softmax 10; per example, times 10.
	if want := int64(10 * (2*784*128 + 128 + 2*128*10 + 10)); flops != want {
		t.Errorf("FLOPs %d, want %d", flops, want)
	}
	// A batch whose count passes int64 is an error, not a wrapped number.
	if _, err := n.FLOPs(1 << 62); err == nil {
		t.Error("FLOPs of a batch of 2^62: no error")
	}
	if _, err := n.ActivationBytes(1 << 62); err == nil {
		t.Error("ActivationBytes of a batch of 2^62: no error")
	}
	if _, err := n.FLOPs(0); err == nil {
		t.Error("FLOPs of a batch of 0: no error")
	}
}

// zerosNPZ is a small .npz of one float64 array of zeros that inflates to
// 8·elems bytes.
func zerosNPZ(t *testing.T, name string, shape []int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	f, err := zw.Create(name + ".npy")
	if err != nil {
		t.Fatal(err)
	}
	dims := make([]string, len(shape))
	elems := 1
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
		elems *= d
	}
	h := "{'descr': '<f8', 'fortran_order': False, 'shape': (" + strings.Join(dims, ", ") + ",), }\n"
	f.Write([]byte("\x93NUMPY\x01\x00"))
	f.Write([]byte{byte(len(h)), byte(len(h) >> 8)})
	f.Write([]byte(h))
	zeros := make([]byte, 1<<20)
	for left := elems * 8; left > 0; left -= len(zeros) {
		f.Write(zeros[:min(left, len(zeros))])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadWeightsChecksBeforeDecoding(t *testing.T) {
	net := &Network{Input: []int{8192}, Layers: []Layer{{Kind: Dense, Name: "d", Units: 8192}}}
	// 2^26 float64 zeros: 512 MiB inflated, a few hundred KiB on the wire.
	bomb := zerosNPZ(t, "d.kernel", []int{8192, 8192})
	if len(bomb) > 2<<20 {
		t.Fatalf("the bomb is %d bytes", len(bomb))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := net.ReadWeights(bomb, 16<<20)
	runtime.ReadMemStats(&after)
	var over *BudgetExceededError
	if !errors.As(err, &over) || over.Array != "d.kernel" || over.Need != 8192*8192*4 {
		t.Fatalf("err %v, want the budget refusal for d.kernel", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("refusing the bomb allocated %d MiB", grew>>20)
	}
	// A member the network does not have, or in another shape, is refused
	// from its header too.
	if _, err := net.ReadWeights(zerosNPZ(t, "other", []int{4}), 1<<30); err == nil || !strings.Contains(err.Error(), `"other" is not a weight`) {
		t.Errorf("unknown member: %v", err)
	}
	if _, err := net.ReadWeights(zerosNPZ(t, "d.kernel", []int{4}), 1<<30); err == nil || !strings.Contains(err.Error(), "the network needs [8192 8192]") {
		t.Errorf("misshapen member: %v", err)
	}
	// Within the budget, float64 is narrowed as it is read.
	small := &Network{Input: []int{3}, Layers: []Layer{{Kind: Dense, Name: "d", Units: 2}}}
	var good bytes.Buffer
	if err := WriteNPZ(&good, Weights{"d.kernel": {Shape: []int{3, 2}, Data: make([]float32, 6)}, "d.bias": {Shape: []int{2}, Data: []float32{1, 2}}}); err != nil {
		t.Fatal(err)
	}
	w, err := small.ReadWeights(good.Bytes(), 1<<20)
	if err != nil || w["d.bias"].Data[1] != 2 {
		t.Fatalf("good weights: %v", err)
	}
	if _, err := small.ReadWeights(good.Bytes(), 20); !errors.As(err, &over) {
		t.Errorf("32 bytes of weights against a budget of 20: %v", err)
	}
}

func FuzzNetworkShapes(f *testing.F) {
	for _, js := range overflowNetworks {
		f.Add([]byte(js))
	}
	b, _ := mlp().Encode()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes has shapes, weights and costs within the caps.
		shapes, err := n.Shapes()
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range shapes {
			if e, err := elements(s); err != nil || e > MaxElements {
				t.Fatalf("layer %d: shape %v passed Shapes but has %d elements (%v)", i, s, e, err)
			}
		}
		ps, err := n.Params()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if _, err := elements(p.Shape); err != nil {
				t.Fatalf("weight %s: %v", p.Name, err)
			}
		}
		for _, batch := range []int{1, 1000} {
			if b, err := n.ActivationBytes(batch); err == nil && b <= 0 {
				t.Fatalf("activation bytes %d at batch %d", b, batch)
			}
			if f, err := n.FLOPs(batch); err == nil && f <= 0 {
				t.Fatalf("FLOPs %d at batch %d", f, batch)
			}
		}
	})
}
