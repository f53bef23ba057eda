// Package client is a Go client for the Hackarena HTTP API v1, used by
// hackctl and by tests.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hackarena/hackarena/sdk/receipt"
)

// Error is an error answered by the API.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.Status, e.Code)
}

// Client talks to one platform.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// New returns a client for baseURL (e.g. http://127.0.0.1:8080).
func New(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Timeout: 15 * time.Minute}}
}

// Team is a registered team.
type Team struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Challenge is a challenge as listed.
type Challenge struct {
	Slug           string     `json:"slug"`
	Title          string     `json:"title"`
	Task           string     `json:"task"`
	Input          string     `json:"input"`
	Metrics        []string   `json:"metrics"`
	PrimaryMetric  string     `json:"primary_metric"`
	HigherIsBetter bool       `json:"higher_is_better"`
	Status         string     `json:"status"`
	StatusReason   string     `json:"status_reason"`
	OpensAt        *time.Time `json:"opens_at"`
	ClosesAt       *time.Time `json:"closes_at"`
}

// Metrics are a submission's scores.
type Metrics struct {
	Public  map[string]float64 `json:"public"`
	Private map[string]float64 `json:"private"`
}

// Submission is a submission's state.
type Submission struct {
	ID            string     `json:"id"`
	Challenge     string     `json:"challenge"`
	Team          string     `json:"team"`
	Status        string     `json:"status"`
	Reason        string     `json:"reason"`
	Message       string     `json:"message"`
	Metrics       *Metrics   `json:"metrics"`
	QueuePosition *int       `json:"queue_position"`
	QueuedAt      time.Time  `json:"queued_at"`
	StartedAt     *time.Time `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at"`
	SHA256        string     `json:"sha256"`
	Log           string     `json:"log"`
	// Progress is how many hidden examples a running plugin has answered.
	Progress *RunProgress `json:"progress"`
	// FinalAs says whether it counts on the private board: "selected" by
	// its team, "default" (the team selected none and it is among its best
	// by public score), or "" (it does not count).
	FinalAs string `json:"final"`
	// Resources are what its run used, once judged.
	Resources *Resources `json:"resources"`
	// Member is who in the team sent it.
	Member string `json:"member"`
	// Excluded says why the organizers keep it off the boards.
	Excluded *Exclusion `json:"excluded"`
}

// Exclusion is the organizers' exclusion of a submission from ranking.
type Exclusion struct {
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// RunProgress is a running submission's answered examples of the total.
type RunProgress struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

// Final reports whether the submission reached scored or failed.
func (s Submission) Final() bool { return s.Status == "scored" || s.Status == "failed" }

// Entry is one leaderboard row.
type Entry struct {
	Rank         int        `json:"rank"`
	Team         string     `json:"team"`
	Score        float64    `json:"score"`
	SubmissionID string     `json:"submission_id"`
	SubmittedAt  time.Time  `json:"submitted_at"`
	Submissions  int64      `json:"submissions"`
	Resources    *Resources `json:"resources"`
}

// Resources are what a judged run used.
type Resources struct {
	JudgingSeconds    float64 `json:"judging_seconds"`
	Examples          int     `json:"examples"`
	ExamplesPerSecond float64 `json:"examples_per_second"`
	PeakMemoryBytes   int64   `json:"peak_memory_bytes"`
	EngineSeconds     float64 `json:"engine_seconds"`
	BinaryBytes       int64   `json:"binary_bytes"`
}

// Leaderboard is one board of a challenge.
type Leaderboard struct {
	Challenge      string  `json:"challenge"`
	Board          string  `json:"board"`
	Metric         string  `json:"metric"`
	HigherIsBetter bool    `json:"higher_is_better"`
	Entries        []Entry `json:"entries"`
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	return c.doWith(ctx, method, path, body, contentType, nil, out)
}

// doWith is do with extra request headers.
func (c *Client) doWith(ctx context.Context, method, path string, body io.Reader, contentType string, headers map[string]string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is the platform running at %s?)", method, path, err, c.BaseURL)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return apiError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// apiError decodes an error answer.
func apiError(resp *http.Response, data []byte) *Error {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	apiErr := &Error{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(data))}
	if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
		apiErr.Code, apiErr.Message = e.Error.Code, e.Error.Message
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		apiErr.RetryAfter = time.Duration(s) * time.Second
	}
	return apiErr
}

// errorOf reads an error answer's body.
func (c *Client) errorOf(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return apiError(resp, data)
}

// Identity is who a token belongs to: ID and Name are its team's (empty
// for a person in no team yet), User the person's.
type Identity struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at"`
	User      struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"user"`
	// Team is the team's members and standing; Captain says whether the
	// person captains it.
	Team    *TeamInfo `json:"team,omitempty"`
	Captain bool      `json:"captain,omitempty"`
}

// WhoAmI says whose the client's token is.
func (c *Client) WhoAmI(ctx context.Context) (Identity, error) {
	var out Identity
	err := c.do(ctx, http.MethodGet, "/api/v1/teams/me", nil, "", &out)
	return out, err
}

func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, bytes.NewReader(raw), "application/json", out)
}

// Register creates a team and returns it with a token.
func (c *Client) Register(ctx context.Context, name, password string) (Team, string, error) {
	var out struct {
		Team  Team   `json:"team"`
		Token string `json:"token"`
	}
	err := c.postJSON(ctx, "/api/v1/teams", map[string]string{"name": name, "password": password}, &out)
	return out.Team, out.Token, err
}

// Login exchanges a person's (or a team of one's) name and password for a
// token.
func (c *Client) Login(ctx context.Context, name, password string) (string, time.Time, error) {
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	err := c.postJSON(ctx, "/api/v1/auth/token", map[string]string{"name": name, "password": password}, &out)
	return out.Token, out.ExpiresAt, err
}

// ChangePassword sets the caller's password and returns a new token;
// every token issued to them before, this client's included, is revoked.
func (c *Client) ChangePassword(ctx context.Context, current, next string) (string, time.Time, error) {
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	err := c.postJSON(ctx, "/api/v1/teams/me/password", map[string]string{"current_password": current, "new_password": next}, &out)
	return out.Token, out.ExpiresAt, err
}

// Challenges lists the challenges.
func (c *Client) Challenges(ctx context.Context) ([]Challenge, error) {
	var out struct {
		Challenges []Challenge `json:"challenges"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/challenges", nil, "", &out)
	return out.Challenges, err
}

// Submit uploads a plugin binary, streaming it from disk.
func (c *Client) Submit(ctx context.Context, slug, binaryPath string) (Submission, error) {
	// One key for every try of this upload: when an answer is lost (a
	// dropped connection, a replica that restarted), the upload is sent
	// again and the platform answers with the submission the first try
	// made, instead of making a second one.
	key, err := NewIdempotencyKey()
	if err != nil {
		return Submission{}, err
	}
	return c.SubmitWithKey(ctx, slug, binaryPath, key)
}

// NewIdempotencyKey is a random key for one upload.
func NewIdempotencyKey() (string, error) {
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("make an idempotency key: %w", err)
	}
	return hex.EncodeToString(raw), nil
}

// SubmitWithKey uploads under the caller's Idempotency-Key, sending the
// upload again (about 15 s in all) while no answer comes back or the
// platform says it is briefly unavailable. A caller that gives up may
// call it again with the same key later: it is still one submission.
func (c *Client) SubmitWithKey(ctx context.Context, slug, binaryPath, key string) (Submission, error) {
	var last error
	for attempt := 0; attempt < submitAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return Submission{}, ctx.Err()
			case <-time.After(time.Duration(250<<attempt) * time.Millisecond):
			}
		}
		sub, err := c.submitOnce(ctx, slug, binaryPath, key)
		if err == nil || !Retryable(err) {
			return sub, err
		}
		last = err
	}
	return Submission{}, fmt.Errorf("upload failed %d times, the last: %w", submitAttempts, last)
}

// submitAttempts bounds the tries of one upload: waits of 0.5, 1, 2, 4
// and 8 s between them outlast a Redis or API replica restart.
const submitAttempts = 6

// Retryable is a failure an upload may be sent again after (with its
// key): no answer came back, or a gateway's or the platform's 502/503/504.
func Retryable(err error) bool {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr.Status == http.StatusBadGateway || apiErr.Status == http.StatusServiceUnavailable || apiErr.Status == http.StatusGatewayTimeout
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errLocal)
}

// errLocal marks a failure on this side (the file), not the platform's.
var errLocal = errors.New("local")

func (c *Client) submitOnce(ctx context.Context, slug, binaryPath, key string) (Submission, error) {
	f, err := os.Open(binaryPath)
	if err != nil {
		return Submission{}, fmt.Errorf("open plugin: %w (%w)", err, errLocal)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("plugin", filepath.Base(binaryPath))
		if err == nil {
			_, err = io.Copy(part, f)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	var out struct {
		Submission Submission `json:"submission"`
	}
	err = c.doWith(ctx, http.MethodPost, "/api/v1/challenges/"+url.PathEscape(slug)+"/submissions", pr, mw.FormDataContentType(),
		map[string]string{"Idempotency-Key": key}, &out)
	_ = pr.CloseWithError(io.ErrClosedPipe) // unblocks the writer if the server answered early
	return out.Submission, err
}

// Submission fetches one submission.
func (c *Client) Submission(ctx context.Context, id string) (Submission, error) {
	var out struct {
		Submission Submission `json:"submission"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/submissions/"+url.PathEscape(id), nil, "", &out)
	return out.Submission, err
}

// Finals are the submissions of a team that count on a challenge's
// private board.
type Finals struct {
	Challenge string `json:"challenge"`
	// Count is how many count; Selected, whether the team chose these
	// (else they are its best by public score).
	Count       int          `json:"count"`
	Selected    bool         `json:"selected"`
	ClosesAt    *time.Time   `json:"closes_at"`
	Submissions []Submission `json:"submissions"`
}

// SelectFinal selects (or, with selected false, unselects) one of the
// team's scored submissions as a final, and returns the team's finals in
// its challenge after the change.
func (c *Client) SelectFinal(ctx context.Context, id string, selected bool) (Finals, error) {
	method := http.MethodPost
	if !selected {
		method = http.MethodDelete
	}
	var out struct {
		Submission Submission `json:"submission"`
	}
	if err := c.do(ctx, method, "/api/v1/submissions/"+url.PathEscape(id)+"/final", nil, "", &out); err != nil {
		return Finals{}, err
	}
	return c.Finals(ctx, out.Submission.Challenge)
}

// Finals lists the team's finals in a challenge.
func (c *Client) Finals(ctx context.Context, slug string) (Finals, error) {
	var out Finals
	err := c.do(ctx, http.MethodGet, "/api/v1/challenges/"+url.PathEscape(slug)+"/finals", nil, "", &out)
	return out, err
}

// Receipt fetches a judged submission's signed receipt (anyone may).
func (c *Client) Receipt(ctx context.Context, id string) (receipt.Envelope, error) {
	var out receipt.Envelope
	err := c.do(ctx, http.MethodGet, "/api/v1/submissions/"+url.PathEscape(id)+"/receipt", nil, "", &out)
	return out, err
}

// ReceiptKey fetches the key the platform signs receipts with.
func (c *Client) ReceiptKey(ctx context.Context) (receipt.PublicKey, error) {
	var out receipt.PublicKey
	err := c.do(ctx, http.MethodGet, receipt.WellKnownPath, nil, "", &out)
	return out, err
}

// MySubmissions lists the caller's submissions, newest first.
func (c *Client) MySubmissions(ctx context.Context) ([]Submission, error) {
	var out struct {
		Submissions []Submission `json:"submissions"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/teams/me/submissions", nil, "", &out)
	return out.Submissions, err
}

// Leaderboard fetches a board ("public" or "private").
func (c *Client) Leaderboard(ctx context.Context, slug, board string) (Leaderboard, error) {
	var out Leaderboard
	err := c.do(ctx, http.MethodGet, "/api/v1/challenges/"+url.PathEscape(slug)+"/leaderboard?board="+url.QueryEscape(board), nil, "", &out)
	return out, err
}

// Wait polls a submission until it is final, calling onChange whenever its
// status or queue position changes.
func (c *Client) Wait(ctx context.Context, id string, every time.Duration, onChange func(Submission)) (Submission, error) {
	var last string
	for {
		sub, err := c.Submission(ctx, id)
		if err != nil {
			return sub, err
		}
		key := sub.Status
		if sub.QueuePosition != nil {
			key += strconv.Itoa(*sub.QueuePosition)
		}
		if sub.Progress != nil {
			key += "/" + strconv.Itoa(sub.Progress.Done)
		}
		if key != last && onChange != nil {
			onChange(sub)
		}
		last = key
		if sub.Final() {
			return sub, nil
		}
		select {
		case <-ctx.Done():
			return sub, ctx.Err()
		case <-time.After(every):
		}
	}
}
