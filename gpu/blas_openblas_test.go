//go:build openblas && cgo

package gpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// TestOpenBLASMatchesGonum compares every transpose case of Sgemm with
// gonum's, on shapes that are not multiples of any block size.
func TestOpenBLASMatchesGonum(t *testing.T) {
	if BLAS() != "OpenBLAS (cgo)" {
		t.Fatalf("built with the openblas tag but BLAS() is %q", BLAS())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	m, n, k := 37, 23, 71
	for _, tA := range []blas.Transpose{blas.NoTrans, blas.Trans} {
		for _, tB := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			a, b, c := fill(m*k), fill(k*n), fill(m*n)
			lda, ldb := k, n
			if tA == blas.Trans {
				lda = m
			}
			if tB == blas.Trans {
				ldb = k
			}
			want := append([]float32(nil), c...)
			gonum.Implementation{}.Sgemm(tA, tB, m, n, k, 0.5, a, lda, b, ldb, 2, want, n)
			openBLAS{}.Sgemm(tA, tB, m, n, k, 0.5, a, lda, b, ldb, 2, c, n)
			for i := range c {
				if math.Abs(float64(c[i]-want[i])) > 1e-3 {
					t.Fatalf("tA=%c tB=%c: element %d is %v, gonum says %v", tA, tB, i, c[i], want[i])
				}
			}
		}
	}
}
