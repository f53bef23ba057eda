package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// DataFile is a public training file of a challenge.
type DataFile struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	URL    string `json:"url"`
}

// ChallengeDetail is one challenge with its description, limits and data.
type ChallengeDetail struct {
	Challenge
	Description string         `json:"description"`
	Limits      map[string]any `json:"limits"`
	Data        []DataFile     `json:"data"`
	// Evaluation is how the challenge is judged (hackctl eval reads all of
	// it from the raw answer); Classes is its class count.
	Evaluation struct {
		Classes int `json:"classes"`
	} `json:"evaluation"`
}

// ChallengeDetail fetches one challenge; raw is the API's answer as sent.
func (c *Client) ChallengeDetail(ctx context.Context, slug string) (detail ChallengeDetail, raw []byte, err error) {
	var out struct {
		Challenge rawDetail `json:"challenge"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/challenges/"+slug, nil, "", &out); err != nil {
		return ChallengeDetail{}, nil, err
	}
	return out.Challenge.detail, out.Challenge.raw, nil
}

type rawDetail struct {
	detail ChallengeDetail
	raw    []byte
}

func (r *rawDetail) UnmarshalJSON(b []byte) error {
	r.raw = append([]byte(nil), b...)
	return json.Unmarshal(b, &r.detail)
}

// ChecksumError is a downloaded file whose sha256 is not the one the
// platform lists: the partial file is removed, and a new download starts
// from nothing.
type ChecksumError struct {
	File      string
	Want, Got string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: sha256 is %s, the platform lists %s; the file was removed, run the download again", e.File, e.Got, e.Want)
}

// DownloadProgress is how far a download has got.
type DownloadProgress struct {
	File    string
	Done    int64
	Total   int64
	Resumed int64 // bytes that were already there when this run started
	// From is where the current request started: above 0, a cut or
	// earlier download is being resumed.
	From    int64
	Elapsed time.Duration
}

// Download fetches f into dst, resuming from dst+".part" when an earlier
// download was cut (HTTP Range, guarded by If-Range on the file's sha256),
// checking the sha256, and renaming into place only when it matches.
// A dst already there with the right sha256 is left as it is
// (skipped=true). Cut connections are resumed up to retries times before
// it gives up; report is called as bytes arrive.
func (c *Client) Download(ctx context.Context, f DataFile, dst string, retries int, report func(DownloadProgress)) (skipped bool, err error) {
	if ok, err := fileHasSHA(dst, f.SHA256); err != nil || ok {
		return ok, err
	}
	part := dst + ".part"
	begin := time.Now()
	var resumed int64 = -1
	for attempt := 0; ; attempt++ {
		err := c.downloadOnce(ctx, f, part, begin, &resumed, report)
		if err == nil {
			break
		}
		var sumErr *ChecksumError
		if errors.As(err, &sumErr) || ctx.Err() != nil || attempt >= retries {
			return false, err
		}
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.Status != http.StatusRequestedRangeNotSatisfiable && apiErr.Status < 500 {
			return false, err
		}
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusRequestedRangeNotSatisfiable {
			_ = os.Remove(part) // the part is longer than the file: start again
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	if err := os.Rename(part, dst); err != nil {
		return false, fmt.Errorf("%s: %w", f.Name, err)
	}
	return false, nil
}

func (c *Client) downloadOnce(ctx context.Context, f DataFile, part string, begin time.Time, resumed *int64, report func(DownloadProgress)) error {
	out, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name, err)
	}
	defer out.Close()
	// What is there already is hashed first, so the whole file is checked.
	h := sha256.New()
	have, err := io.Copy(h, out)
	if err != nil {
		return fmt.Errorf("%s: read the partial download: %w", f.Name, err)
	}
	if *resumed < 0 {
		*resumed = have
	}
	if f.Bytes > 0 && have == f.Bytes {
		return checkSum(f, part, h)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+f.URL, nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		req.Header.Set("If-Range", `"`+f.SHA256+`"`)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w (is the platform running at %s?)", f.URL, err, c.BaseURL)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		// The server sends the whole file (it changed, or it ignores the
		// range): start the part again.
		if err := out.Truncate(0); err != nil {
			return err
		}
		if _, err := out.Seek(0, io.SeekStart); err != nil {
			return err
		}
		h.Reset()
		have = 0
	default:
		return c.errorOf(resp)
	}
	from := have
	report(DownloadProgress{File: f.Name, Done: have, Total: f.Bytes, Resumed: *resumed, From: from, Elapsed: time.Since(begin)})
	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := out.Write(buf[:n]); err != nil {
				return fmt.Errorf("%s: write: %w", f.Name, err)
			}
			h.Write(buf[:n])
			have += int64(n)
			report(DownloadProgress{File: f.Name, Done: have, Total: f.Bytes, Resumed: *resumed, From: from, Elapsed: time.Since(begin)})
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("%s: cut after %d bytes: %w", f.Name, have, rerr)
		}
	}
	if f.Bytes > 0 && have < f.Bytes {
		return fmt.Errorf("%s: cut after %d of %d bytes", f.Name, have, f.Bytes)
	}
	return checkSum(f, part, h)
}

func checkSum(f DataFile, part string, h hash.Hash) error {
	got := hex.EncodeToString(h.Sum(nil))
	if f.SHA256 != "" && got != f.SHA256 {
		_ = os.Remove(part)
		return &ChecksumError{File: f.Name, Want: f.SHA256, Got: got}
	}
	return nil
}

// fileHasSHA reports whether path exists with the given sha256.
func fileHasSHA(path, want string) (bool, error) {
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return false, fmt.Errorf("check %s: %w", path, err)
	}
	return want != "" && hex.EncodeToString(h.Sum(nil)) == want, nil
}
