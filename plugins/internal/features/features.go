// Package features turns raw examples into the numbers a reference
// network reads. A plugin and the command that trains its network both
// use it, so training and serving cannot drift apart.
package features

// Classes picks each example's most likely class from n rows of k
// probabilities, and returns the rows as the probabilities too.
func Classes(out []float32, n int) ([]int, [][]float32) {
	k := len(out) / n
	classes := make([]int, n)
	probs := make([][]float32, n)
	for i := range n {
		row := out[i*k : (i+1)*k]
		best := 0
		for c := range row {
			if row[c] > row[best] {
				best = c
			}
		}
		classes[i], probs[i] = best, row
	}
	return classes, probs
}
