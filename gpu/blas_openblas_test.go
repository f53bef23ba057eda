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
// gonum's, on shapes that are not multiples of any block size, small
// enough for one call and large enough to be cut into bands (on one to
// three threads, so bands of unequal rows).
func TestOpenBLASMatchesGonum(t *testing.T) {
	defer setBLASThreads(int(blasThreads.Load()))
	for _, shape := range [][3]int{{37, 23, 71}, {1, 300, 3500}, {333, 65, 129}} {
		for _, threads := range []int{1, 2, 3} {
			setBLASThreads(threads)
			sgemmMatchesGonum(t, shape[0], shape[1], shape[2])
		}
	}
}

func sgemmMatchesGonum(t *testing.T, m, n, k int) {
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
				if math.Abs(float64(c[i]-want[i])) > 1e-3*max(1, math.Abs(float64(want[i]))) {
					t.Fatalf("%dx%dx%d on %d threads, tA=%c tB=%c: element %d is %v, gonum says %v", m, n, k, blasThreads.Load(), tA, tB, i, c[i], want[i])
				}
			}
		}
	}
}

// TestAnOperatorsBLASKernelsStand: with OPENBLAS_CORETYPE set, engine
// processes get no other.
func TestAnOperatorsBLASKernelsStand(t *testing.T) {
	t.Setenv("OPENBLAS_CORETYPE", "Haswell")
	if env := BLASKernelEnv(); env != nil {
		t.Fatalf("BLASKernelEnv() = %v with the operator's choice set", env)
	}
}
