package runner

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func packed(t *testing.T, p *Payload, base []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plugin")
	var buf bytes.Buffer
	buf.Write(base)
	if err := p.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAPayloadReadsBackFromTheEndOfAnExecutable(t *testing.T) {
	p := &Payload{Sections: map[string][]byte{SectionONNX: []byte("model bytes"), SectionPreprocess: []byte(`{"task":"regression"}`)}}
	got, err := Read(packed(t, p, []byte("\x7fELF and the rest of an executable")))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Sections, p.Sections) {
		t.Fatalf("read %q, wrote %q", got.Sections, p.Sections)
	}
	plain := filepath.Join(t.TempDir(), "hackctl")
	os.WriteFile(plain, []byte("\x7fELF only"), 0o755)
	if _, err := Read(plain); err != ErrNoPayload {
		t.Fatalf("a plain executable: %v, want ErrNoPayload", err)
	}
}

func TestACorruptPayloadIsAnErrorNotAPanic(t *testing.T) {
	p := &Payload{Sections: map[string][]byte{SectionONNX: bytes.Repeat([]byte{1}, 100)}}
	var buf bytes.Buffer
	p.Encode(&buf)
	whole := buf.Bytes()
	// The trailer claims more than the file has.
	huge := append([]byte(nil), whole...)
	copy(huge[len(huge)-16:], []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	path := filepath.Join(t.TempDir(), "huge")
	os.WriteFile(path, huge, 0o755)
	if _, err := Read(path); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("a payload longer than its file: %v", err)
	}
	// A section that claims more than the payload holds.
	if _, err := decodeSections(append([]byte{4, 0, 'a', 'b', 'c', 'd'}, 0xff, 0, 0, 0, 0, 0, 0, 0)); err == nil {
		t.Fatal("a cut section decoded")
	}
}

func FuzzPayload(f *testing.F) {
	var buf bytes.Buffer
	(&Payload{Sections: map[string][]byte{SectionNetwork: []byte("{}"), SectionWeights: []byte("PK")}}).Encode(&buf)
	f.Add(buf.Bytes()[:buf.Len()-16])
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeSections(data)
		if err != nil {
			return
		}
		var again bytes.Buffer
		if err := p.Encode(&again); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPreprocessIsReadStrictly(t *testing.T) {
	for in, want := range map[string]string{
		`{"image":{"scal":0.5}}`:                             `unknown field "scal"`,
		`{"task":"ranking"}`:                                 `task "ranking"`,
		`{"text":{"vocabulary":["a"],"length":0}}`:           "text.length 0",
		`{"text":{"length":5,"padding":"middle"}}`:           `not "middle"`,
		`{"table":{"features":[{"mean":1}]}}`:                "has no column",
		`{"task":"classification","threshold":0,"image":{}}`: "",
	} {
		_, err := DecodePreprocess([]byte(in))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}

func TestTextsBecomeTheIdsThePythonHelperTrainsOn(t *testing.T) {
	texts := []string{
		"A great film.<br />Really GREAT, isn't it?",
		"one two three four five six seven eight",
		"",
		"Ünïcode wörds, 42 times, and_underscores",
	}
	for _, sides := range [][2]string{{"post", "pre"}, {"pre", "post"}} {
		prep := &Preprocess{Text: &TextPrep{Vocabulary: []string{"great", "film", "isn't", "two", "eight", "42", "wörds"}, Length: 5, Padding: sides[0], Truncating: sides[1]}}
		raw, _ := json.Marshal(prep)
		m, err := New(&Payload{Sections: map[string][]byte{SectionPreprocess: raw}})
		if err != nil {
			t.Fatal(err)
		}
		var got [][]float32
		for _, text := range texts {
			got = append(got, m.sequence(text))
		}
		script := `import json, sys; sys.path.insert(0, sys.argv[1]); import hackarena_export as hx
p = json.loads(sys.argv[2]); t = p["text"]
print(json.dumps(hx.encode_texts(json.loads(sys.argv[3]), t["vocabulary"], t["length"], t["padding"], t["truncating"]).tolist()))`
		textsJSON, _ := json.Marshal(texts)
		out, err := exec.Command("/usr/bin/python3", "-c", script, filepath.Join("..", "python"), string(raw), string(textsJSON)).CombinedOutput()
		if err != nil {
			t.Fatalf("the Python helper (make deps installs python3-torch and python3-numpy): %v\n%s", err, out)
		}
		var want [][]float32
		if err := json.Unmarshal(out, &want); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("padding %s, truncating %s: the runner makes %v, the helper %v", sides[0], sides[1], got, want)
		}
	}
}

func TestOutputsBecomePredictions(t *testing.T) {
	classes, probs := argmaxProbabilities([]float32{-2.3, -0.1, -3})
	if classes != 1 || probs[1] < 0.8 || probs[0]+probs[1]+probs[2] < 0.999 {
		t.Fatalf("log-probabilities: class %d, %v", classes, probs)
	}
	if c, p := argmaxProbabilities([]float32{0.2, 0.7, 0.1}); c != 1 || p[1] != 0.7 {
		t.Fatalf("probabilities kept: %d %v", c, p)
	}
}

func FuzzDecodePreprocess(f *testing.F) {
	f.Add([]byte(`{"task":"classification","text":{"vocabulary":["a","b","a"],"length":3,"padding":"pre"}}`))
	f.Add([]byte(`{"table":{"features":[{"column":"x","mean":1,"std":0},{"column":"c","categories":["a"]}]},"output":{"exp":true}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := DecodePreprocess(data); err != nil {
			return
		}
		m, err := New(&Payload{Sections: map[string][]byte{SectionPreprocess: data}})
		if err != nil {
			t.Fatalf("decoded but New refused it: %v", err)
		}
		if m.prep.Text != nil {
			m.sequence("a b c d <br /> e")
		}
	})
}
