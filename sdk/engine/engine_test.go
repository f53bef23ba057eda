package engine

import (
	"reflect"
	"testing"
	"unsafe"
)

// Outputs are read in place where they can be and decoded where they
// cannot, with the same values either way.
func TestFloat32sOfReadsTheWireForm(t *testing.T) {
	want := []float32{1.5, -2, 0, 3e-7}
	wire := Float32Bytes(want)
	got, err := float32sOf(wire)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("aligned: %v, %v", got, err)
	}
	if littleEndian && &got[0] != (*float32)(unsafe.Pointer(&wire[0])) {
		t.Error("aligned little-endian outputs were copied")
	}
	// One byte in: no longer aligned for a float32.
	shifted := append([]byte{0}, wire...)[1:]
	if got, err := float32sOf(shifted); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("unaligned: %v, %v", got, err)
	}
	if got, err := float32sOf(nil); err != nil || len(got) != 0 {
		t.Fatalf("no outputs: %v, %v", got, err)
	}
	if _, err := float32sOf(wire[:5]); err == nil {
		t.Fatal("5 bytes decoded as float32 values")
	}
}
