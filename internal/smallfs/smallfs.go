// Package smallfs mounts small filesystems for tests that fill a disk.
package smallfs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Mount mounts a tmpfs of size bytes on a new directory and returns it;
// the test's cleanup unmounts it. Mounting needs root (CI runs as root):
// elsewhere the test is skipped, and with CI=true it fails, so a machine
// that should run it never passes it silently.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+strconv.FormatInt(size, 10)+",mode=0755")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a %d-byte tmpfs (this test fills a disk, and needs root): %v", size, err)
		}
		t.Skipf("cannot mount a tmpfs here (%v); run as root to fill a disk", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// Fill writes a file in dir until the filesystem is full and returns its
// path: removing it gives the space back.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	// The last bytes, below a chunk.
	one := []byte{0}
	for {
		if _, err := f.Write(one); err != nil {
			break
		}
	}
	return path
}
