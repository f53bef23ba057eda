package gpu

// BLAS names the matrix-multiply library gorgonia calls: "gonum (pure Go)"
// unless the binary was built with the openblas tag.
func BLAS() string { return blasName }
