package sdk

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hackarena/hackarena/sdk/proto/pluginv1"
)

func TestTensorValidateAndDecode(t *testing.T) {
	f32 := make([]byte, 8)
	binary.LittleEndian.PutUint32(f32, math.Float32bits(1.5))
	binary.LittleEndian.PutUint32(f32[4:], math.Float32bits(-2))
	cases := []struct {
		name    string
		tensor  Tensor
		want    []float32
		wantErr bool
	}{
		{"uint8", Tensor{Shape: []int{1, 2, 2}, DType: Uint8, Data: []byte{0, 1, 254, 255}}, []float32{0, 1, 254, 255}, false},
		{"float32", Tensor{Shape: []int{2}, DType: Float32, Data: f32}, []float32{1.5, -2}, false},
		{"short data", Tensor{Shape: []int{2, 2}, DType: Uint8, Data: []byte{1, 2, 3}}, nil, true},
		{"negative dim", Tensor{Shape: []int{-1, -4}, DType: Uint8, Data: []byte{1, 2, 3, 4}}, nil, true},
		{"no dtype", Tensor{Shape: []int{1}, Data: []byte{1}}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.tensor.Float32s()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConvertersRoundTrip(t *testing.T) {
	batch := Batch{Size: 2,
		Images:  &Tensor{Shape: []int{2, 1, 2}, DType: Uint8, Data: []byte{1, 2, 3, 4}},
		Texts:   []string{"a", "b"},
		Columns: []Column{{Name: "x", Numbers: []float64{1, math.Inf(1)}}, {Name: "c", Strings: []string{"p", "q"}}},
	}
	back, err := batchFromProto(batchToProto(batch))
	if err != nil || !reflect.DeepEqual(back, batch) {
		t.Fatalf("batch round trip: %+v, %v", back, err)
	}
	preds := Predictions{Classes: []int{3, 1}, Probabilities: [][]float32{{0.1, 0.9}, {0.8, 0.2}}, Values: []float64{1, 2}}
	pb, err := predictionsToProto(preds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := predictionsFromProto(pb, 2)
	if err != nil || !reflect.DeepEqual(got, preds) {
		t.Fatalf("predictions round trip: %+v, %v", got, err)
	}
	if _, err := predictionsToProto(Predictions{Probabilities: [][]float32{{1, 0}, {1}}}); err == nil {
		t.Fatal("ragged probabilities accepted")
	}
	pb.NumClasses = 3
	if _, err := predictionsFromProto(pb, 2); err == nil {
		t.Fatal("probabilities that do not divide into rows accepted")
	}
	// Declared sizes are checked against the batch before anything is
	// expanded from them.
	var shape *ReplyShapeError
	for name, bad := range map[string]*pluginv1.PredictResponse{
		"one class, many rows": {Probabilities: make([]float32, 3), NumClasses: 1},
		"more classes":         {Classes: []int64{0, 1, 2}},
		"more values":          {Values: []float64{0, 1, 2}},
		"negative classes":     {Probabilities: make([]float32, 4), NumClasses: -2},
	} {
		if _, err := predictionsFromProto(bad, 2); !errors.As(err, &shape) {
			t.Errorf("%s: got %v, want a ReplyShapeError", name, err)
		}
	}
}

// Rows cut in order from one slice (a network's outputs) go out as that
// slice; rows in any other form are copied, in their order.
func TestPredictionsToProtoSendsRowsOfOneSliceAsTheyAre(t *testing.T) {
	out := []float32{0, 1, 2, 3, 4, 5, 6, 7}
	rows := func(offsets ...int) [][]float32 {
		var r [][]float32
		for _, o := range offsets {
			r = append(r, out[o:o+2])
		}
		return r
	}
	for _, tc := range []struct {
		name    string
		rows    [][]float32
		inPlace bool
		want    []float32
	}{
		{"in order", rows(0, 2, 4, 6), true, out},
		{"a prefix", rows(0, 2), true, out[:4]},
		{"batch of one", rows(4), true, out[4:6]},
		{"swapped", rows(2, 0), false, []float32{2, 3, 0, 1}},
		{"repeated", rows(0, 0), false, []float32{0, 1, 0, 1}},
		{"overlapping", [][]float32{out[0:2], out[1:3]}, false, []float32{0, 1, 1, 2}},
		{"separate", [][]float32{{9, 8}, {7, 6}}, false, []float32{9, 8, 7, 6}},
		{"short capacity", [][]float32{out[0:2:2], out[2:4]}, false, []float32{0, 1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pb, err := predictionsToProto(Predictions{Classes: make([]int, len(tc.rows)), Probabilities: tc.rows})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pb.Probabilities, tc.want) || pb.NumClasses != 2 {
				t.Fatalf("probabilities %v in rows of %d, want %v", pb.Probabilities, pb.NumClasses, tc.want)
			}
			if inPlace := &pb.Probabilities[0] == &tc.rows[0][0]; inPlace != tc.inPlace {
				t.Fatalf("sent in place: %v, want %v", inPlace, tc.inPlace)
			}
		})
	}
}

// FuzzPredictionsFromProto: any reply bytes, any batch size: decoding
// never panics, and what it returns never has more rows than the batch.
func FuzzPredictionsFromProto(f *testing.F) {
	seed, _ := proto.Marshal(&pluginv1.PredictResponse{Classes: []int64{1, 2}, Probabilities: []float32{0.5, 0.5, 1, 0}, NumClasses: 2})
	f.Add(seed, uint16(2))
	oneClass, _ := proto.Marshal(&pluginv1.PredictResponse{Probabilities: make([]float32, 64), NumClasses: 1})
	f.Add(oneClass, uint16(2))
	f.Fuzz(func(t *testing.T, raw []byte, size uint16) {
		var resp pluginv1.PredictResponse
		if proto.Unmarshal(raw, &resp) != nil {
			return
		}
		p, err := predictionsFromProto(&resp, int(size))
		if err != nil {
			return
		}
		if len(p.Classes) > int(size) || len(p.Values) > int(size) || len(p.Probabilities) > int(size) {
			t.Fatalf("batch of %d decoded into %d classes, %d values, %d probability rows", size, len(p.Classes), len(p.Values), len(p.Probabilities))
		}
	})
}
