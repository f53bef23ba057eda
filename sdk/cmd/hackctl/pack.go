package main

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hackarena/hackarena/sdk/onnx"
	"github.com/hackarena/hackarena/sdk/python"
	"github.com/hackarena/hackarena/sdk/runner"
)

// helperCmd is `hackctl helper [-o FILE]`: it writes the Python export
// helper, which needs only numpy and torch.
func helperCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("helper", flag.ContinueOnError)
	output := fs.String("o", python.HelperName, "where to write it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fileExists(*output) {
		return fmt.Errorf("%s already exists: remove it or give -o", *output)
	}
	if err := os.WriteFile(*output, python.Helper, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s: in Python, import hackarena_export and call hackarena_export.export(model, \"model.onnx\", example, preprocess); then hackctl pack model.onnx\n", *output)
	return nil
}

// packCmd is `hackctl pack MODEL [--preprocess FILE] [--weights FILE] [-o FILE]`.
func packCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("pack", flag.ContinueOnError)
	prep := fs.String("preprocess", "", "the preprocessing file (default: preprocess.json beside the model, if there is one)")
	weights := fs.String("weights", "", "the .npz weights of a network.json model (default: weights.npz beside it)")
	output := fs.String("o", "", "the plugin file to write (default: the model's name without its extension)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: hackctl pack MODEL.onnx|network.json [--preprocess FILE] [--weights FILE] [-o FILE]")
	}
	dst := *output
	if dst == "" {
		dst = strings.TrimSuffix(pos[0], filepath.Ext(pos[0]))
		if dst == pos[0] {
			dst += ".plugin"
		}
	}
	size, err := packModel(pos[0], *prep, *weights, dst)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "packed %s into %s (%.1f MiB): submit it with hackctl submit CHALLENGE %s\n", pos[0], dst, float64(size)/(1<<20), dst)
	return nil
}

// isModelFile reports whether path is a model hackctl packs on the fly
// (submit, eval): an ONNX file or a network JSON.
func isModelFile(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".onnx", ".json":
		return true
	}
	return false
}

// packModel writes a plugin for the model at path to dst: this executable
// (the runner is part of hackctl) with the model and its preprocessing
// appended. It checks the model with the Engine's own importer first.
func packModel(path, prepPath, weightsPath, dst string) (int64, error) {
	model, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("model: %w", err)
	}
	p := &runner.Payload{Sections: map[string][]byte{}}
	if onnx.Sniff(model) == nil && !strings.EqualFold(filepath.Ext(path), ".json") {
		p.Sections[runner.SectionONNX] = model
	} else {
		p.Sections[runner.SectionNetwork] = model
		if weightsPath == "" {
			weightsPath = filepath.Join(filepath.Dir(path), "weights.npz")
		}
		if p.Sections[runner.SectionWeights], err = os.ReadFile(weightsPath); err != nil {
			return 0, fmt.Errorf("weights of %s: %w (give them with --weights)", path, err)
		}
	}
	if prepPath == "" {
		if beside := filepath.Join(filepath.Dir(path), "preprocess.json"); fileExists(beside) {
			prepPath = beside
		}
	}
	if prepPath != "" {
		if p.Sections[runner.SectionPreprocess], err = os.ReadFile(prepPath); err != nil {
			return 0, fmt.Errorf("preprocessing: %w", err)
		}
	}
	if _, _, err := p.Check(); err != nil {
		return 0, fmt.Errorf("%s cannot run on the Engine: %w", path, err)
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find hackctl's own executable, which the plugin is made of: %w", err)
	}
	if err := checkStatic(self); err != nil {
		return 0, err
	}
	src, err := os.Open(self)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	tmp := dst + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", dst, err)
	}
	defer os.Remove(tmp)
	// A packed hackctl never gets here (it serves its payload from main),
	// so the executable is copied whole.
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", dst, err)
	}
	if err := p.Encode(f); err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", dst, err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", dst, err)
	}
	return fi.Size(), os.Rename(tmp, dst)
}

// checkStatic refuses a dynamically linked hackctl: the judge's sandbox
// has no shared libraries, so the plugin made of it would not start.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("hackctl's own executable %s is not a linux ELF, which a plugin must be: use the linux/amd64 hackctl to pack (%v)", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("this hackctl is built for %s; the judge runs linux/amd64 plugins: pack with the linux/amd64 hackctl", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("this hackctl is dynamically linked, and the judge's sandbox has no shared libraries: rebuild it with CGO_ENABLED=0 (make build does)")
		}
	}
	return nil
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}
