package challenges

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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

// testEnv finds the data mirror; the tests need it (CI has it).
func testEnv(t *testing.T) Env {
	t.Helper()
	ds := FindDatasets()
	if ds == "" {
		t.Fatal("no data mirror: set HACKARENA_DATASETS to the directory with imdb/ and houses/")
	}
	return Env{Datasets: ds, Cache: t.TempDir(), MNISTDir: os.Getenv("HACKARENA_MNIST_DIR")}
}

var (
	builtinOnce sync.Once
	builtin     *Registry
	builtinErr  error
)

func loadBuiltin(t *testing.T) *Registry {
	t.Helper()
	env := testEnv(t)
	builtinOnce.Do(func() { builtin, builtinErr = LoadAll(context.Background(), Builtin, "challenges", env) })
	if builtinErr != nil {
		t.Fatal(builtinErr)
	}
	return builtin
}

func openChallenge(t *testing.T, slug string) (*Challenge, *HiddenSet) {
	t.Helper()
	c, ok := loadBuiltin(t).Get(slug)
	if !ok {
		t.Fatalf("no %s challenge", slug)
	}
	if c.Status != StatusOpen {
		t.Fatalf("%s is %s: %s", slug, c.Status, c.StatusReason)
	}
	h, err := c.Hidden()
	if err != nil {
		t.Fatal(err)
	}
	return c, h
}

func TestBuiltinChallengesLoad(t *testing.T) {
	reg := loadBuiltin(t)
	if got := strings.Join(reg.Slugs(), ","); got != "houses,imdb,mnist" {
		t.Fatalf("slugs %s", got)
	}
	for _, c := range reg.All() {
		if c.Status != StatusOpen || c.Description == "" || len(c.Data) == 0 {
			t.Errorf("%s: status %s (%s), %d data files, description %d bytes", c.Slug, c.Status, c.StatusReason, len(c.Data), len(c.Description))
		}
	}
}

func TestMNISTHiddenSetHasBalancedSplit(t *testing.T) {
	c, h := openChallenge(t, "mnist")
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

func TestIMDBHiddenSetIsShuffledAndSplit(t *testing.T) {
	c, h := openChallenge(t, "imdb")
	if h.Count != 25000 || len(h.Texts) != 25000 {
		t.Fatalf("hidden set has %d examples", h.Count)
	}
	public, positives := 0, 0
	for i, p := range h.Public {
		if p {
			public++
		}
		positives += h.Labels[i]
	}
	if public != 12500 || positives != 12500 {
		t.Fatalf("%d public, %d positive; want 12500 each", public, positives)
	}
	// The mirror stores the test set sorted by label; the judge must not.
	firstHalfPositives := 0
	for _, y := range h.Labels[:12500] {
		firstHalfPositives += y
	}
	if firstHalfPositives < 6000 || firstHalfPositives > 6500 {
		t.Fatalf("%d positives among the first 12500 examples: the order gives the label away", firstHalfPositives)
	}
	if len(c.Data) != 1 || c.Data[0].Name != "train.jsonl.gz" {
		t.Fatalf("public files %v, want only train.jsonl.gz", c.Data)
	}
}

func TestHousesSplitKeepsHiddenPricesOutOfTrainingFile(t *testing.T) {
	c, h := openChallenge(t, "houses")
	if h.Count != 930 || len(h.Targets) != 930 {
		t.Fatalf("hidden set has %d rows", h.Count)
	}
	f, ok := c.DataFile(TableTrainFile)
	if !ok {
		t.Fatal("no train.csv")
	}
	rows, err := csv.NewReader(bytes.NewReader(f.Content)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2001 {
		t.Fatalf("train.csv has %d rows, want header + 2000", len(rows))
	}
	header := rows[0]
	for _, dropped := range []string{"Order", "PID"} {
		for _, name := range header {
			if name == dropped {
				t.Fatalf("train.csv has column %s", dropped)
			}
		}
	}
	if header[len(header)-1] != "SalePrice" || len(header) != 80 {
		t.Fatalf("train.csv header has %d columns ending %q", len(header), header[len(header)-1])
	}
	// No hidden house may appear in the training file: compare every
	// feature and the price (the data has no duplicate rows).
	byName := map[string]int{}
	for i, c := range h.Columns {
		byName[c.Name] = i
	}
	cell := func(c int, row int) string {
		if col := h.Columns[c]; col.Numbers != nil {
			return formatNumber(col.Numbers[row])
		}
		return h.Columns[c].Strings[row]
	}
	train := map[string]bool{}
	for _, r := range rows[1:] {
		var key []string
		for j, name := range header[:len(header)-1] {
			v := r[j]
			if h.Columns[byName[name]].Numbers != nil {
				f := math.NaN()
				if v != "" {
					f, _ = strconv.ParseFloat(v, 64)
				}
				v = formatNumber(f)
			}
			key = append(key, v)
		}
		train[strings.Join(append(key, r[len(r)-1]), "|")] = true
	}
	for i := range h.Count {
		var key []string
		for _, name := range header[:len(header)-1] {
			key = append(key, cell(byName[name], i))
		}
		k := strings.Join(append(key, formatNumber(h.Targets[i])), "|")
		if train[k] {
			t.Fatalf("hidden row %d is in train.csv: %s", i, k)
		}
	}
	if len(train) != 2000 {
		t.Fatalf("%d distinct training rows, want 2000", len(train))
	}
	// NA is a category; an empty cell is missing.
	alley := h.Columns[byName["Alley"]]
	frontage := h.Columns[byName["Lot Frontage"]]
	subclass := h.Columns[byName["MS SubClass"]]
	if alley.Strings == nil || frontage.Numbers == nil || subclass.Strings == nil {
		t.Fatal("column types: Alley and MS SubClass must be strings, Lot Frontage numbers")
	}
	var na, missing int
	for i := range h.Count {
		if alley.Strings[i] == "NA" {
			na++
		}
		if math.IsNaN(frontage.Numbers[i]) {
			missing++
		}
		if len(subclass.Strings[i]) != 3 {
			t.Fatalf("MS SubClass %q lost its leading zero", subclass.Strings[i])
		}
	}
	if na < 800 || missing == 0 || missing > 300 {
		t.Fatalf("%d NA alleys, %d missing frontages", na, missing)
	}
}

func formatNumber(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// copyBuiltin writes the builtin specs to a directory a test may damage.
func copyBuiltin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(Builtin, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(Builtin, p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrokenSpecsNameTheProblemAndSpareTheOthers: a typo in a key, a wrong
// sha256 and a missing file each make only their challenge unavailable,
// with a reason naming the file and what is wrong.
func TestBrokenSpecsNameTheProblemAndSpareTheOthers(t *testing.T) {
	env := testEnv(t)
	cases := []struct {
		name    string
		slug    string
		damage  func(specs, data string)
		reasons []string
	}{
		{"typo in a key", "imdb", func(specs, _ string) {
			editFile(t, filepath.Join(specs, "imdb", SpecFileName), `"primary_metric"`, `"primary_metirc"`)
		}, []string{"imdb/challenge.json", `unknown key "primary_metirc"`}},
		{"wrong sha256", "houses", func(specs, _ string) {
			editFile(t, filepath.Join(specs, "houses", SpecFileName), `"490d17d6`, `"590d17d6`)
		}, []string{"AmesHousing.csv", "has sha256 490d17d6", "pins 590d17d6"}},
		{"missing file", "imdb", func(_, data string) {
			if err := os.Remove(filepath.Join(data, "imdb", "test.jsonl.gz")); err != nil {
				t.Fatal(err)
			}
		}, []string{"test.jsonl.gz is missing", "HACKARENA_DATASETS"}},
		{"metric of the wrong task", "houses", func(specs, _ string) {
			editFile(t, filepath.Join(specs, "houses", SpecFileName), `"metrics": ["rmsle"`, `"metrics": ["accuracy"`)
		}, []string{"houses/challenge.json", "metrics[0]", `"accuracy" is not a regression metric`}},
		{"wrong direction", "mnist", func(specs, _ string) {
			editFile(t, filepath.Join(specs, "mnist", SpecFileName), `"higher_is_better"`, `"lower_is_better"`)
		}, []string{"mnist/challenge.json", "direction", "accuracy, which is higher_is_better"}},
		{"unknown tie-breaker", "mnist", func(specs, _ string) {
			editFile(t, filepath.Join(specs, "mnist", SpecFileName), `"direction": "higher_is_better"`, `"direction": "higher_is_better", "tie_breaker": "luck"`)
		}, []string{"mnist/challenge.json", "tie_breaker", `"luck" is not a resource`, "judging_seconds"}},
		{"too many finals", "mnist", func(specs, _ string) {
			editFile(t, filepath.Join(specs, "mnist", SpecFileName), `"direction": "higher_is_better"`, `"direction": "higher_is_better", "final_submissions": 50`)
		}, []string{"mnist/challenge.json", "final_submissions", "must be 1..20"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			specs := copyBuiltin(t)
			data := t.TempDir()
			for _, ds := range []string{"imdb", "houses"} {
				if err := os.Symlink(filepath.Join(env.Datasets, ds), filepath.Join(data, ds)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name == "missing file" {
				// A private copy of imdb/ the test may delete from.
				_ = os.Remove(filepath.Join(data, "imdb"))
				_ = os.MkdirAll(filepath.Join(data, "imdb"), 0o755)
				_ = os.Symlink(filepath.Join(env.Datasets, "imdb", "train.jsonl.gz"), filepath.Join(data, "imdb", "train.jsonl.gz"))
				_ = os.Symlink(filepath.Join(env.Datasets, "imdb", "test.jsonl.gz"), filepath.Join(data, "imdb", "test.jsonl.gz"))
			}
			tc.damage(specs, data)
			reg, err := LoadAll(context.Background(), os.DirFS(specs), specs, Env{Datasets: data, Cache: t.TempDir(), MNISTDir: env.MNISTDir})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range reg.All() {
				if c.Slug == tc.slug {
					if c.Status != StatusUnavailable {
						t.Fatalf("%s is %s", c.Slug, c.Status)
					}
					for _, want := range tc.reasons {
						if !strings.Contains(c.StatusReason, want) {
							t.Errorf("reason %q does not say %q", c.StatusReason, want)
						}
					}
					if _, err := c.Hidden(); err == nil {
						t.Error("an unavailable challenge handed out a hidden set")
					}
					if c.Open(c.OpensAt) {
						t.Error("an unavailable challenge accepts submissions")
					}
				} else if c.Status != StatusOpen {
					t.Errorf("%s became %s (%s) because of another challenge's problem", c.Slug, c.Status, c.StatusReason)
				}
			}
		})
	}
}

func TestFetchChecksTheDownload(t *testing.T) {
	good := []byte("price,area\n1,2\n")
	sum := sha256.Sum256(good)
	goodSHA := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good.csv":
			_, _ = w.Write(good)
		case "/truncated.csv":
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(good)
		case "/other.csv":
			_, _ = w.Write([]byte("something else"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cases := []struct {
		name, path, want string
	}{
		{"good", "/good.csv", ""},
		{"wrong checksum", "/other.csv", "the mirror serves other data"},
		{"truncated", "/truncated.csv", "download truncated after 15 of 1000 bytes"},
		{"not found", "/nope.csv", "404 Not Found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			env := Env{Datasets: t.TempDir(), Cache: cache}
			f, err := env.resolve(context.Background(), "houses", FileSpec{Name: "data.csv", Role: "all", SHA256: goodSHA, URL: srv.URL + tc.path})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				got, _ := os.ReadFile(f.Path)
				if !bytes.Equal(got, good) || f.SHA256 != goodSHA {
					t.Fatalf("fetched %q", got)
				}
				// A second resolve finds the cached file without a URL.
				if _, err := env.resolve(context.Background(), "houses", FileSpec{Name: "data.csv", Role: "all", SHA256: goodSHA}); err != nil {
					t.Fatalf("cached file not used: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if _, statErr := os.Stat(filepath.Join(cache, "houses", "data.csv")); !errors.Is(statErr, fs.ErrNotExist) {
				t.Fatal("a bad download was kept under the file's name")
			}
		})
	}
}

// FuzzDecodeSpec: the organizer's PUT body goes through DecodeSpec and
// Validate; neither may panic, and a spec that passes survives a round trip
// through JSON unchanged.
func FuzzDecodeSpec(f *testing.F) {
	for _, slug := range []string{"mnist", "imdb", "houses"} {
		raw, err := fs.ReadFile(Builtin, slug+"/"+SpecFileName)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"title": 1}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		spec, err := DecodeSpec("fuzz.json", bytes.NewReader(raw))
		if err != nil {
			return
		}
		if spec.Validate("fuzz.json") != nil {
			return
		}
		again, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeSpec("again.json", bytes.NewReader(again))
		if err != nil || back.Validate("again.json") != nil || !reflect.DeepEqual(back, spec) {
			t.Fatalf("round trip changed a valid spec: %v\n%+v\n%+v", err, spec, back)
		}
	})
}

// TestAFailedHiddenLoadIsNotKept: the hidden set's file goes missing for
// a moment (a transient read error); that load fails, and the next one,
// with the file back, succeeds instead of repeating the failure until a
// restart.
func TestAFailedHiddenLoadIsNotKept(t *testing.T) {
	mirror := t.TempDir()
	if err := os.MkdirAll(filepath.Join(mirror, "imdb"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"train.jsonl.gz", "test.jsonl.gz"} {
		raw, err := os.ReadFile(filepath.Join(FindDatasets(), "imdb", name))
		if err != nil {
			t.Fatalf("the data mirror (HACKARENA_DATASETS) is needed: %v", err)
		}
		if err := os.WriteFile(filepath.Join(mirror, "imdb", name), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := mustSpec(t, "imdb")
	ch := Build(context.Background(), "imdb", spec, Env{Datasets: mirror, Cache: t.TempDir()})
	if ch.Status != StatusOpen {
		t.Fatalf("imdb: %s", ch.StatusReason)
	}
	test := filepath.Join(mirror, "imdb", "test.jsonl.gz")
	if err := os.Rename(test, test+".away"); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Hidden(); err == nil {
		t.Fatal("the hidden set loaded without its file")
	}
	if err := os.Rename(test+".away", test); err != nil {
		t.Fatal(err)
	}
	h, err := ch.Hidden()
	if err != nil || h.Count == 0 {
		t.Fatalf("after the file came back: %v", err)
	}
}

// revisionSource serves one revision of a spec.
type revisionSource struct {
	slug string
	spec Spec
	rev  int64
}

func (s revisionSource) ChallengeSpecs(context.Context) (map[string]StoredSpec, error) {
	return map[string]StoredSpec{s.slug: {Spec: s.spec, Revision: s.rev}}, nil
}

// TestASlowSyncNeverPutsBackAnOlderRevision: syncs that race (each read a
// different revision and build it while the others do) leave the latest
// revision in the registry, whichever finishes last; so does an
// organizer's PUT that arrives after a later revision.
func TestASlowSyncNeverPutsBackAnOlderRevision(t *testing.T) {
	spec := mustSpec(t, "houses")
	env := Env{Datasets: FindDatasets(), Cache: t.TempDir()}
	reg := NewRegistry()
	const revisions = 24
	var wg sync.WaitGroup
	for i := revisions; i >= 1; i-- {
		wg.Add(1)
		go func(rev int64) {
			defer wg.Done()
			if err := reg.Sync(context.Background(), revisionSource{"houses", spec, rev}, env); err != nil {
				t.Error(err)
			}
		}(int64(i))
	}
	wg.Wait()
	got, ok := reg.Get("houses")
	if !ok || got.Revision != revisions || got.Status != StatusOpen {
		t.Fatalf("after racing syncs the registry holds revision %d (%v), want %d", got.Revision, ok, revisions)
	}
	older := Build(context.Background(), "houses", spec, env)
	older.Revision = revisions - 1
	if reg.PutNewer(older) {
		t.Fatal("an older revision replaced a newer one")
	}
	if got, _ := reg.Get("houses"); got.Revision != revisions {
		t.Fatalf("revision %d after a late older PUT", got.Revision)
	}
}

// TestEvalGetsTheJudgesTimePerExample: a validation part of a tenth of the
// hidden set's size gets a tenth of the judge's limit, never less than
// what starting a plugin needs (30 s, or the whole limit when shorter),
// and an unknown hidden size keeps the limit.
func TestEvalGetsTheJudgesTimePerExample(t *testing.T) {
	ev := Evaluation{HiddenExamples: 10000}
	for _, tc := range []struct {
		wall time.Duration
		rows int
		want time.Duration
	}{
		{10 * time.Minute, 1000, time.Minute},
		{5 * time.Minute, 1000, 30 * time.Second},
		{5 * time.Second, 1000, 5 * time.Second},
		{5 * time.Minute, 20000, 5 * time.Minute},
	} {
		if got := ev.WallTimeFor(tc.wall, tc.rows); got != tc.want {
			t.Errorf("%d rows of 10000 under %s: %s, want %s", tc.rows, tc.wall, got, tc.want)
		}
	}
	if got := (Evaluation{}).WallTimeFor(time.Minute, 10); got != time.Minute {
		t.Errorf("unknown hidden size: %s", got)
	}
	mnist := Build(context.Background(), "mnist", mustSpec(t, "mnist"), Env{MNISTDir: os.Getenv("HACKARENA_MNIST_DIR")})
	houses := Build(context.Background(), "houses", mustSpec(t, "houses"), Env{Datasets: FindDatasets(), Cache: t.TempDir()})
	if mnist.Evaluation().HiddenExamples != 10000 || houses.Evaluation().HiddenExamples != 930 {
		t.Errorf("hidden sizes: mnist %d, houses %d", mnist.Evaluation().HiddenExamples, houses.Evaluation().HiddenExamples)
	}
}

func mustSpec(t *testing.T, slug string) Spec {
	t.Helper()
	raw, err := fs.ReadFile(Builtin, slug+"/challenge.json")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := DecodeSpec(slug, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}
