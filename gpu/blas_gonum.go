//go:build !openblas || !cgo

package gpu

const blasName = "gonum (pure Go)"

// setBLASThreads does nothing for gonum, whose products split across
// goroutines as the Go scheduler allows.
func setBLASThreads(int) {}

// BLASKernelEnv is nothing for gonum, which picks its kernels itself.
func BLASKernelEnv() []string { return nil }

// BLASCore names gonum's kernels.
func BLASCore() string { return "gonum" }
