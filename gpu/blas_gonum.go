//go:build !openblas || !cgo

package gpu

const blasName = "gonum (pure Go)"
