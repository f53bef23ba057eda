// Package attack is what the hostile plugins share: a model that runs an
// attack once, on its first Predict, reports what it observed on stderr
// ("observed key=value", which the judge keeps in the submission log), and
// then answers every batch with class 0 so the run can still score.
package attack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
	// perBatch is how long each answer takes (a slow but valid plugin).
	perBatch time.Duration
}

func (m *model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: m.name}, nil }

func (m *model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	m.once.Do(func() {
		m.attack()
		Report("attack_done", true)
	})
	time.Sleep(m.perBatch)
	return sdk.Predictions{Classes: make([]int, b.Size)}, nil
}

// ServeHolding runs the plugin with the given attack, then answers each
// batch only after perBatch: it holds what the attack took for the run.
func ServeHolding(name string, attack func(), perBatch time.Duration) {
	sdk.Serve(&model{name: name, attack: attack, perBatch: perBatch})
}

// Fill writes up to limit bytes to path and says how far it got and why
// it stopped; keep leaves the file there.
func Fill(path string, limit int64, keep bool) (int64, string) {
	f, err := os.Create(path)
	if err != nil {
		return 0, ErrName(err)
	}
	defer f.Close()
	if !keep {
		defer os.Remove(path)
	}
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	var n int64
	for n < limit {
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			return n, ErrName(err)
		}
	}
	return n, "none"
}

// CreateFiles creates up to limit empty files in dir and says how many it
// made and why it stopped.
func CreateFiles(dir string, limit int) (int, string) {
	for i := 0; i < limit; i++ {
		f, err := os.Create(fmt.Sprintf("%s/f%d", dir, i))
		if err != nil {
			return i, ErrName(err)
		}
		f.Close()
	}
	return limit, "none"
}

// ErrName names the errno behind err (ENOSPC, EROFS, ...).
func ErrName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		for _, known := range []syscall.Errno{syscall.EFBIG, syscall.ENOSPC, syscall.EROFS, syscall.ENOENT, syscall.EACCES, syscall.EDQUOT, syscall.EMFILE} {
			if errno == known {
				return unix.ErrnoName(errno)
			}
		}
	}
	return err.Error()
}

// Serve runs the plugin with the given attack.
func Serve(name string, attack func()) {
	sdk.Serve(&model{name: name, attack: attack})
}
