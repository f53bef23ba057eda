package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestDataFilesServeRangesForResumedDownloads: a download cut after some
// bytes resumes with a Range request and gets exactly the rest, for a file
// on disk (MNIST) and one made at load time (the houses training CSV); a
// range past the end is 416, and an If-Range naming another version gets
// the whole file.
func TestDataFilesServeRangesForResumedDownloads(t *testing.T) {
	h := newHarness(t, 1<<20)
	get := func(path string, headers ...string) answer {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return h.do(req)
	}
	for _, path := range []string{"/api/v1/challenges/mnist/data/train-labels-idx1-ubyte.gz", "/api/v1/challenges/houses/data/train.csv"} {
		whole := get(path)
		size := len(whole.raw)
		sum := sha256.Sum256(whole.raw)
		sha := hex.EncodeToString(sum[:])
		if whole.status != 200 || whole.header.Get("Accept-Ranges") != "bytes" || whole.header.Get("ETag") != `"`+sha+`"` || size < 1000 {
			t.Fatalf("%s: %d, %d bytes, Accept-Ranges %q, ETag %q", path, whole.status, size, whole.header.Get("Accept-Ranges"), whole.header.Get("ETag"))
		}
		cut := size / 3
		rest := get(path, "Range", "bytes="+strconv.Itoa(cut)+"-", "If-Range", `"`+sha+`"`)
		if rest.status != 206 || !bytes.Equal(rest.raw, whole.raw[cut:]) || rest.header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", cut, size-1, size) {
			t.Fatalf("%s from %d: %d, %d bytes, Content-Range %q", path, cut, rest.status, len(rest.raw), rest.header.Get("Content-Range"))
		}
		if part := get(path, "Range", "bytes=10-19"); part.status != 206 || !bytes.Equal(part.raw, whole.raw[10:20]) {
			t.Fatalf("%s bytes 10-19: %d %q", path, part.status, part.raw)
		}
		if tail := get(path, "Range", "bytes=-5"); tail.status != 206 || !bytes.Equal(tail.raw, whole.raw[size-5:]) {
			t.Fatalf("%s last 5 bytes: %d %q", path, tail.status, tail.raw)
		}
		if past := get(path, "Range", "bytes="+strconv.Itoa(size)+"-"); past.status != 416 || past.errorCode() != "range_not_satisfiable" {
			t.Fatalf("%s past the end: %d %s", path, past.status, past.raw)
		}
		if changed := get(path, "Range", "bytes=5-", "If-Range", `"another-version"`); changed.status != 200 || len(changed.raw) != size {
			t.Fatalf("%s with a stale If-Range: %d, %d bytes", path, changed.status, len(changed.raw))
		}
	}
}

// FuzzParseRange: any Range header gives a range inside the body, or none.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=5-9", "bytes=-3", "bytes=9-5", "bytes=1-2,4-5", "bytes=-0", "bytes=99-", "items=0-1", "bytes= 3 - 4"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 || size > 1<<40 {
			return
		}
		start, end, ok := parseRange(h, size)
		if ok && (start < 0 || end >= size || start > end) {
			t.Fatalf("parseRange(%q, %d) = %d-%d", h, size, start, end)
		}
	})
}
