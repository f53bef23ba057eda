package nn

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
)

// adam is the Adam update in place: one pass over each weight array per
// step, its moments kept in arrays made once. Gorgonia's AdamSolver took
// 80% of an MNIST MLP epoch (batch 128), cloning every gradient and
// moment into new tensors each step; this does the same float32
// arithmetic in the same order, so a model trains to the same bytes.
type adam struct {
	lr, beta1, beta2, eps, l2 float64
	iter                      int
	m, v                      [][]float32
}

func newAdam(lr, l2 float64) *adam {
	return &adam{lr: lr, beta1: 0.9, beta2: 0.999, eps: 1e-7, l2: l2}
}

// Step updates each parameter by its gradient and zeroes the gradient
// (the backward pass adds into it).
func (a *adam) Step(params []*G.Node) error {
	if a.m == nil {
		a.m, a.v = make([][]float32, len(params)), make([][]float32, len(params))
	}
	a.iter++
	// As gorgonia computes them: the corrections in float64, their
	// inverses, the rates and ε in float32.
	correction1 := 1 - math.Pow(a.beta1, float64(a.iter))
	correction2 := 1 - math.Pow(a.beta2, float64(a.iter))
	inv1, inv2 := float32(1)/float32(correction1), float32(1)/float32(correction2)
	beta1, beta2 := float32(a.beta1), float32(a.beta2)
	omb1, omb2 := float32(1)-beta1, float32(1)-beta2
	eps, negEta, l2 := float32(a.eps), -float32(a.lr), float32(a.l2)
	for i, p := range params {
		w, ok := p.Value().Data().([]float32)
		if !ok {
			return fmt.Errorf("adam: parameter %s is %T, not float32", p.Name(), p.Value().Data())
		}
		gv, err := p.Grad()
		if err != nil {
			return fmt.Errorf("adam: no gradient for %s: %w", p.Name(), err)
		}
		g, ok := gv.Data().([]float32)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("adam: the gradient of %s is not %d float32s", p.Name(), len(w))
		}
		if a.m[i] == nil {
			a.m[i], a.v[i] = make([]float32, len(w)), make([]float32, len(w))
		}
		m, v := a.m[i], a.v[i]
		for j, gj := range g {
			if a.l2 > 0 {
				gj += w[j] * l2
			}
			t1 := gj * omb1
			g2 := gj * gj
			g2 *= omb2
			t1 += m[j] * beta1
			g2 += v[j] * beta2
			m[j], v[j] = t1, g2
			mHat := t1 * inv1
			vHat := g2 * inv2
			vHat = float32(math.Sqrt(float64(vHat))) + eps
			mHat *= negEta
			w[j] += mHat / vHat
			g[j] = 0
		}
	}
	return nil
}
