package sdk

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// wireCodec is gRPC's proto codec with the buffers of wireBuffers: the same
// bytes on the wire ("application/grpc+proto"), without gRPC's default
// pool's cost for the messages judge, plugin and Engine exchange. That
// pool's tiers jump from 32 KiB to 1 MiB and it clears a buffer's whole
// capacity on every reuse: each batch's 40 KiB of outputs or predictions
// cleared 1 MiB, and a plugin (a fresh process) page-faulted the MiB in on
// its first uses, about 250 faults a buffer.
type wireCodec struct{}

var _ encoding.CodecV2 = wireCodec{}

// Name keeps the standard content-subtype: a server in another language
// sees a plain protobuf call.
func (wireCodec) Name() string { return "proto" }

// Marshal writes v into the smallest power-of-two buffer that holds it.
func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("marshal: %T is not a protobuf message", v)
	}
	// UseCachedSize reuses what Size computed; nothing mutates m between.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if size < wireMinPooled {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := wireBuffers.Get(size)
	b, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		wireBuffers.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, wireBuffers)}, nil
}

// Unmarshal decodes a message that arrived in one or more frames.
func (wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := messageOf(v)
	if m == nil {
		return fmt.Errorf("unmarshal: %T is not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(wireBuffers)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// messageOf accepts generated messages of either protobuf API (go-plugin's
// own services share the connection).
func messageOf(v any) proto.Message {
	switch m := v.(type) {
	case protoadapt.MessageV2:
		return m
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m)
	}
	return nil
}

// wireMinPooled is the size below which a message gets a plain allocation,
// as in gRPC's codec.
const wireMinPooled = 1 << 10

// wireBuffers serves the codec's buffers.
var wireBuffers = &powerOfTwoPool{}

// powerOfTwoPool is a mem.BufferPool with a tier for every power of two
// from 256 B to MaxMessageBytes. Its buffers come back as they were left:
// the codec writes every byte it hands on (a marshalled message, or the
// frames it joins) before anything reads them.
type powerOfTwoPool struct {
	tiers [maxPooledExp + 1]sync.Pool
}

const minPooledExp, maxPooledExp = 8, 26

// MaxMessageBytes fits the largest tier.
var _ [1<<maxPooledExp - MaxMessageBytes]struct{}

func (p *powerOfTwoPool) Get(length int) *[]byte {
	exp := max(minPooledExp, bits.Len(uint(max(length, 1)-1)))
	if exp > maxPooledExp {
		b := make([]byte, length)
		return &b
	}
	if b, ok := p.tiers[exp].Get().(*[]byte); ok {
		*b = (*b)[:length]
		return b
	}
	b := make([]byte, length, 1<<exp)
	return &b
}

// Put keeps a buffer whose capacity is one of the tiers and drops any
// other.
func (p *powerOfTwoPool) Put(b *[]byte) {
	c := cap(*b)
	exp := bits.Len(uint(c)) - 1
	if c != 1<<exp || exp < minPooledExp || exp > maxPooledExp {
		return
	}
	*b = (*b)[:0]
	p.tiers[exp].Put(b)
}
