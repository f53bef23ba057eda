package api

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hackarena/hackarena/internal/smallfs"
	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/retention"
)

// variant is a valid static plugin binary with its own content (an ELF
// loader ignores bytes past the segments, so a trailer changes the hash
// and nothing else).
func variant(base []byte, tag string) []byte {
	return append(append([]byte{}, base...), []byte("\x00variant:"+tag)...)
}

// age makes every stored binary older than the grace that protects an
// upload whose submission is being recorded.
func age(t *testing.T, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			err = os.Chtimes(path, old, old)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRetentionKeepsWhatCanStillMatter: three teams submit five plugins
// each; the collection keeps the binaries of queued submissions, of each
// team's finals (selected or by default), of the board entries and of
// each team's last two, keeps a binary whose content a kept submission
// shares, and releases the rest: their records say so, their files go,
// and a second collection finds nothing more.
func TestRetentionKeepsWhatCanStillMatter(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	spec := builtinSpec(t, "mnist")
	spec["limits"].(map[string]any)["submissions_per_day"] = 10
	spec["final_submissions"] = 2
	h.putSpec(org, "mnist", spec)
	h.srv.Storage = &retention.Collector{Store: h.st, Blobs: h.srv.Blobs, Challenges: h.srv.Challenges, Policy: retention.Policy{KeepLast: 2}}
	base := staticBinary(t)
	tokens := map[string]string{}
	ids := map[string]string{} // "a1" → submission id
	submit := func(team, name string, content []byte) {
		t.Helper()
		if tokens[team] == "" {
			tokens[team] = h.register(team)
		}
		a := h.upload(tokens[team], content)
		if a.status != 202 {
			t.Fatalf("upload %s: %d %s", name, a.status, a.raw)
		}
		ids[name] = a.body["submission"].(map[string]any)["id"].(string)
		time.Sleep(2 * time.Millisecond) // distinct queue times
	}
	// alpha: a1 leads the public board; a2 and a3 are neither final nor
	// among its last two.
	for i, pub := range []float64{0.90, 0.10, 0.20, 0.30, 0.40} {
		name := fmt.Sprintf("a%d", i+1)
		submit("alpha", name, variant(base, name))
		h.finish(ids[name], pub, pub)
	}
	// beta: selects b1 as its only final; b2 is its board entry; b5 is the
	// same plugin as b3, so b3's binary stays with b5's.
	for i, pub := range []float64{0.80, 0.85, 0.10, 0.20, 0.30} {
		name := fmt.Sprintf("b%d", i+1)
		content := variant(base, name)
		if name == "b5" {
			content = variant(base, "b3")
		}
		submit("beta", name, content)
		h.finish(ids[name], pub, pub)
	}
	if a := h.json(http.MethodPost, "/api/v1/submissions/"+ids["b1"]+"/final", tokens["beta"], nil); a.status != 200 {
		t.Fatalf("select b1: %d %s", a.status, a.raw)
	}
	// gamma: g5 is still queued; g1 and g2 are its default finals.
	for i, pub := range []float64{0.70, 0.60, 0.50, 0.40, -1} {
		name := fmt.Sprintf("g%d", i+1)
		submit("gamma", name, variant(base, name))
		if pub >= 0 {
			h.finish(ids[name], pub, pub)
		}
	}
	age(t, h.srv.Blobs.Dir())

	before := h.json(http.MethodGet, "/api/v1/storage", org, nil)
	if before.status != 200 {
		t.Fatalf("storage: %d %s", before.status, before.raw)
	}
	st := before.body["storage"].(map[string]any)
	binaries := st["binaries"].(map[string]any)
	reclaim := st["reclaimable"].(map[string]any)
	if binaries["files"] != 14.0 || reclaim["files"] != 3.0 || reclaim["bytes"].(float64) < 3*float64(len(base)) {
		t.Fatalf("before the collection: %s (want 14 binaries, 3 reclaimable)", before.raw)
	}
	if a := h.json(http.MethodGet, "/api/v1/storage", tokens["alpha"], nil); a.status != 403 {
		t.Fatalf("a participant read the storage: %d %s", a.status, a.raw)
	}

	col := h.json(http.MethodPost, "/api/v1/storage/collect", org, nil)
	if col.status != 200 {
		t.Fatalf("collect: %d %s", col.status, col.raw)
	}
	done := col.body["collection"].(map[string]any)
	if done["released_submissions"] != 3.0 || done["removed"].(map[string]any)["files"] != 3.0 || done["kept"].(map[string]any)["files"] != 11.0 {
		t.Fatalf("collection: %s (want 3 released and removed, 11 kept)", col.raw)
	}
	released := map[string]bool{"a2": true, "a3": true, "g3": true}
	for name, id := range ids {
		a := h.json(http.MethodGet, "/api/v1/submissions/"+id, org, nil)
		sub := a.body["submission"].(map[string]any)
		_, marked := sub["binary_released_at"]
		if marked != released[name] {
			t.Errorf("%s: binary_released_at %v, want released %v", name, sub["binary_released_at"], released[name])
		}
		_, err := os.Stat(h.srv.Blobs.Path(sub["sha256"].(string)))
		if stored := err == nil; stored == released[name] {
			t.Errorf("%s: binary stored %v, want %v", name, stored, !released[name])
		}
		if released[name] && sub["status"] != "scored" {
			t.Errorf("%s: a released binary changed its submission's status to %v", name, sub["status"])
		}
	}
	again := h.json(http.MethodPost, "/api/v1/storage/collect", org, nil)
	if d := again.body["collection"].(map[string]any); d["released_submissions"] != 0.0 || d["removed"].(map[string]any)["files"] != 0.0 {
		t.Fatalf("a second collection: %s", again.raw)
	}

	// A rejudge runs a kept binary again, as a new submission of the
	// same plugin for the same team; a released one says why it cannot.
	rj := h.json(http.MethodPost, "/api/v1/submissions/"+ids["a1"]+"/rejudge", org, nil)
	if rj.status != 202 || rj.body["rejudge_of"] != ids["a1"] {
		t.Fatalf("rejudge a kept submission: %d %s", rj.status, rj.raw)
	}
	rerun := rj.body["submission"].(map[string]any)
	if rerun["status"] != "queued" || rerun["team"] != "alpha" || rerun["id"] == ids["a1"] {
		t.Fatalf("the rejudge's run: %s", rj.raw)
	}
	a1 := h.json(http.MethodGet, "/api/v1/submissions/"+ids["a1"], org, nil).body["submission"].(map[string]any)
	if rerun["sha256"] != a1["sha256"] {
		t.Fatalf("the rejudge runs %v, not a1's binary %v", rerun["sha256"], a1["sha256"])
	}
	rj = h.json(http.MethodPost, "/api/v1/submissions/"+ids["a2"]+"/rejudge", org, nil)
	if msg := string(rj.raw); rj.status != 409 || rj.errorCode() != "binary_released" || !strings.Contains(msg, "cannot run again") || !strings.Contains(msg, "kept predictions") {
		t.Fatalf("rejudge a released submission: %d %s", rj.status, rj.raw)
	}
	if rj := h.json(http.MethodPost, "/api/v1/submissions/"+ids["a1"]+"/rejudge", tokens["alpha"], nil); rj.status != 403 {
		t.Fatalf("a participant rejudged: %d %s", rj.status, rj.raw)
	}
	if rj := h.json(http.MethodPost, "/api/v1/submissions/"+ids["g5"]+"/rejudge", org, nil); rj.status != 409 || rj.errorCode() != "not_judged_yet" {
		t.Fatalf("rejudge a queued submission: %d %s", rj.status, rj.raw)
	}
	// A new upload of released content is stored again, and a binary
	// stored just now is never taken, even before its record exists.
	submit("alpha", "a6", variant(base, "a2"))
	orphan := h.srv.Blobs.Path(strings.Repeat("ab", 32))
	if err := os.MkdirAll(filepath.Dir(orphan), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, base, 0o555); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.Storage.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{orphan, h.srv.Blobs.Path(h.json(http.MethodGet, "/api/v1/submissions/"+ids["a6"], org, nil).body["submission"].(map[string]any)["sha256"].(string))} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a binary stored just now was removed: %v", err)
		}
	}
	// Once old, a binary no submission names goes.
	age(t, h.srv.Blobs.Dir())
	if _, err := h.srv.Storage.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Error("a binary no submission names was kept")
	}
}

// TestAFullDiskRefusesUploadsWithoutLoss: with the data directory's
// filesystem full, an upload (sized or streamed) answers 507 with a
// message for the participant, leaves no file and takes no quota, and
// /readyz reports the low disk; once there is room, the same team's one
// daily submission is accepted.
func TestAFullDiskRefusesUploadsWithoutLoss(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	spec := builtinSpec(t, "mnist")
	spec["limits"].(map[string]any)["submissions_per_day"] = 1
	h.putSpec(org, "mnist", spec)
	data := smallfs.Mount(t, 8<<20)
	h.srv.Blobs = blob.New(filepath.Join(data, "blobs"))
	h.srv.DataDir, h.srv.MinFreeDisk = data, 1<<20
	token := h.register("alpha")
	bin := staticBinary(t)

	if a := h.json(http.MethodGet, "/readyz", "", nil); a.status != 200 || a.body["checks"].(map[string]any)["disk"] != "ok" {
		t.Fatalf("readyz with room: %d %s", a.status, a.raw)
	}
	filler := smallfs.Fill(t, data)
	ready := h.json(http.MethodGet, "/readyz", "", nil)
	if disk, _ := ready.body["checks"].(map[string]any)["disk"].(string); ready.status != 503 || !strings.HasPrefix(disk, "low:") || !strings.Contains(disk, "HACKARENA_MIN_FREE_DISK") {
		t.Fatalf("readyz on a full disk: %d %s", ready.status, ready.raw)
	}
	full := func(a answer, how string) {
		t.Helper()
		if a.status != 507 || a.errorCode() != "insufficient_storage" || !strings.Contains(string(a.raw), "quota is untouched") {
			t.Fatalf("%s upload on a full disk: %d %s", how, a.status, a.raw)
		}
	}
	full(h.upload(token, bin), "sized")
	full(h.chunkedUpload(token, bin), "streamed")
	left, _ := os.ReadDir(filepath.Join(data, "blobs", "tmp"))
	if len(left) != 0 {
		t.Fatalf("a refused upload left %d file(s) behind", len(left))
	}
	if mine := h.json(http.MethodGet, "/api/v1/teams/me/submissions", token, nil); len(mine.body["submissions"].([]any)) != 0 {
		t.Fatalf("a refused upload was queued: %s", mine.raw)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if a := h.upload(token, bin); a.status != 202 {
		t.Fatalf("the day's one submission once there is room: %d %s", a.status, a.raw)
	}
	if a := h.json(http.MethodGet, "/readyz", "", nil); a.status != 200 {
		t.Fatalf("readyz once there is room: %d %s", a.status, a.raw)
	}
}

// TestPredictionsDroppedAfterCloseWhereTheChallengeSaysSo: a challenge
// with keep_predictions "until_close" loses its kept predictions at the
// first collection after it closes, and not before; the default keeps them.
func TestPredictionsDroppedAfterCloseWhereTheChallengeSaysSo(t *testing.T) {
	h := newHarness(t, 64<<20)
	org := h.organizer()
	preds := &judge.PredictionStore{Dir: t.TempDir()}
	h.srv.Storage = &retention.Collector{Store: h.st, Blobs: h.srv.Blobs, Challenges: h.srv.Challenges, Predictions: preds, Policy: retention.Policy{KeepLast: 3}}
	mnist := h.scoredSubmission("mnist", "alpha", map[string]float64{"accuracy": 0.8}, map[string]float64{"accuracy": 0.7})
	houses := h.scoredSubmission("houses", "alpha", map[string]float64{"rmsle": 0.2}, map[string]float64{"rmsle": 0.3})
	for _, id := range []string{mnist.ID, houses.ID} {
		if err := preds.Save(id, &judge.Predictions{Classes: []int{1, 2, 3}}); err != nil {
			t.Fatal(err)
		}
	}
	setClose := func(closes time.Time) {
		t.Helper()
		spec := builtinSpec(t, "mnist")
		spec["keep_predictions"] = "until_close"
		spec["schedule"] = map[string]any{"closes": closes.UTC().Format(time.RFC3339)}
		h.putSpec(org, "mnist", spec)
	}
	collect := func() map[string]any {
		t.Helper()
		a := h.json(http.MethodPost, "/api/v1/storage/collect", org, nil)
		if a.status != 200 {
			t.Fatalf("collect: %d %s", a.status, a.raw)
		}
		return a.body["collection"].(map[string]any)["predictions_removed"].(map[string]any)
	}
	setClose(time.Now().Add(time.Hour))
	if got := collect(); got["files"] != 0.0 {
		t.Fatalf("predictions dropped before the close: %v", got)
	}
	setClose(time.Now().Add(-time.Minute))
	if got := collect(); got["files"] != 1.0 {
		t.Fatalf("predictions dropped after the close: %v, want mnist's one", got)
	}
	if _, err := preds.Load(mnist.ID); err == nil {
		t.Error("mnist's predictions are still kept after it closed")
	}
	if _, err := preds.Load(houses.ID); err != nil {
		t.Errorf("houses keeps its predictions (the default): %v", err)
	}
	spec := builtinSpec(t, "mnist")
	spec["keep_predictions"] = "until_close"
	if a := h.json(http.MethodPut, "/api/v1/challenges/mnist", org, spec); a.status != 400 || !strings.Contains(string(a.raw), "schedule.closes") {
		t.Fatalf("until_close without a close: %d %s", a.status, a.raw)
	}
}
