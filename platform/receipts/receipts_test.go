package receipts

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/internal/redistest"
	"github.com/hackarena/hackarena/platform/store"
	"github.com/hackarena/hackarena/sdk/receipt"
)

// TestTheKeyIsMadeOnceAndKept: processes that share a data dir and start
// at once end up with one key, kept in a 0600 file; the variable wins.
func TestTheKeyIsMadeOnceAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "receipt.key")
	keys := make([]ed25519.PrivateKey, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadKey("", path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !k.Equal(keys[0]) {
			t.Fatal("processes starting at once made different keys")
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	again, err := LoadKey("", path)
	if err != nil || !again.Equal(keys[0]) {
		t.Fatalf("the key changed on reload: %v", err)
	}
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	fromEnv, err := LoadKey(base64.StdEncoding.EncodeToString(seed), path)
	if err != nil || !fromEnv.Equal(ed25519.NewKeyFromSeed(seed)) {
		t.Fatalf("HACKARENA_RECEIPT_KEY: %v", err)
	}
	if _, err := LoadKey("not a key", path); err == nil {
		t.Fatal("a malformed HACKARENA_RECEIPT_KEY was accepted")
	}
}

// TestAReceiptIsIssuedOnceAndARescoreReplacesIt: a judged submission's
// receipt holds what its record says and verifies; asking again gives the
// same receipt; the disclosure opens its private commitment; a rescore's
// receipt names the one it replaces, which is kept.
func TestAReceiptIsIssuedOnceAndARescoreReplacesIt(t *testing.T) {
	ctx := context.Background()
	rdb, _ := redistest.Start(t)
	st := store.New(rdb)
	key, err := LoadKey("", filepath.Join(t.TempDir(), "receipt.key"))
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{Key: key, Store: st}
	published, err := iss.PublicKey().Parse()
	if err != nil {
		t.Fatal(err)
	}
	team, _ := st.CreateTeam(ctx, "Owls", "h", store.RoleParticipant)
	sub, _ := st.Enqueue(ctx, "ch", team, "beef", 1)
	if _, err := iss.Current(ctx, sub, false); err != ErrNotFinal {
		t.Fatalf("a queued submission's receipt: %v", err)
	}
	run, _, _ := st.Start(ctx, sub.ID, "w")
	stamp := store.Stamp{SpecSHA256: "5eed", Datasets: []challenges.FileSpec{{Name: "a.csv", Role: "all", SHA256: "f00d"}}}
	res := store.Result{Status: store.StatusScored, Metrics: &store.Metrics{Public: map[string]float64{"accuracy": 0.75}, Private: map[string]float64{"accuracy": 0.7}},
		JudgeVersion: "v9", Sandbox: "bwrap", Stamp: stamp}
	if ok, err := st.Finish(ctx, run, res); !ok || err != nil {
		t.Fatal(ok, err)
	}
	judged, _ := st.Submission(ctx, sub.ID)

	first, err := iss.Current(ctx, judged, false)
	if err != nil {
		t.Fatal(err)
	}
	body, err := receipt.Verify(first, published)
	if err != nil {
		t.Fatal(err)
	}
	if body.SubmissionID != sub.ID || body.Team != "Owls" || body.Challenge != "ch" || body.PluginSHA256 != "beef" || body.JudgeVersion != "v9" ||
		body.Sandbox != "bwrap" || body.SpecSHA256 != "5eed" || len(body.Datasets) != 1 || body.Datasets[0].SHA256 != "f00d" ||
		body.Public["accuracy"] != 0.75 || body.PrivateCommitment == "" || first.Disclosure != nil || body.Replaces != "" {
		t.Fatalf("receipt body %+v", body)
	}
	again, _ := iss.Current(ctx, judged, true)
	if again.Payload != first.Payload || again.Disclosure == nil {
		t.Fatalf("a second request issued another receipt, or disclosed nothing after the reveal")
	}
	if _, err := receipt.Verify(again, published); err != nil {
		t.Fatalf("the disclosure does not open the commitment: %v", err)
	}

	// A rescore: new metrics, a receipt that names the first.
	if err := st.SetMetrics(ctx, sub.ID, 0, store.Metrics{Public: map[string]float64{"accuracy": 0.5}, Private: map[string]float64{"accuracy": 0.4}}, stamp, nil); err != nil {
		t.Fatal(err)
	}
	rescored, _ := st.Submission(ctx, sub.ID)
	if err := iss.Reissue(ctx, rescored); err != nil {
		t.Fatal(err)
	}
	second, err := iss.Current(ctx, rescored, true)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := receipt.Verify(second, published)
	if err != nil || nb.Replaces != body.ID || nb.ID == body.ID || nb.Public["accuracy"] != 0.5 {
		t.Fatalf("the rescore's receipt: %+v %v", nb, err)
	}
	if old, err := st.ReplacedReceipts(ctx, sub.ID); err != nil || len(old) != 1 {
		t.Fatalf("replaced receipts: %v %v", old, err)
	}
}
