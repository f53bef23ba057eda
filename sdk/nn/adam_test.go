package nn

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// adamParam is a weight array with a gradient array bound to it, as a
// training step leaves them: the gradient of Σ w·c, written into the
// returned slice before each step.
func adamParam(t testing.TB, g *G.ExprGraph, w []float32) (*G.Node, []float32) {
	t.Helper()
	n := G.NodeFromAny(g, tensor.New(tensor.WithShape(len(w)), tensor.WithBacking(w)), G.WithName("w"))
	c := G.NodeFromAny(g, tensor.New(tensor.WithShape(len(w)), tensor.WithBacking(make([]float32, len(w)))))
	prod, err := G.HadamardProd(n, c)
	if err != nil {
		t.Fatal(err)
	}
	cost, err := G.Sum(prod)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(cost, n); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(n))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	grad, err := n.Grad()
	if err != nil {
		t.Fatal(err)
	}
	return n, grad.Data().([]float32)
}

// TestAdamStepsAsGorgoniasSolver: on ordinary values our in-place Adam
// gives gorgonia's AdamSolver's weights exactly, over many steps, arrays
// large enough to be split over threads among them.
func TestAdamStepsAsGorgoniasSolver(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{7, adamParallelFrom + 3} {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		ours, theirs := append([]float32(nil), w...), append([]float32(nil), w...)
		p1, g1 := adamParam(t, G.NewGraph(), ours)
		p2, g2 := adamParam(t, G.NewGraph(), theirs)
		a := newAdam(0.01, 0)
		solver := G.NewAdamSolver(G.WithLearnRate(0.01), G.WithEps(1e-7))
		for step := 0; step < 20; step++ {
			for i := range g1 {
				g1[i] = float32(rng.NormFloat64()) * 0.1
				g2[i] = g1[i]
			}
			if err := a.Step([]*G.Node{p1}); err != nil {
				t.Fatal(err)
			}
			if err := solver.Step(G.NodesToValueGrads(G.Nodes{p2})); err != nil {
				t.Fatal(err)
			}
		}
		for i := range ours {
			if ours[i] != theirs[i] {
				t.Fatalf("n=%d: weight %d is %v, gorgonia's solver gives %v", n, i, ours[i], theirs[i])
			}
		}
	}
}

// TestAdamFlushesSubnormalMoments: once a weight's gradient stops, its
// moments go to exactly zero instead of passing through float32's
// subnormal range (where every operation is tens of times slower): after
// no step is a moment subnormal, which without the flush the first one is
// from step 743 on. A gradient too small to square is taken as
// such.
func TestAdamFlushesSubnormalMoments(t *testing.T) {
	g := G.NewGraph()
	w := []float32{1, 1}
	p, grad := adamParam(t, g, w)
	a := newAdam(0.001, 0)
	subnormal := func(x float32) bool { return x != 0 && math.Abs(float64(x)) < 1.1754944e-38 }
	for step := 0; step < 1000; step++ {
		grad[0], grad[1] = 0, 1e-20
		if step == 0 {
			grad[0] = 1e-3
		}
		if err := a.Step([]*G.Node{p}); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if subnormal(a.m[0][i]) || subnormal(a.v[0][i]) {
				t.Fatalf("step %d: weight %d's moments are %v and %v, subnormal", step+1, i, a.m[0][i], a.v[0][i])
			}
		}
	}
	if a.m[0][0] != 0 {
		t.Errorf("the first moment of a weight whose gradient stopped 1000 steps ago is %v, want 0", a.m[0][0])
	}
	if math.IsNaN(float64(w[0])) || math.IsNaN(float64(w[1])) {
		t.Errorf("weights became %v", w)
	}
}

// BenchmarkAdamStep: one step over an MNIST MLP's hidden kernel, with
// ordinary gradients and with gradients that vanish (their moments pass
// through the subnormal range); x-ordinary is the second over the first.
func BenchmarkAdamStep(b *testing.B) {
	const n = 784 * 128
	run := func(scale float32) float64 {
		g := G.NewGraph()
		w := make([]float32, n)
		p, grad := adamParam(b, g, w)
		a := newAdam(0.001, 0)
		var total float64
		for i := 0; i < b.N; i++ {
			for j := range grad {
				grad[j] = scale * float32(j%7+1)
			}
			start := time.Now()
			if err := a.Step([]*G.Node{p}); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start).Seconds()
		}
		return total / float64(b.N)
	}
	ordinary, vanishing := run(1e-3), run(1e-19)
	b.ReportMetric(ordinary*1e9/n, "ns/weight")
	b.ReportMetric(vanishing/ordinary, "x-ordinary")
}
