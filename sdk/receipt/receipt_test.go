package receipt

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func signed(t testing.TB) (ed25519.PrivateKey, Envelope) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	commitment, disclosure, err := Commit("00112233445566778899aabbccddeeff", map[string]float64{"accuracy": 0.8123, "macro_f1": 0.1 + 0.2})
	if err != nil {
		t.Fatal(err)
	}
	env, err := Sign(key, Body{ID: "r1", SubmissionID: "s1", Team: "Owls", Challenge: "mnist", SpecRevision: 2, SpecSHA256: strings.Repeat("ab", 32),
		Datasets: []DatasetFile{{Name: "t10k-images-idx3-ubyte.gz", Role: "test_images", SHA256: strings.Repeat("cd", 32)}}, PluginSHA256: strings.Repeat("ef", 32),
		JudgeVersion: "v1.2.3", Sandbox: "docker", Status: "scored", Public: map[string]float64{"accuracy": 0.8214, "rmse": 1e-7},
		PrivateCommitment: commitment, FinishedAt: time.Unix(1700000000, 123456789).UTC(), IssuedAt: time.Unix(1700000001, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	env.Disclosure = &disclosure
	return key, env
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// flip changes one byte of the payload (as base64 decoded).
func flip(env Envelope, at int) Envelope {
	raw, _ := base64.StdEncoding.DecodeString(env.Payload)
	raw[at%len(raw)] ^= 1
	env.Payload = base64.StdEncoding.EncodeToString(raw)
	return env
}

func TestAReceiptVerifiesAndAChangedByteDoesNot(t *testing.T) {
	key, env := signed(t)
	body, err := Verify(env, pub(key))
	if err != nil || body.SubmissionID != "s1" || body.Version != Version || body.Public["accuracy"] != 0.8214 {
		t.Fatalf("verify: %+v %v", body, err)
	}
	for at := 0; at < 200; at += 7 {
		if _, err := Verify(flip(env, at), pub(key)); err == nil {
			t.Fatalf("a receipt with byte %d changed verified", at)
		}
	}
	_, other := signed(t)
	other.KeyID = env.KeyID
	if _, err := Verify(Envelope{Payload: env.Payload, Signature: other.Signature, KeyID: env.KeyID}, pub(key)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another key's signature: %v", err)
	}
	otherKey, _ := signed(t)
	if _, err := Verify(env, pub(otherKey)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("checked with another key: %v", err)
	}
	lie := *env.Disclosure
	lie.Metrics = strings.Replace(lie.Metrics, "0.8123", "0.9123", 1)
	env.Disclosure = &lie
	if _, err := Verify(env, pub(key)); !errors.Is(err, ErrBadDisclosure) {
		t.Fatalf("a disclosure that is not what was committed to: %v", err)
	}
}

// TestAnIndependentEd25519AgreesOnReceipts: Debian's python3-cryptography
// (OpenSSL's ed25519, not Go's) verifies a receipt, its disclosure
// included, and refuses it with one byte changed.
func TestAnIndependentEd25519AgreesOnReceipts(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import cryptography.hazmat.primitives.asymmetric.ed25519").Run(); err != nil {
		t.Fatalf("this test needs python3 with the cryptography package (Debian: python3-cryptography; make deps installs it): %v", err)
	}
	key, env := signed(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.json")
	raw, _ := json.Marshal(PublicKey{Algorithm: "ed25519", Key: base64.StdEncoding.EncodeToString(pub(key)), KeyID: KeyID(pub(key))})
	if err := os.WriteFile(keyFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(env Envelope) (string, error) {
		raw, _ := json.Marshal(env)
		file := filepath.Join(dir, "receipt.json")
		if err := os.WriteFile(file, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("/usr/bin/python3", "testdata/verify_receipt.py", file, keyFile).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := check(env); err != nil || out != "valid s1 r1" {
		t.Fatalf("python's verdict on a good receipt: %q %v", out, err)
	}
	if out, err := check(flip(env, 40)); err == nil || out != "invalid signature" {
		t.Fatalf("python's verdict on a changed byte: %q %v", out, err)
	}
	lie := *env.Disclosure
	lie.Metrics = strings.Replace(lie.Metrics, "0.8123", "0.9123", 1)
	env.Disclosure = &lie
	if out, err := check(env); err == nil || !strings.Contains(out, "does not match") {
		t.Fatalf("python's verdict on a false disclosure: %q %v", out, err)
	}
}

// FuzzVerify: whatever bytes an envelope holds, Verify never panics and
// accepts only the payload the key signed.
func FuzzVerify(f *testing.F) {
	key, env := signed(f)
	raw, _ := json.Marshal(env)
	f.Add(raw)
	f.Add([]byte(`{"payload":"","signature":"","key_id":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Envelope
		if json.Unmarshal(data, &e) != nil {
			return
		}
		body, err := Verify(e, pub(key))
		got, _ := base64.StdEncoding.DecodeString(e.Payload)
		want, _ := base64.StdEncoding.DecodeString(env.Payload)
		if err == nil && (string(got) != string(want) || body.SubmissionID != "s1") {
			t.Fatalf("accepted a payload the key did not sign: %q", got)
		}
	})
}
