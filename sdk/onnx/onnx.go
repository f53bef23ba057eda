// Package onnx decodes ONNX model files (the protobuf onnx.proto defines)
// into the parts the Engine maps onto its layers, refusing hostile files
// cheaply: every count, dimension and byte is bounded before it is used.
package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// DataType is a tensor element type (TensorProto.DataType).
type DataType int32

// The element types the Engine reads; others decode but are refused where
// their values are needed.
const (
	Float  DataType = 1
	Uint8  DataType = 2
	Int8   DataType = 3
	Int32  DataType = 6
	Int64  DataType = 7
	Bool   DataType = 9
	Double DataType = 11
)

var dataTypeNames = map[DataType]string{0: "undefined", 1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
	8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16"}

func (t DataType) String() string {
	if n, ok := dataTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", int32(t))
}

// size is the bytes of one element in raw_data, 0 for types without a
// fixed size.
func (t DataType) size() int {
	switch t {
	case Float, Int32:
		return 4
	case Uint8, Int8, Bool:
		return 1
	case Int64, Double:
		return 8
	case 4, 5, 10, 16:
		return 2
	case 12:
		return 4
	case 13, 14:
		return 8
	case 15:
		return 16
	}
	return 0
}

// Model is an ONNX model: its opsets and its graph.
type Model struct {
	IRVersion int64
	// Opsets maps an operator domain ("" is the default ONNX domain) to
	// the opset version the model was exported for.
	Opsets   map[string]int64
	Producer string
	Graph    Graph
}

// Graph is a model's computation: nodes in the file's order, constant
// tensors (weights), and the named inputs and outputs.
type Graph struct {
	Name         string
	Nodes        []Node
	Initializers []Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
}

// Node is one operator application.
type Node struct {
	Name, OpType, Domain string
	Inputs, Outputs      []string
	Attributes           []Attribute
}

// Attr finds a node's attribute by name.
func (n *Node) Attr(name string) (*Attribute, bool) {
	for i := range n.Attributes {
		if n.Attributes[i].Name == name {
			return &n.Attributes[i], true
		}
	}
	return nil, false
}

// AttributeType is AttributeProto.AttributeType.
type AttributeType int32

// Attribute types.
const (
	AttrFloat   AttributeType = 1
	AttrInt     AttributeType = 2
	AttrString  AttributeType = 3
	AttrTensor  AttributeType = 4
	AttrGraph   AttributeType = 5
	AttrFloats  AttributeType = 6
	AttrInts    AttributeType = 7
	AttrStrings AttributeType = 8
)

// Attribute is a node's named parameter. A graph-valued attribute (the
// bodies of If and Loop) is recorded by type only: nothing the Engine
// runs has one.
type Attribute struct {
	Name    string
	Type    AttributeType
	F       float32
	I       int64
	S       []byte
	T       *Tensor
	Floats  []float32
	Ints    []int64
	Strings [][]byte
}

// Tensor is a constant tensor: exactly one of the value slices holds its
// elements (Raw for raw_data, in little-endian order).
type Tensor struct {
	Name     string
	Dims     []int64
	DataType DataType
	Floats   []float32
	Int32s   []int32
	Int64s   []int64
	Doubles  []float64
	Raw      []byte
	// strings counts string_data entries, which are never kept.
	strings int
}

// Elements is how many values the tensor's dims hold.
func (t *Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// FloatValues returns the tensor's values as float32, whatever numeric
// type it stores them in.
func (t *Tensor) FloatValues() ([]float32, error) {
	n := t.Elements()
	switch {
	case t.Floats != nil:
		return t.Floats, nil
	case t.Doubles != nil:
		return convert[float64, float32](t.Doubles), nil
	case t.Int32s != nil:
		return convert[int32, float32](t.Int32s), nil
	case t.Int64s != nil:
		return convert[int64, float32](t.Int64s), nil
	case t.Raw != nil || n == 0:
		out := make([]float32, n)
		for i := range out {
			switch t.DataType {
			case Float:
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Raw[4*i:]))
			case Double:
				out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Raw[8*i:])))
			case Int64:
				out[i] = float32(int64(binary.LittleEndian.Uint64(t.Raw[8*i:])))
			case Int32:
				out[i] = float32(int32(binary.LittleEndian.Uint32(t.Raw[4*i:])))
			case Uint8, Bool:
				out[i] = float32(t.Raw[i])
			case Int8:
				out[i] = float32(int8(t.Raw[i]))
			default:
				return nil, fmt.Errorf("tensor %q holds %s values, which the Engine does not read", t.Name, t.DataType)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("tensor %q holds %s values, which the Engine does not read", t.Name, t.DataType)
}

// IntValues returns an integer tensor's values (a shape, axes, indices).
func (t *Tensor) IntValues() ([]int64, error) {
	switch {
	case t.Int64s != nil:
		return t.Int64s, nil
	case t.Int32s != nil:
		return convert[int32, int64](t.Int32s), nil
	case t.DataType == Int64 && (t.Raw != nil || t.Elements() == 0):
		out := make([]int64, t.Elements())
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(t.Raw[8*i:]))
		}
		return out, nil
	case t.DataType == Int32 && (t.Raw != nil || t.Elements() == 0):
		out := make([]int64, t.Elements())
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(t.Raw[4*i:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("tensor %q holds %s values, not integers", t.Name, t.DataType)
}

func convert[From, To int32 | int64 | float32 | float64](xs []From) []To {
	out := make([]To, len(xs))
	for i, x := range xs {
		out[i] = To(x)
	}
	return out
}

// ValueInfo is a graph input or output: its name, element type and shape.
type ValueInfo struct {
	Name     string
	ElemType DataType
	// Shape has one Dim per axis; nil when the file gives none.
	Shape []Dim
}

// Dim is one axis of a declared shape: a fixed size, or a named one (a
// dynamic batch, "batch_size"), or neither (unknown, Value -1).
type Dim struct {
	Value int64
	Param string
}

// Limits bound what a file may ask the decoder to hold.
type Limits struct {
	// MaxNodes bounds the graph's nodes, MaxDims a tensor's or shape's
	// axes, MaxElements one tensor's values, MaxTotalElements all the
	// initializers' and constants' values together.
	MaxNodes         int
	MaxDims          int
	MaxElements      int64
	MaxTotalElements int64
	// MaxInts bounds one list of integers (a shape, axes, an int64
	// tensor), which take eight bytes each for one in the file.
	MaxInts int64
}

// DefaultLimits fit every model the Engine can run in a slot (a few
// hundred million weights at most) with room to spare.
var DefaultLimits = Limits{MaxNodes: 100_000, MaxDims: 8, MaxElements: 1 << 28, MaxTotalElements: 1 << 29, MaxInts: 1 << 22}

// Error is a file the decoder refuses; Where names the part ("graph.node[3]
// (Conv_2).attribute[1]"), so a participant can find it.
type Error struct {
	Where string
	Msg   string
}

func (e *Error) Error() string {
	if e.Where == "" {
		return "ONNX model: " + e.Msg
	}
	return "ONNX model: " + e.Where + ": " + e.Msg
}

// decoder carries the limits and the running total of tensor values.
type decoder struct {
	lim   Limits
	total int64
}

func (d *decoder) fail(where, format string, args ...any) error {
	return &Error{Where: where, Msg: fmt.Sprintf(format, args...)}
}

// Decode reads a model file.
func Decode(data []byte, lim Limits) (*Model, error) {
	d := &decoder{lim: lim}
	m := &Model{Opsets: map[string]int64{}}
	sawGraph := false
	err := d.fields(data, "", func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			m.IRVersion = int64(x)
		case num == 2 && typ == protowire.BytesType:
			m.Producer = string(v)
		case num == 8 && typ == protowire.BytesType:
			domain, version := "", int64(0)
			if err := d.fields(v, "opset_import", func(n protowire.Number, t protowire.Type, b []byte, y uint64) error {
				switch {
				case n == 1 && t == protowire.BytesType:
					domain = string(b)
				case n == 2 && t == protowire.VarintType:
					version = int64(y)
				}
				return nil
			}); err != nil {
				return err
			}
			if domain == "ai.onnx" {
				domain = ""
			}
			m.Opsets[domain] = version
		case num == 7 && typ == protowire.BytesType:
			sawGraph = true
			return d.graph(v, &m.Graph)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawGraph {
		return nil, d.fail("", "the file has no graph: is it an ONNX model (torch.onnx.export writes one)?")
	}
	return m, nil
}

// DecodeTensor reads a serialized TensorProto (ONNX's test data files).
func DecodeTensor(data []byte, lim Limits) (*Tensor, error) {
	d := &decoder{lim: lim}
	t := &Tensor{}
	if err := d.tensor(data, "tensor", t); err != nil {
		return nil, err
	}
	return t, nil
}

// fields calls each for every field of the message in data.
func (d *decoder) fields(data []byte, where string, each func(num protowire.Number, typ protowire.Type, bytes []byte, varint uint64) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return d.fail(where, "the file is not valid protobuf (%v): is it an ONNX model?", protowire.ParseError(n))
		}
		data = data[n:]
		var bytes []byte
		var varint uint64
		switch typ {
		case protowire.VarintType:
			varint, n = protowire.ConsumeVarint(data)
		case protowire.BytesType:
			bytes, n = protowire.ConsumeBytes(data)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(data)
			varint = uint64(v)
		case protowire.Fixed64Type:
			varint, n = protowire.ConsumeFixed64(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
		}
		if n < 0 {
			return d.fail(where, "the file is not valid protobuf (%v): is it cut short?", protowire.ParseError(n))
		}
		data = data[n:]
		if err := each(num, typ, bytes, varint); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) graph(data []byte, g *Graph) error {
	return d.fields(data, "graph", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			if len(g.Nodes) >= d.lim.MaxNodes {
				return d.fail("graph", "more than %d nodes", d.lim.MaxNodes)
			}
			var n Node
			if err := d.node(v, fmt.Sprintf("graph.node[%d]", len(g.Nodes)), &n); err != nil {
				return err
			}
			g.Nodes = append(g.Nodes, n)
		case 2:
			g.Name = string(v)
		case 5:
			var t Tensor
			if err := d.tensor(v, fmt.Sprintf("graph.initializer[%d]", len(g.Initializers)), &t); err != nil {
				return err
			}
			g.Initializers = append(g.Initializers, t)
		case 15:
			return d.fail("graph", "sparse initializers are not supported: export dense weights")
		case 11, 12:
			var vi ValueInfo
			field := "input"
			if num == 12 {
				field = "output"
			}
			if err := d.valueInfo(v, "graph."+field, &vi); err != nil {
				return err
			}
			if num == 11 {
				g.Inputs = append(g.Inputs, vi)
			} else {
				g.Outputs = append(g.Outputs, vi)
			}
		}
		return nil
	})
}

func (d *decoder) node(data []byte, where string, n *Node) error {
	err := d.fields(data, where, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			n.Inputs = append(n.Inputs, string(v))
		case 2:
			n.Outputs = append(n.Outputs, string(v))
		case 3:
			n.Name = string(v)
		case 4:
			n.OpType = string(v)
		case 7:
			n.Domain = string(v)
		case 5:
			var a Attribute
			if err := d.attribute(v, fmt.Sprintf("%s.attribute[%d]", where, len(n.Attributes)), &a); err != nil {
				return err
			}
			n.Attributes = append(n.Attributes, a)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n.OpType == "" {
		return d.fail(where, "a node without an op_type")
	}
	return nil
}

func (d *decoder) attribute(data []byte, where string, a *Attribute) error {
	return d.fields(data, where, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			a.Name = string(v)
		case num == 20 && typ == protowire.VarintType:
			a.Type = AttributeType(x)
		case num == 2 && typ == protowire.Fixed32Type:
			a.F = math.Float32frombits(uint32(x))
		case num == 3 && typ == protowire.VarintType:
			a.I = int64(x)
		case num == 4 && typ == protowire.BytesType:
			a.S = v
		case num == 5 && typ == protowire.BytesType:
			a.T = &Tensor{}
			return d.tensor(v, where+".t", a.T)
		case num == 6 || num == 11:
			a.Type = AttrGraph // recorded, never descended into
		case num == 7:
			return d.floats(v, typ, x, where+".floats", &a.Floats)
		case num == 8:
			return d.ints(v, typ, x, where+".ints", &a.Ints)
		case num == 9 && typ == protowire.BytesType:
			if int64(len(a.Strings)) >= d.lim.MaxElements {
				return d.fail(where, "too many strings")
			}
			a.Strings = append(a.Strings, v)
		}
		return nil
	})
}

// floats appends a repeated float field, packed (bytes) or not (fixed32).
func (d *decoder) floats(v []byte, typ protowire.Type, x uint64, where string, out *[]float32) error {
	if typ == protowire.Fixed32Type {
		return d.grow(where, int64(len(*out))+1, func() { *out = append(*out, math.Float32frombits(uint32(x))) })
	}
	if typ != protowire.BytesType || len(v)%4 != 0 {
		return d.fail(where, "malformed list of floats")
	}
	return d.grow(where, int64(len(*out)+len(v)/4), func() {
		for i := 0; i+4 <= len(v); i += 4 {
			*out = append(*out, math.Float32frombits(binary.LittleEndian.Uint32(v[i:])))
		}
	})
}

// ints appends a repeated varint field, packed or not.
func (d *decoder) ints(v []byte, typ protowire.Type, x uint64, where string, out *[]int64) error {
	if typ == protowire.VarintType {
		if int64(len(*out))+1 > d.lim.MaxInts {
			return d.fail(where, "more than %d integers", d.lim.MaxInts)
		}
		*out = append(*out, int64(x))
		return nil
	}
	if typ != protowire.BytesType {
		return d.fail(where, "malformed list of integers")
	}
	// Each varint is at least one byte and becomes eight: integer lists
	// (shapes, axes, indices) have a bound of their own, far below the
	// weights'.
	if int64(len(*out)+len(v)) > d.lim.MaxInts {
		return d.fail(where, "more than %d integers", d.lim.MaxInts)
	}
	for len(v) > 0 {
		y, n := protowire.ConsumeVarint(v)
		if n < 0 {
			return d.fail(where, "malformed list of integers")
		}
		*out = append(*out, int64(y))
		v = v[n:]
	}
	return nil
}

// grow checks a list would stay within one tensor's bound before add.
func (d *decoder) grow(where string, n int64, add func()) error {
	if n > d.lim.MaxElements {
		return d.fail(where, "more than %d values", d.lim.MaxElements)
	}
	add()
	return nil
}

func (d *decoder) tensor(data []byte, where string, t *Tensor) error {
	var f64 []float64
	var i32, dims []int64
	external := false
	err := d.fields(data, where, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch num {
		case 1:
			if err := d.ints(v, typ, x, where+".dims", &dims); err != nil {
				return err
			}
			if len(dims) > d.lim.MaxDims {
				return d.fail(where, "more than %d dimensions", d.lim.MaxDims)
			}
		case 2:
			t.DataType = DataType(x)
		case 3:
			return d.fail(where, "segmented tensors are not supported: export the tensor whole")
		case 4:
			return d.floats(v, typ, x, where+".float_data", &t.Floats)
		case 5:
			return d.ints(v, typ, x, where+".int32_data", &i32)
		case 6:
			t.strings++
		case 7:
			return d.ints(v, typ, x, where+".int64_data", &t.Int64s)
		case 8:
			t.Name = string(v)
		case 9:
			t.Raw = v
		case 10:
			if typ == protowire.Fixed64Type {
				return d.grow(where, int64(len(f64))+1, func() { f64 = append(f64, math.Float64frombits(x)) })
			} else if typ == protowire.BytesType && len(v)%8 == 0 {
				if int64(len(f64)+len(v)/8) > d.lim.MaxElements {
					return d.fail(where, "more than %d values", d.lim.MaxElements)
				}
				for i := 0; i < len(v); i += 8 {
					f64 = append(f64, math.Float64frombits(binary.LittleEndian.Uint64(v[i:])))
				}
			}
		case 13, 14:
			if num == 14 && x == 1 || num == 13 {
				external = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if t.Name != "" {
		where += " (" + t.Name + ")"
	}
	if external {
		return d.fail(where, "its values are in an external file: export the model with its weights inside (torch.onnx.export does below 2 GiB)")
	}
	t.Dims = dims
	if i32 != nil {
		t.Int32s = make([]int32, len(i32))
		for i, v := range i32 {
			t.Int32s[i] = int32(v)
		}
	}
	if f64 != nil {
		t.Doubles = f64
	}
	n := int64(1)
	for _, dim := range dims {
		if dim < 0 {
			return d.fail(where, "dimension %d is negative", dim)
		}
		if dim > 0 && n > d.lim.MaxElements/dim {
			return d.fail(where, "dims %v hold more than %d values", dims, d.lim.MaxElements)
		}
		n *= dim
	}
	if n > d.lim.MaxElements {
		return d.fail(where, "dims %v hold more than %d values", dims, d.lim.MaxElements)
	}
	d.total += n
	if d.total > d.lim.MaxTotalElements {
		return d.fail(where, "the model's constants hold more than %d values in all", d.lim.MaxTotalElements)
	}
	stored := map[string]int{"float_data": len(t.Floats), "int32_data": len(t.Int32s), "int64_data": len(t.Int64s), "double_data": len(t.Doubles), "string_data": t.strings}
	var have []string
	for field, count := range stored {
		if count > 0 {
			have = append(have, field)
			if int64(count) != n {
				return d.fail(where, "%s has %d values but dims %v hold %d", field, count, dims, n)
			}
		}
	}
	if t.Raw != nil {
		have = append(have, "raw_data")
		size := t.DataType.size()
		if size == 0 {
			return d.fail(where, "raw_data of %s values, which have no fixed size", t.DataType)
		}
		if int64(len(t.Raw)) != n*int64(size) {
			return d.fail(where, "raw_data has %d bytes but dims %v of %s hold %d", len(t.Raw), dims, t.DataType, n*int64(size))
		}
	}
	if len(have) > 1 {
		return d.fail(where, "values in more than one field (%s)", strings.Join(have, ", "))
	}
	if len(have) == 0 && n > 0 {
		return d.fail(where, "dims %v hold %d values but none are stored", dims, n)
	}
	return nil
}

func (d *decoder) valueInfo(data []byte, where string, vi *ValueInfo) error {
	return d.fields(data, where, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			vi.Name = string(v)
		case num == 2 && typ == protowire.BytesType:
			return d.fields(v, where+".type", func(n protowire.Number, t protowire.Type, b []byte, _ uint64) error {
				if n != 1 || t != protowire.BytesType {
					return nil // sequences, maps, optionals: not tensors
				}
				return d.tensorType(b, where+".type", vi)
			})
		}
		return nil
	})
}

func (d *decoder) tensorType(data []byte, where string, vi *ValueInfo) error {
	return d.fields(data, where, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			vi.ElemType = DataType(x)
		case num == 2 && typ == protowire.BytesType:
			vi.Shape = []Dim{}
			return d.fields(v, where+".shape", func(n protowire.Number, t protowire.Type, b []byte, _ uint64) error {
				if n != 1 || t != protowire.BytesType {
					return nil
				}
				if len(vi.Shape) >= d.lim.MaxDims {
					return d.fail(where, "a shape of more than %d dimensions", d.lim.MaxDims)
				}
				dim := Dim{Value: -1}
				if err := d.fields(b, where+".shape.dim", func(k protowire.Number, kt protowire.Type, s []byte, y uint64) error {
					switch {
					case k == 1 && kt == protowire.VarintType:
						dim.Value = int64(y)
					case k == 2 && kt == protowire.BytesType:
						dim.Param = string(s)
					}
					return nil
				}); err != nil {
					return err
				}
				vi.Shape = append(vi.Shape, dim)
				return nil
			})
		}
		return nil
	})
}

// ErrNotONNX is returned by Sniff for bytes that cannot be an ONNX model.
var ErrNotONNX = errors.New("not an ONNX model")

// Sniff reports cheaply whether data starts like an ONNX model (a
// protobuf whose first field is one a ModelProto has), without decoding
// it: what the Engine's Load uses to tell ONNX from network JSON.
func Sniff(data []byte) error {
	num, typ, n := protowire.ConsumeTag(data)
	if n < 0 {
		return ErrNotONNX
	}
	switch {
	case num == 1 && typ == protowire.VarintType, num >= 2 && num <= 7 && typ == protowire.BytesType && num != 5, num == 8 && typ == protowire.BytesType:
		return nil
	}
	return ErrNotONNX
}
