package sdkmodule

import (
	"archive/zip"
	"bytes"
	"strings"
	"testing"
)

// TestTheSDKModuleIsTheSDKAndNamedByItsContent: the module zip holds the
// go.mod and the SDK's packages under the module's path and version, not
// the commands or tests that need the rest of the repository; the same
// source gives the same version; the proxy answers for this module only.
func TestTheSDKModuleIsTheSDKAndNamedByItsContent(t *testing.T) {
	root, err := FindSource("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := FromSource(root)
	if err != nil {
		t.Fatal(err)
	}
	again, err := FromSource(root)
	if err != nil || again.Version != m.Version || !bytes.Equal(again.Zip, m.Zip) {
		t.Fatalf("the same source made %s then %s (%v)", m.Version, again.Version, err)
	}
	zr, err := zip.NewReader(bytes.NewReader(m.Zip), int64(len(m.Zip)))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	prefix := Path + "@" + m.Version + "/"
	for _, f := range zr.File {
		if !strings.HasPrefix(f.Name, prefix) {
			t.Fatalf("zip entry %s is outside %s", f.Name, prefix)
		}
		names[strings.TrimPrefix(f.Name, prefix)] = true
	}
	for _, want := range []string{"go.mod", "sdk/contract.go", "sdk/nn/train.go"} {
		if !names[want] {
			t.Errorf("the module has no %s", want)
		}
	}
	for name := range names {
		if strings.HasPrefix(name, "sdk/cmd/") || strings.HasSuffix(name, "_test.go") || !(name == "go.mod" || strings.HasPrefix(name, "sdk/")) {
			t.Errorf("the module carries %s", name)
		}
	}
	if body, _, ok := m.Answer(Path + "/@v/list"); !ok || string(body) != m.Version+"\n" {
		t.Errorf("list: %q %v", body, ok)
	}
	if body, _, ok := m.Answer(Path + "/@v/" + m.Version + ".mod"); !ok || !bytes.Equal(body, m.Mod) {
		t.Errorf("mod: %v", ok)
	}
	for _, other := range []string{"github.com/other/module/@v/list", Path + "/@v/v1.0.0.zip", Path + "x/@latest", "../@v/list"} {
		if _, _, ok := m.Answer(other); ok {
			t.Errorf("answered %s", other)
		}
	}
}
