package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// cuttingProxy forwards to target, cutting the first answer for a path
// ending in cutSuffix after cutAfter bytes, as a dropped connection does.
func cuttingProxy(t *testing.T, target, cutSuffix string, cutAfter int64) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, cutSuffix) {
			once.Do(func() { resp.Body = &cutBody{r: resp.Body, left: cutAfter} })
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv
}

type cutBody struct {
	r    io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection cut by the test")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cutBody) Close() error { return b.r.Close() }

// TestEndToEndDownloadShowsProgressResumesAndSkips: `hackctl download
// mnist`, in a folder outside the repository, through a connection cut
// part-way: it shows progress, resumes where it was cut, checks sha256 and
// writes the challenge's description beside the files; run again, it
// downloads nothing.
func TestEndToEndDownloadShowsProgressResumesAndSkips(t *testing.T) {
	srv := startServer(t, t.TempDir())
	proxy := cuttingProxy(t, srv.url, "train-images-idx3-ubyte.gz", 3<<20)
	h := newHackctl(t, &server{url: proxy.URL})
	h.dir = t.TempDir()
	first := h.hack("download", "mnist")
	for _, want := range []string{"train-images-idx3-ubyte.gz  resuming after 3.0 MiB", "100%", "sha256 ok", "train-labels-idx1-ubyte.gz", "2 downloaded, 0 already there"} {
		if !strings.Contains(first, want) {
			t.Errorf("first download: no %q in:\n%s", want, first)
		}
	}
	dir := filepath.Join(h.dir, "data", "mnist")
	for name, sha := range map[string]string{
		"train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
		"train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
	} {
		if got := fileSHA(t, filepath.Join(dir, name)); got != sha {
			t.Errorf("%s: sha256 %s, want %s", name, got, sha)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "challenge.json")); err != nil {
		t.Errorf("the challenge's description was not kept: %v", err)
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "*.part")); len(parts) != 0 {
		t.Errorf("partial files left: %v", parts)
	}
	again := h.hack("download", "mnist")
	if !strings.Contains(again, "0 downloaded, 2 already there") || strings.Contains(again, "%") {
		t.Errorf("second download fetched again:\n%s", again)
	}
	if out, err := h.run("download", "no-such-challenge"); err == nil || !strings.Contains(out, "no-such-challenge") {
		t.Errorf("unknown challenge: %v\n%s", err, out)
	}
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}
