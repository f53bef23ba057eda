//go:build !openblas

package gpu

const blasName = "gonum (pure Go)"
