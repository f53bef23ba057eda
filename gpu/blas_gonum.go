//go:build !openblas || !cgo

package gpu

const blasName = "gonum (pure Go)"

// setBLASThreads does nothing for gonum, whose products split across
// goroutines as the Go scheduler allows.
func setBLASThreads(int) {}
