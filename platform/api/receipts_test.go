package api

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/hackarena/hackarena/platform/receipts"
	"github.com/hackarena/hackarena/sdk/receipt"
)

// TestAnyoneGetsAJudgedSubmissionsReceipt: the receipt of a judged
// submission is anyone's to fetch and verifies against the key at the
// well-known path; it discloses the private metrics once revealed; a
// submission not judged yet has none.
func TestAnyoneGetsAJudgedSubmissionsReceipt(t *testing.T) {
	h := newHarness(t, 1<<20)
	key, err := receipts.LoadKey("", filepath.Join(t.TempDir(), "receipt.key"))
	if err != nil {
		t.Fatal(err)
	}
	h.srv.Receipts = &receipts.Issuer{Key: key, Store: h.st}
	sub := h.scoredSubmission("mnist", "alpha", map[string]float64{"accuracy": 0.8}, map[string]float64{"accuracy": 0.7})

	k := h.json(http.MethodGet, receipt.WellKnownPath, "", nil)
	var published receipt.PublicKey
	if err := json.Unmarshal(k.raw, &published); err != nil || k.status != 200 {
		t.Fatalf("well-known key: %d %s", k.status, k.raw)
	}
	pub, err := published.Parse()
	if err != nil {
		t.Fatal(err)
	}
	get := func() receipt.Envelope {
		t.Helper()
		a := h.json(http.MethodGet, "/api/v1/submissions/"+sub.ID+"/receipt", "", nil)
		var env receipt.Envelope
		if err := json.Unmarshal(a.raw, &env); err != nil || a.status != 200 {
			t.Fatalf("receipt: %d %s", a.status, a.raw)
		}
		return env
	}
	env := get()
	body, err := receipt.Verify(env, pub)
	if err != nil || body.SubmissionID != sub.ID || body.Team != "alpha" || body.Public["accuracy"] != 0.8 || env.Disclosure != nil {
		t.Fatalf("receipt before the reveal: %+v %+v %v", body, env.Disclosure, err)
	}
	if h.json(http.MethodPost, "/api/v1/challenges/mnist/reveal", h.organizer(), nil).status != 200 {
		t.Fatal("reveal")
	}
	revealed := get()
	if _, err := receipt.Verify(revealed, pub); err != nil || revealed.Disclosure == nil || revealed.Payload != env.Payload {
		t.Fatalf("receipt after the reveal: %+v %v", revealed.Disclosure, err)
	}
	if private, _ := revealed.Disclosure.Private(); private["accuracy"] != 0.7 {
		t.Fatalf("disclosed %v", private)
	}

	team, _ := h.st.TeamByName(context.Background(), "alpha")
	queued, _ := h.st.Enqueue(context.Background(), "mnist", team, "abc", 1)
	if a := h.json(http.MethodGet, "/api/v1/submissions/"+queued.ID+"/receipt", "", nil); a.status != 404 || a.errorCode() != "receipt_not_ready" {
		t.Fatalf("a queued submission's receipt: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodGet, "/api/v1/submissions/nope/receipt", "", nil); a.status != 404 || a.errorCode() != "submission_not_found" {
		t.Fatalf("an unknown submission's receipt: %d %s", a.status, a.raw)
	}
}
