package gpu

import (
	"os"
	"runtime"
	"syscall"

	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
)

// BLAS names the matrix-multiply library gorgonia calls: "gonum (pure Go)"
// unless the binary was built with the openblas tag.
func BLAS() string { return blasName }

// ShareCPU gives each of slots concurrent runs an equal share of the CPU
// cores for its matrix products: max(1, cores/slots) BLAS threads. On a
// small machine this matters more than it looks: OpenBLAS's idle threads
// spin, and with the plugin and the judge needing the same cores, two
// threads per product made judging mnist-mlp 20% slower than one.
func ShareCPU(slots int) int {
	n := cpuShare(slots)
	setBLASThreads(n)
	return n
}

// cpuShare is one of slots' share of the cores, at least one.
func cpuShare(slots int) int { return max(1, runtime.NumCPU()/max(1, slots)) }

// sgemm is c = a·b for row-major m×k and k×n matrices, on gorgonia's BLAS
// (the one inference uses).
func sgemm(m, n, k int, a, b, c []float32) {
	G.WhichBLAS().Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, k, b, n, 0, c, n)
}

// UseBestBLASKernels re-executes this process with BLASKernelEnv when
// that would change OpenBLAS's kernels, which are chosen when the library
// is loaded, before main runs. For a process whose own products count (a
// benchmark's in-process baseline); engine processes get the environment
// from the judge instead. It returns when nothing would change, or when
// the re-execution failed (the kernels stay the detected ones).
func UseBestBLASKernels() {
	env := BLASKernelEnv()
	if len(env) == 0 {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, os.Args, append(os.Environ(), env...))
}
