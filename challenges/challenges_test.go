package challenges

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSplitPublicIsDeterministicAndSized(t *testing.T) {
	a := SplitPublic(10000, 0.3, 7)
	b := SplitPublic(10000, 0.3, 7)
	c := SplitPublic(10000, 0.3, 8)
	count, same, sameOther := 0, true, true
	for i := range a {
		if a[i] {
			count++
		}
		same = same && a[i] == b[i]
		sameOther = sameOther && a[i] == c[i]
	}
	if count != 3000 {
		t.Fatalf("%d public, want 3000", count)
	}
	if !same {
		t.Fatal("same seed gave another split")
	}
	if sameOther {
		t.Fatal("another seed gave the same split")
	}
}

func mnistDir(t *testing.T) string {
	t.Helper()
	dir, err := LocateMNIST(context.Background(), os.Getenv("HACKARENA_MNIST_DIR"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMNISTLoadsHiddenSetWithBalancedSplit(t *testing.T) {
	c := MNIST(mnistDir(t))
	if c.Status != StatusOpen {
		t.Fatalf("status %s: %s", c.Status, c.StatusReason)
	}
	h, err := c.Hidden()
	if err != nil {
		t.Fatal(err)
	}
	if h.Count != 10000 || len(h.Images) != 10000*28*28 || len(h.Labels) != 10000 {
		t.Fatalf("hidden set: %d images, %d bytes, %d labels", h.Count, len(h.Images), len(h.Labels))
	}
	perClass := make([]int, 10)
	public := 0
	for i, p := range h.Public {
		if p {
			public++
			perClass[h.Labels[i]]++
		}
	}
	if public != 5000 {
		t.Fatalf("%d public examples, want 5000", public)
	}
	for k, n := range perClass {
		if n < 350 {
			t.Errorf("class %d has only %d public examples", k, n)
		}
	}
	for _, f := range c.Data {
		if strings.HasPrefix(f.Name, "t10k") {
			t.Fatalf("hidden file %s is public data", f.Name)
		}
	}
}

func TestMNISTUnavailableWhenDataIsWrong(t *testing.T) {
	src := mnistDir(t)
	cases := map[string]func(dir string){
		"missing test labels": func(dir string) { _ = os.Remove(filepath.Join(dir, mnistTestLabels)) },
		"corrupted train images": func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, MNISTTrainImages), []byte("not mnist"), 0o644)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for name := range mnistSHA256 {
				data, err := os.ReadFile(filepath.Join(src, name))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			damage(dir)
			c := MNIST(dir)
			if c.Status != StatusUnavailable || c.StatusReason == "" {
				t.Fatalf("status %s (%s), want unavailable with a reason", c.Status, c.StatusReason)
			}
			if _, err := c.Hidden(); err == nil {
				t.Fatal("an unavailable challenge handed out a hidden set")
			}
		})
	}
}
