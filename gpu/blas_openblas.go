//go:build openblas && cgo

package gpu

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/cpu"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	G "gorgonia.org/gorgonia"
)

const blasName = "OpenBLAS (cgo)"

// The openblas build tag (make picks it when Debian's libopenblas-dev is
// installed) sends gorgonia's matrix products, where inference and
// training spend their time, to OpenBLAS; everything else stays gonum.
// OpenBLAS's own threads are not used: a large product is cut into bands
// of rows, one per thread of the process's share, each an OpenBLAS call
// on one thread (see Sgemm).
func init() {
	C.openblas_set_num_threads(1)
	blasThreads.Store(int32(max(1, runtime.NumCPU())))
	G.Use(openBLAS{})
}

// blasThreads is how many bands a large product is cut into.
var blasThreads atomic.Int32

// sgemmsRunning counts the products computing now.
var sgemmsRunning atomic.Int32

// setBLASThreads sets how many threads a product uses (process-wide).
func setBLASThreads(n int) { blasThreads.Store(int32(max(1, n))) }

// avx512Cores are the OpenBLAS core types with AVX-512 kernels.
var avx512Cores = []string{"skylakex", "cooperlake", "sapphirerapids"}

// BLASKernelEnv is the environment that has OpenBLAS use the best kernels
// this CPU runs: OPENBLAS_CORETYPE=SKYLAKEX on a CPU with AVX-512 that
// OpenBLAS does not recognise (0.3.21, Debian bookworm's, takes AMD's Zen
// 4 and 5 for a Haswell and uses its AVX2 kernels, at two thirds of the
// speed: an MNIST batch's products took 15.4 ms instead of 10.3 ms on the
// 2-core machine). Nothing when OpenBLAS already uses AVX-512, when the CPU
// lacks it, or when the operator set OPENBLAS_CORETYPE. OpenBLAS picks its
// kernels when it is loaded, before main: engine processes get this in
// their environment, and a test binary re-executes itself with it
// (UseBestBLASKernels).
func BLASKernelEnv() []string {
	if _, set := os.LookupEnv("OPENBLAS_CORETYPE"); set {
		return nil
	}
	if !(cpu.X86.HasAVX512F && cpu.X86.HasAVX512CD && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL) {
		return nil
	}
	if slices.Contains(avx512Cores, strings.ToLower(BLASCore())) {
		return nil
	}
	return []string{"OPENBLAS_CORETYPE=SKYLAKEX"}
}

// BLASCore is the kernel set OpenBLAS chose ("Haswell", "SkylakeX", ...).
func BLASCore() string { return C.GoString(C.openblas_get_corename()) }

type openBLAS struct{ gonum.Implementation }

func transpose(t blas.Transpose) C.enum_CBLAS_TRANSPOSE {
	if t == blas.NoTrans {
		return C.CblasNoTrans
	}
	return C.CblasTrans
}

// bandWork is the least work (multiply-adds) per band worth a goroutine.
const bandWork = 1 << 20

// Sgemm cuts a large product into bands of C's rows, one per thread, each
// an OpenBLAS call on one thread. OpenBLAS's own threads cost more than
// they gave on the products networks make here: an MNIST batch's two
// products took 15.4 ms on two OpenBLAS threads and 12.1 ms as two bands
// (Haswell kernels; 10.3 and 7.2 ms with the AVX-512 ones).
func (o openBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 || k == 0 || len(a) == 0 || len(b) == 0 {
		gonum.Implementation{}.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	// Products already running (a convolution's, one per thread) have the
	// threads: this one gets its share of them.
	running := int(sgemmsRunning.Add(1))
	defer sgemmsRunning.Add(-1)
	bands := min(int(blasThreads.Load())/running, m, max(1, m*n*k/bandWork))
	if bands <= 1 {
		sgemmC(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	var wg sync.WaitGroup
	for i := range bands {
		lo, hi := m*i/bands, m*(i+1)/bands
		// Row lo of op(A) starts at row lo of A, or at its column lo.
		aOff := lo * lda
		if tA != blas.NoTrans {
			aOff = lo
		}
		band := func() { sgemmC(tA, tB, hi-lo, n, k, alpha, a[aOff:], lda, b, ldb, beta, c[lo*ldc:], ldc) }
		if i == bands-1 {
			band()
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); band() }()
	}
	wg.Wait()
}

func sgemmC(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	C.cblas_sgemm(C.CblasRowMajor, transpose(tA), transpose(tB), C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(unsafe.Pointer(&a[0])), C.blasint(lda), (*C.float)(unsafe.Pointer(&b[0])), C.blasint(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.blasint(ldc))
}

func (openBLAS) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if m == 0 || n == 0 || k == 0 || len(a) == 0 || len(b) == 0 {
		gonum.Implementation{}.Dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	C.cblas_dgemm(C.CblasRowMajor, transpose(tA), transpose(tB), C.blasint(m), C.blasint(n), C.blasint(k),
		C.double(alpha), (*C.double)(unsafe.Pointer(&a[0])), C.blasint(lda), (*C.double)(unsafe.Pointer(&b[0])), C.blasint(ldb),
		C.double(beta), (*C.double)(unsafe.Pointer(&c[0])), C.blasint(ldc))
}
