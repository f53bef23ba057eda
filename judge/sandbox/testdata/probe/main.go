// Command probe reports what a sandboxed process can see and do, one
// "key=value" line each, for the sandbox tests. What to attack comes from
// probe.json in its socket directory: the sandbox passes no arguments and
// only allow-listed environment variables.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

type control struct {
	// TCP addresses the probe must not reach; Secret a host file it must
	// not read.
	TCP    []string `json:"tcp"`
	Secret string   `json:"secret"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--exit" {
		return
	}
	report := func(k string, v any) { fmt.Printf("%s=%v\n", k, v) }
	sock := os.Getenv("PLUGIN_UNIX_SOCKET_DIR")
	var ctl control
	raw, err := os.ReadFile(sock + "/probe.json")
	report("control_read_ok", err == nil && json.Unmarshal(raw, &ctl) == nil)

	report("uid", os.Getuid())
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			report("cap_eff", strings.TrimSpace(v))
		}
	}
	reached := false
	for _, addr := range ctl.TCP {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			reached = true
		}
	}
	report("tcp_dial_ok", reached)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err = net.DefaultResolver.LookupHost(ctx, "example.com")
	cancel()
	report("dns_ok", err == nil)
	c, err := net.DialTimeout("unix", "/var/run/docker.sock", time.Second)
	if err == nil {
		c.Close()
	}
	report("docker_sock_ok", err == nil)
	_, err = os.ReadFile(ctl.Secret)
	report("secret_read_ok", err == nil)
	report("proc1_root", listing("/proc/1/root"))

	err = os.WriteFile("/written-by-plugin", []byte("x"), 0o644)
	report("root_write_ok", err == nil)
	err = os.WriteFile("/plugin", []byte("x"), 0o644)
	report("binary_write_ok", err == nil)
	// A copy of itself in /tmp, run with --exit: can it execute what it
	// wrote?
	self, _ := os.ReadFile("/plugin")
	execOK := false
	if err := os.WriteFile("/tmp/run-me", self, 0o755); err == nil {
		execOK = exec.Command("/tmp/run-me", "--exit").Run() == nil
	}
	report("tmp_exec_ok", execOK)
	err = syscall.Mount("none", "/mnt", "tmpfs", 0, "")
	report("mount_ok", err == nil)

	// Syscalls the sandboxes deny: each reports whether it worked.
	var params [120]byte
	sys := func(name string, nr uintptr, a ...uintptr) {
		a = append(a, 0, 0, 0)
		r, _, errno := syscall.Syscall(nr, a[0], a[1], a[2])
		report(name+"_ok", errno == 0)
		if errno == 0 && (name == "socket_vsock" || name == "socket_alg" || name == "io_uring") {
			syscall.Close(int(r))
		}
	}
	sys("keyctl", 250, 0, ^uintptr(2)) // KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING
	sys("io_uring", 425, 1, uintptr(unsafe.Pointer(&params)))
	sys("ptrace", syscall.SYS_PTRACE, syscall.PTRACE_TRACEME)
	sys("socket_vsock", syscall.SYS_SOCKET, 40, syscall.SOCK_STREAM)
	sys("socket_alg", syscall.SYS_SOCKET, 38, syscall.SOCK_SEQPACKET)
	sys("unshare_user", syscall.SYS_UNSHARE, syscall.CLONE_NEWUSER)
	sys("unshare_net", syscall.SYS_UNSHARE, syscall.CLONE_NEWNET)

	report("root", listing("/"))
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		env = append(env, k)
	}
	sort.Strings(env)
	report("env", strings.Join(env, ","))
	err = os.WriteFile(sock+"/probe", []byte("x"), 0o600)
	report("socket_dir_write_ok", err == nil)
}

// listing is a directory's sorted entry names, or "denied".
func listing(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "denied"
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}
