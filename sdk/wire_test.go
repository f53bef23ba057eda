package sdk

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/hackarena/hackarena/sdk/proto/pluginv1"
)

// reply is a Predict reply of n examples in rows of ten probabilities,
// every value distinct from its neighbours'.
func reply(n int, offset float32) *pluginv1.PredictResponse {
	r := &pluginv1.PredictResponse{Classes: make([]int64, n), Probabilities: make([]float32, 10*n), NumClasses: 10}
	for i := range r.Classes {
		r.Classes[i] = int64(i % 10)
	}
	for i := range r.Probabilities {
		r.Probabilities[i] = float32(i)/7 + offset
	}
	return r
}

// split cuts b where gRPC might: into frames of frame bytes.
func split(b []byte, frame int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > frame {
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:frame])))
		b = b[frame:]
	}
	return append(s, mem.SliceBuffer(bytes.Clone(b)))
}

// The codec writes protobuf's own bytes and reads them back whole, at
// every size from a plain allocation to several frames, from buffers that
// held larger messages before.
func TestWireCodecWritesAndReadsProtobufsBytes(t *testing.T) {
	codec := wireCodec{}
	// Larger first: 999 examples reuse the buffer 1,000 left, unwiped.
	for _, n := range []int{40_000, 1000, 999, 100, 12, 1, 0} {
		want, err := proto.Marshal(reply(n, 0))
		if err != nil {
			t.Fatal(err)
		}
		for round := range 3 {
			data, err := codec.Marshal(reply(n, 0))
			if err != nil {
				t.Fatalf("%d examples: %v", n, err)
			}
			if got := data.Materialize(); !bytes.Equal(got, want) {
				t.Fatalf("%d examples, round %d: %d bytes differ from protobuf's %d", n, round, len(got), len(want))
			}
			data.Free()
		}
		for _, frame := range []int{16 << 10, 1000, 7} {
			var got pluginv1.PredictResponse
			if err := codec.Unmarshal(split(want, frame), &got); err != nil {
				t.Fatalf("%d examples in frames of %d: %v", n, frame, err)
			}
			if !proto.Equal(&got, reply(n, 0)) {
				t.Fatalf("%d examples in frames of %d: decoded a different reply", n, frame)
			}
		}
	}
	if _, err := codec.Marshal("not a message"); err == nil {
		t.Fatal("a string was marshalled")
	}
	if err := codec.Unmarshal(split([]byte{1}, 1), new(int)); err == nil {
		t.Fatal("an int was unmarshalled into")
	}
}

func TestPowerOfTwoPoolHandsOutTiers(t *testing.T) {
	p := &powerOfTwoPool{}
	for _, tc := range []struct{ length, cap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {40_000, 64 << 10}, {MaxMessageBytes, MaxMessageBytes},
	} {
		b := p.Get(tc.length)
		if len(*b) != tc.length || cap(*b) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want cap %d", tc.length, len(*b), cap(*b), tc.cap)
		}
		p.Put(b)
	}
	// Past the largest tier: exactly what was asked, never kept.
	if b := p.Get(MaxMessageBytes + 1); len(*b) != MaxMessageBytes+1 {
		t.Errorf("Get past the tiers: len %d", len(*b))
	}
	// A buffer of no tier's capacity is dropped, not handed out short.
	odd := make([]byte, 300)
	p.Put(&odd)
	for range 10 {
		if b := p.Get(300); cap(*b) != 512 {
			t.Fatalf("Get(300) after Put of a 300-byte buffer: cap %d", cap(*b))
		}
	}
}

// FuzzWireCodecUnmarshal: any bytes, cut anywhere into two frames, decode
// as protobuf decodes them whole.
func FuzzWireCodecUnmarshal(f *testing.F) {
	seed, _ := proto.Marshal(reply(3, 0.5))
	f.Add(seed, uint16(5))
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint16(2))
	f.Fuzz(func(t *testing.T, raw []byte, cut uint16) {
		at := int(cut) % (len(raw) + 1)
		frames := mem.BufferSlice{mem.SliceBuffer(bytes.Clone(raw[:at])), mem.SliceBuffer(bytes.Clone(raw[at:]))}
		var got, want pluginv1.PredictResponse
		err := wireCodec{}.Unmarshal(frames, &got)
		wantErr := proto.Unmarshal(raw, &want)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("codec error %v, protobuf error %v", err, wantErr)
		}
		if err == nil && !proto.Equal(&got, &want) {
			t.Fatal("the codec decoded a different message")
		}
	})
}

// contentTypes answers Predict with a fixed reply and records each call's
// content-type.
type contentTypes struct {
	pluginv1.UnimplementedModelServer
	seen []string
}

func (c *contentTypes) Predict(ctx context.Context, _ *pluginv1.PredictRequest) (*pluginv1.PredictResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c.seen = append(c.seen, md.Get("content-type")...)
	return reply(1000, 0.25), nil
}

// A judge or plugin with the codec talks to a peer with gRPC's own (an
// older SDK, another language's gRPC) as protobuf always did.
func TestTheWireCodecSpeaksToPlainGRPC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server []grpc.ServerOption
		dial   []grpc.DialOption
	}{
		{"codec client, plain server", nil, DialOptions()},
		{"plain client, codec server", ServerOptions(), nil},
		{"codec on both", ServerOptions(), DialOptions()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "s")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer(tc.server...)
			model := &contentTypes{}
			pluginv1.RegisterModelServer(srv, model)
			go func() { _ = srv.Serve(l) }()
			defer srv.Stop()
			conn, err := grpc.NewClient("unix://"+sock, append(tc.dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := pluginv1.NewModelClient(conn)
			for range 3 {
				got, err := client.Predict(context.Background(), &pluginv1.PredictRequest{BatchId: 1})
				if err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got, reply(1000, 0.25)) {
					t.Fatal("the reply arrived changed")
				}
			}
			for _, ct := range model.seen {
				if ct != "application/grpc" && ct != "application/grpc+proto" {
					t.Fatalf("content-type %q, want gRPC's protobuf", ct)
				}
			}
		})
	}
}
