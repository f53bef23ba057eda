package gpu

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Device kinds.
const (
	KindCPU  = "cpu"
	KindCUDA = "cuda"
)

// Device is one processor the engine can place networks on.
type Device struct {
	Kind        string // KindCPU or KindCUDA
	Index       int
	UUID        string
	Name        string
	MemoryBytes int64
}

func (d Device) String() string {
	return fmt.Sprintf("%s:%d (%s, %d MiB)", d.Kind, d.Index, d.Name, d.MemoryBytes>>20)
}

// NvidiaQuery is the nvidia-smi invocation ParseNvidiaSMI reads.
var NvidiaQuery = []string{"--query-gpu=index,uuid,name,memory.total", "--format=csv"}

// ParseNvidiaSMI reads `nvidia-smi --query-gpu=index,uuid,name,memory.total
// --format=csv`: a header, then one row per GPU with the memory in MiB.
// A GPU in MIG mode is listed once, with its whole memory; its MIG
// instances are not separate rows of this query.
func ParseNvidiaSMI(out []byte) ([]Device, error) {
	r := csv.NewReader(bytes.NewReader(out))
	r.TrimLeadingSpace = true
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("parse nvidia-smi output: %w", err)
	}
	if len(rows) == 0 || len(rows[0]) != 4 || rows[0][0] != "index" {
		return nil, fmt.Errorf("parse nvidia-smi output: want the header \"index, uuid, name, memory.total [MiB]\", got %q", firstLine(out))
	}
	var devs []Device
	for i, row := range rows[1:] {
		idx, err := strconv.Atoi(row[0])
		if err != nil {
			return nil, fmt.Errorf("parse nvidia-smi output: row %d: index %q: %w", i+1, row[0], err)
		}
		mem, err := parseMiB(row[3])
		if err != nil {
			return nil, fmt.Errorf("parse nvidia-smi output: row %d (GPU %d): %w", i+1, idx, err)
		}
		devs = append(devs, Device{Kind: KindCUDA, Index: idx, UUID: row[1], Name: row[2], MemoryBytes: mem})
	}
	return devs, nil
}

func parseMiB(s string) (int64, error) {
	v, ok := strings.CutSuffix(strings.TrimSpace(s), " MiB")
	if !ok {
		return 0, fmt.Errorf("memory.total %q is not in MiB (is the GPU lost, or [N/A]?)", s)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("memory.total %q is not a positive number of MiB", s)
	}
	return n << 20, nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line)
}

// CPUDevice is the device every machine has.
func CPUDevice(memoryBytes int64) Device {
	return Device{Kind: KindCPU, Name: fmt.Sprintf("%d CPU cores", runtime.NumCPU()), MemoryBytes: memoryBytes}
}

// Discovery is what Discover found and what the engine will use.
type Discovery struct {
	// GPUs are the NVIDIA GPUs nvidia-smi listed.
	GPUs []Device
	// Usable are the devices the engine runs on: the CPU device in this
	// build, which has no CUDA support (see the README).
	Usable []Device
	// Note explains a GPU that was found but is not used, for the log.
	Note string
}

// Discover lists the machine's devices. mode "cpu" skips nvidia-smi;
// "auto" runs it when it is installed. cpuMemory is the budget of the CPU
// device.
func Discover(ctx context.Context, mode string, cpuMemory int64) (Discovery, error) {
	d := Discovery{Usable: []Device{CPUDevice(cpuMemory)}}
	switch mode {
	case "cpu":
		return d, nil
	case "", "auto":
	default:
		return d, fmt.Errorf("devices %q: want auto or cpu", mode)
	}
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return d, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, NvidiaQuery...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			// nvidia-smi without a driver or GPU exits non-zero: that is
			// a machine without GPUs, not a broken judge.
			d.Note = fmt.Sprintf("nvidia-smi failed (%s): using the CPU", strings.TrimSpace(string(exit.Stderr)))
			return d, nil
		}
		return d, fmt.Errorf("run nvidia-smi: %w", err)
	}
	if d.GPUs, err = ParseNvidiaSMI(out); err != nil {
		return d, err
	}
	if len(d.GPUs) > 0 {
		d.Note = fmt.Sprintf("found %d NVIDIA GPU(s) (%s) but this build of the engine has no CUDA support: networks run on the CPU", len(d.GPUs), d.GPUs[0].Name)
	}
	return d, nil
}
