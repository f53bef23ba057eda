package nn

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// progress draws Keras's per-epoch line:
//
//	Epoch 1/5
//	1875/1875 [==============================] - 9s 5ms/step - loss: 0.2954 - accuracy: 0.9143 - val_loss: 0.1459 - val_accuracy: 0.9569
//
// redrawing it in place at most every 200 ms.
type progress struct {
	w     io.Writer
	steps int
	start time.Time
	drawn time.Time
}

func newProgress(w io.Writer, epoch, epochs, steps int) *progress {
	p := &progress{w: w, steps: steps, start: time.Now()}
	if w != nil {
		fmt.Fprintf(w, "Epoch %d/%d\n", epoch, epochs)
	}
	return p
}

func (p *progress) bar(step int) string {
	const width = 30
	done := width * step / p.steps
	s := strings.Repeat("=", done)
	if done < width {
		s += ">" + strings.Repeat(".", width-done-1)
	}
	digits := len(fmt.Sprint(p.steps))
	return fmt.Sprintf("%*d/%d [%s]", digits, step, p.steps, s)
}

func (p *progress) step(step int, loss, acc float64) {
	if p.w == nil || (step < p.steps && time.Since(p.drawn) < 200*time.Millisecond) {
		return
	}
	p.drawn = time.Now()
	elapsed := time.Since(p.start)
	eta := time.Duration(float64(elapsed) / float64(step) * float64(p.steps-step))
	fmt.Fprintf(p.w, "\r%s - ETA: %s - loss: %.4f%s", p.bar(step), eta.Round(time.Second), loss, metric("accuracy", acc))
}

func (p *progress) done(e Epoch) {
	if p.w == nil {
		return
	}
	perStep := e.Duration / time.Duration(p.steps)
	fmt.Fprintf(p.w, "\r%s - %s %s/step - loss: %.4f%s%s%s\n", p.bar(p.steps), e.Duration.Round(time.Second), perStep.Round(time.Millisecond),
		e.Loss, metric("accuracy", e.Accuracy), metric("val_loss", e.ValLoss), metric("val_accuracy", e.ValAccuracy))
}

func metric(name string, v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	return fmt.Sprintf(" - %s: %.4f", name, v)
}
