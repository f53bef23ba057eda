package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/hackarena/hackarena/sdk/client"
)

// sdkModule is the module path plugins import the SDK by; the platform
// serves it at /goproxy/ (it is on no public proxy).
const sdkModule = "github.com/hackarena/hackarena"

// goEnv makes the go command fetch the SDK module from the platform at
// base, and everything else as it would; the platform's module is not in
// the public checksum database.
func goEnv(base string) []string {
	proxy := os.Getenv("GOPROXY")
	if proxy == "" {
		out, _ := exec.Command("go", "env", "GOPROXY").Output()
		proxy = strings.TrimSpace(string(out))
	}
	if proxy == "" {
		proxy = "https://proxy.golang.org,direct"
	}
	nosum := sdkModule
	if v := os.Getenv("GONOSUMDB"); v != "" {
		nosum = v + "," + sdkModule
	}
	return []string{"GOPROXY=" + strings.TrimRight(base, "/") + "/goproxy," + proxy, "GONOSUMDB=" + nosum}
}

var modulePathPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

func initCmd(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return errors.New("usage: hackctl init CHALLENGE [DIR]")
	}
	slug := pos[0]
	dir := slug + "-plugin"
	if len(pos) == 2 {
		dir = pos[1]
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s already has files: give hackctl init an empty or new folder", dir)
	}
	detail, _, err := c.ChallengeDetail(ctx, slug)
	if err != nil {
		return fmt.Errorf("challenge %q: %w", slug, err)
	}
	version, goLine, err := sdkVersion(ctx, c)
	if err != nil {
		return err
	}
	name := strings.ToLower(filepath.Base(mustAbs(dir)))
	if !modulePathPattern.MatchString(name) {
		name = "plugin"
	}
	data := templateData{Slug: slug, Title: detail.Title, Task: detail.Task, Input: detail.Input, Classes: detail.Evaluation.Classes,
		Metric: detail.PrimaryMetric, Module: name, Server: c.BaseURL}
	var mainGo, readme bytes.Buffer
	if err := mainTemplate.Execute(&mainGo, data); err != nil {
		return err
	}
	if err := readmeTemplate.Execute(&readme, data); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"main.go":    mainGo.String(),
		"README.md":  readme.String(),
		"go.mod":     fmt.Sprintf("module %s\n\n%s\n\nrequire %s %s\n", name, goLine, sdkModule, version),
		".gitignore": filepath.Base(mustAbs(dir)) + "\n",
	}
	for file, content := range files {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "wrote %s: main.go (a valid model that answers trivially), go.mod (SDK %s from %s/goproxy), README.md\n", dir, version, c.BaseURL)
	tidy := exec.CommandContext(ctx, "go", "mod", "tidy")
	tidy.Dir = dir
	tidy.Env = append(os.Environ(), goEnv(c.BaseURL)...)
	if msg, err := tidy.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod tidy in %s: %v\n%s\n(install Go from https://go.dev/dl if it is missing; the folder is written, so run hackctl init again into a new folder once fixed)", dir, err, strings.TrimSpace(string(msg)))
	}
	fmt.Fprintf(out, "fetched the SDK and wrote go.sum\nnext:\n  hackctl eval %s %s      # judge it here, free\n  hackctl submit %s %s --wait\n", slug, dir, slug, dir)
	return nil
}

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return abs
}

// sdkVersion asks the platform's module proxy for the SDK's version and
// the go directive its go.mod declares.
func sdkVersion(ctx context.Context, c *client.Client) (version, goLine string, err error) {
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/goproxy/"+sdkModule+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return nil, fmt.Errorf("ask %s for the SDK module: %w (is the platform running?)", c.BaseURL, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("the platform serves no SDK module (HTTP %d: %s)", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return body, nil
	}
	raw, err := get("/@latest")
	if err != nil {
		return "", "", err
	}
	var info struct{ Version string }
	if err := json.Unmarshal(raw, &info); err != nil || info.Version == "" {
		return "", "", fmt.Errorf("the platform's SDK module answer is not a version: %.100s", raw)
	}
	mod, err := get("/@v/" + info.Version + ".mod")
	if err != nil {
		return "", "", err
	}
	goLine = "go 1.26"
	for _, line := range strings.Split(string(mod), "\n") {
		if strings.HasPrefix(line, "go ") {
			goLine = strings.TrimSpace(line)
		}
	}
	return info.Version, goLine, nil
}

type templateData struct {
	Slug, Title, Task, Input, Metric, Module, Server string
	Classes                                          int
}

var mainTemplate = template.Must(template.New("main.go").Parse(`// Command {{.Module}} is a plugin for the Hackarena challenge {{.Slug}}
// ({{.Title}}): a {{.Task}} of {{.Input}} inputs, ranked by {{.Metric}}.
package main

import (
	"context"

	"github.com/hackarena/hackarena/sdk"
)

// Model answers the judge's batches. This one is trivial but valid; put
// your real model here: load weights you trained (embed them with
// //go:embed, or use the Engine: see the SDK's nn and network packages).
type Model struct{}

func (Model) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "{{.Module}}", Version: "0.1"}, nil
}

// Predict gets b.Size examples{{if eq .Input "image"}}: b.Images is a uint8 tensor of shape [n, height, width]{{else if eq .Input "text"}}: b.Texts holds one text each{{else}}: b.Columns holds one named column each (Numbers, with NaN where
// missing, or Strings){{end}}.
// It must answer every one of them.
func (Model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
{{- if eq .Task "classification"}}
	// One class in 0..{{if .Classes}}{{.Classes}}{{else}}classes{{end}}-1 per example; Probabilities (one row per
	// example, summing to 1) are optional.
	classes := make([]int, b.Size)
	return sdk.Predictions{Classes: classes}, nil
{{- else}}
	// One value per example.
	values := make([]float64, b.Size)
	for i := range values {
		values[i] = 100000 // replace with your model's estimate
	}
	return sdk.Predictions{Values: values}, nil
{{- end}}
}

func main() { sdk.Serve(Model{}) }
`))

var readmeTemplate = template.Must(template.New("README.md").Parse(`# {{.Module}}: a plugin for {{.Slug}}

{{.Title}}: a {{.Task}} of {{.Input}} inputs, ranked by {{.Metric}}.

` + "```" + `sh
hackctl download {{.Slug}}              # the training data, into data/{{.Slug}}
hackctl eval {{.Slug}} .                # judge this folder here, as the judge will (free)
hackctl submit {{.Slug}} . --wait       # send it to {{.Server}}
hackctl leaderboard {{.Slug}}
` + "```" + `

The SDK ({{"github.com/hackarena/hackarena/sdk"}}) comes from the platform itself, which serves it as a
Go module at {{.Server}}/goproxy. ` + "`hackctl build`, `eval` and `submit`" + ` point go at it; to run go
yourself with an empty module cache, set
` + "`GOPROXY={{.Server}}/goproxy,https://proxy.golang.org,direct`" + ` and
` + "`GONOSUMDB=github.com/hackarena/hackarena`" + `.
`))
