package api

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheckExecutable feeds arbitrary uploads to the binary check: it must
// answer with nil or an *Error (a 400), never panic or return anything else.
func FuzzCheckExecutable(f *testing.F) {
	for _, path := range []string{"/bin/true", os.Args[0]} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data[:min(len(data), 4096)])
	}
	f.Add([]byte("\x7fELF"))
	f.Add([]byte("#!/bin/sh\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "upload")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		err := checkExecutable(path)
		var apiErr *Error
		if err != nil && (!errors.As(err, &apiErr) || apiErr.Status != 400) {
			t.Fatalf("check returned %v", err)
		}
	})
}
