// Package attack is what the hostile plugins share: a model that runs an
// attack once, on its first Predict, reports what it observed on stderr
// ("observed key=value", which the judge keeps in the submission log), and
// then answers every batch with class 0 so the run can still score.
package attack

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/hackarena/hackarena/sdk"
)

// Report writes one observation to stderr.
func Report(key string, value any) {
	fmt.Fprintf(os.Stderr, "observed %s=%v\n", key, value)
}

type model struct {
	name   string
	attack func()
	once   sync.Once
}

func (m *model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: m.name}, nil }

func (m *model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	m.once.Do(func() {
		m.attack()
		Report("attack_done", true)
	})
	return sdk.Predictions{Classes: make([]int, b.Size)}, nil
}

// Serve runs the plugin with the given attack.
func Serve(name string, attack func()) {
	sdk.Serve(&model{name: name, attack: attack})
}
