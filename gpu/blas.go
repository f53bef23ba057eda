package gpu

import "runtime"

// BLAS names the matrix-multiply library gorgonia calls: "gonum (pure Go)"
// unless the binary was built with the openblas tag.
func BLAS() string { return blasName }

// ShareCPU gives each of slots concurrent runs an equal share of the CPU
// cores for its matrix products: max(1, cores/slots) BLAS threads. On a
// small machine this matters more than it looks: OpenBLAS's idle threads
// spin, and with the plugin and the judge needing the same cores, two
// threads per product made judging mnist-mlp 20% slower than one.
func ShareCPU(slots int) int {
	n := max(1, runtime.NumCPU()/max(1, slots))
	setBLASThreads(n)
	return n
}
