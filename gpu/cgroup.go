package gpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procCgroup is the cgroup an engine process runs in: a memory limit the
// kernel enforces (the slot's budget plus a fixed overhead) and a CPU
// quota (the slot's share of the cores). It is made under the judge's own
// cgroup, so whatever limits the judge has still apply to its engines.
type procCgroup struct {
	v2     bool
	memDir string // v1 memory controller, or the v2 group
	cpuDir string // v1 cpu controller; "" on v2 (same group) or without one
}

// newProcCgroup creates a cgroup named name with the given limits. It
// fails where the machine offers none the judge may write (not root, a
// read-only /sys/fs/cgroup); the caller falls back to rlimits.
func newProcCgroup(name string, memory int64, cpus float64) (*procCgroup, error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroup: %w", err)
	}
	v1 := map[string]string{}
	var unified string
	sc := bufio.NewScanner(bytes.NewReader(own))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			unified = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			v1[c] = parts[2]
		}
	}
	cg := &procCgroup{}
	if mem, ok := v1["memory"]; ok {
		cg.memDir = filepath.Join("/sys/fs/cgroup/memory", mem, name)
		if cpu, ok := v1["cpu"]; ok {
			cg.cpuDir = filepath.Join("/sys/fs/cgroup/cpu", cpu, name)
		}
	} else if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil && unified != "" {
		cg.v2 = true
		cg.memDir = filepath.Join("/sys/fs/cgroup", unified, name)
	} else {
		return nil, errors.New("no memory cgroup controller")
	}
	if err := cg.create(memory, cpus); err != nil {
		cg.remove()
		return nil, err
	}
	return cg, nil
}

func (cg *procCgroup) create(memory int64, cpus float64) error {
	if err := os.Mkdir(cg.memDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create cgroup: %w", err)
	}
	quota := int64(cpus * 100_000)
	if cg.v2 {
		if err := write(cg.memDir, "memory.max", strconv.FormatInt(memory, 10)); err != nil {
			return err
		}
		_ = write(cg.memDir, "memory.swap.max", "0")
		if quota > 0 {
			_ = write(cg.memDir, "cpu.max", fmt.Sprintf("%d 100000", quota))
		}
		return nil
	}
	if err := write(cg.memDir, "memory.limit_in_bytes", strconv.FormatInt(memory, 10)); err != nil {
		return err
	}
	// Without swap accounting this file is absent; with it, swap must not
	// stretch the limit.
	_ = write(cg.memDir, "memory.memsw.limit_in_bytes", strconv.FormatInt(memory, 10))
	if cg.cpuDir != "" && quota > 0 {
		if err := os.Mkdir(cg.cpuDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			cg.cpuDir = ""
			return nil
		}
		_ = write(cg.cpuDir, "cpu.cfs_period_us", "100000")
		_ = write(cg.cpuDir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10))
	}
	return nil
}

func write(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgroup %s: %w", file, err)
	}
	return nil
}

// add moves a process into the cgroup.
func (cg *procCgroup) add(pid int) error {
	p := strconv.Itoa(pid)
	if err := write(cg.memDir, "cgroup.procs", p); err != nil {
		return err
	}
	if cg.cpuDir != "" {
		_ = write(cg.cpuDir, "cgroup.procs", p)
	}
	return nil
}

// oomKills is how many processes the kernel killed in this cgroup for
// memory.
func (cg *procCgroup) oomKills() int {
	file := "memory.oom_control"
	if cg.v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(cg.memDir, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// remove deletes the cgroup; it must be empty (its process exited).
func (cg *procCgroup) remove() {
	for _, d := range []string{cg.memDir, cg.cpuDir} {
		if d != "" {
			_ = os.Remove(d)
		}
	}
}
