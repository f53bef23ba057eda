package onnx

import (
	"math"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"
)

// Encode writes m as an ONNX file (the fields Decode reads): for tools and
// tests that make models in Go, hostile ones included, since it checks
// nothing.
func Encode(m *Model) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(max(m.IRVersion, 8)))
	if m.Producer != "" {
		b = appendString(b, 2, m.Producer)
	}
	domains := make([]string, 0, len(m.Opsets))
	for d := range m.Opsets {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		var o []byte
		if d != "" {
			o = appendString(o, 1, d)
		}
		o = protowire.AppendTag(o, 2, protowire.VarintType)
		o = protowire.AppendVarint(o, uint64(m.Opsets[d]))
		b = appendBytes(b, 8, o)
	}
	return appendBytes(b, 7, encodeGraph(&m.Graph))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	return appendBytes(b, num, []byte(s))
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func encodeGraph(g *Graph) []byte {
	var b []byte
	for i := range g.Nodes {
		b = appendBytes(b, 1, encodeNode(&g.Nodes[i]))
	}
	if g.Name != "" {
		b = appendString(b, 2, g.Name)
	}
	for i := range g.Initializers {
		b = appendBytes(b, 5, EncodeTensor(&g.Initializers[i]))
	}
	for i := range g.Inputs {
		b = appendBytes(b, 11, encodeValueInfo(&g.Inputs[i]))
	}
	for i := range g.Outputs {
		b = appendBytes(b, 12, encodeValueInfo(&g.Outputs[i]))
	}
	return b
}

func encodeNode(n *Node) []byte {
	var b []byte
	for _, in := range n.Inputs {
		b = appendString(b, 1, in)
	}
	for _, out := range n.Outputs {
		b = appendString(b, 2, out)
	}
	if n.Name != "" {
		b = appendString(b, 3, n.Name)
	}
	b = appendString(b, 4, n.OpType)
	for i := range n.Attributes {
		b = appendBytes(b, 5, encodeAttribute(&n.Attributes[i]))
	}
	if n.Domain != "" {
		b = appendString(b, 7, n.Domain)
	}
	return b
}

func encodeAttribute(a *Attribute) []byte {
	b := appendString(nil, 1, a.Name)
	switch a.Type {
	case AttrFloat:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.F))
	case AttrInt:
		b = appendVarint(b, 3, uint64(a.I))
	case AttrString:
		b = appendBytes(b, 4, a.S)
	case AttrTensor:
		if a.T != nil {
			b = appendBytes(b, 5, EncodeTensor(a.T))
		}
	case AttrFloats:
		var p []byte
		for _, f := range a.Floats {
			p = protowire.AppendFixed32(p, math.Float32bits(f))
		}
		b = appendBytes(b, 7, p)
	case AttrInts:
		var p []byte
		for _, v := range a.Ints {
			p = protowire.AppendVarint(p, uint64(v))
		}
		b = appendBytes(b, 8, p)
	}
	return appendVarint(b, 20, uint64(a.Type))
}

// EncodeTensor writes a TensorProto: its values as raw_data when Raw is
// set, else in the typed fields.
func EncodeTensor(t *Tensor) []byte {
	var b []byte
	if len(t.Dims) > 0 {
		var p []byte
		for _, d := range t.Dims {
			p = protowire.AppendVarint(p, uint64(d))
		}
		b = appendBytes(b, 1, p)
	}
	b = appendVarint(b, 2, uint64(t.DataType))
	switch {
	case t.Raw != nil:
		b = appendBytes(b, 9, t.Raw)
	case t.Floats != nil:
		var p []byte
		for _, f := range t.Floats {
			p = protowire.AppendFixed32(p, math.Float32bits(f))
		}
		b = appendBytes(b, 4, p)
	case t.Int64s != nil:
		var p []byte
		for _, v := range t.Int64s {
			p = protowire.AppendVarint(p, uint64(v))
		}
		b = appendBytes(b, 7, p)
	case t.Int32s != nil:
		var p []byte
		for _, v := range t.Int32s {
			p = protowire.AppendVarint(p, uint64(int64(v)))
		}
		b = appendBytes(b, 5, p)
	}
	if t.Name != "" {
		b = appendString(b, 8, t.Name)
	}
	return b
}

func encodeValueInfo(v *ValueInfo) []byte {
	var shape []byte
	for _, d := range v.Shape {
		var dim []byte
		if d.Param != "" {
			dim = appendString(dim, 2, d.Param)
		} else if d.Value >= 0 {
			dim = appendVarint(dim, 1, uint64(d.Value))
		}
		shape = appendBytes(shape, 1, dim)
	}
	tensor := appendVarint(nil, 1, uint64(v.ElemType))
	if v.Shape != nil {
		tensor = appendBytes(tensor, 2, shape)
	}
	b := appendString(nil, 1, v.Name)
	return appendBytes(b, 2, appendBytes(nil, 1, tensor))
}
