// Command syscalls tries what a process in a sandbox must not do: mount,
// unshare, ptrace, reboot, load keys; and reports its capabilities.
package main

import (
	"os"
	"strings"
	"syscall"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.Serve("syscalls", func() {
		allowed := []string{}
		try := func(name string, err error) {
			if err == nil {
				allowed = append(allowed, name)
			}
		}
		try("mount", syscall.Mount("none", "/tmp", "tmpfs", 0, ""))
		try("unshare_user", syscall.Unshare(syscall.CLONE_NEWUSER))
		try("unshare_mount", syscall.Unshare(syscall.CLONE_NEWNS))
		try("ptrace_attach_1", syscall.PtraceAttach(1))
		try("reboot", syscall.Reboot(syscall.LINUX_REBOOT_CMD_CAD_OFF))
		try("sethostname", syscall.Sethostname([]byte("pwned")))
		_, _, errno := syscall.Syscall(250, 0, ^uintptr(2), 0) // keyctl
		if errno == 0 {
			allowed = append(allowed, "keyctl")
		}
		try("setuid_0", syscall.Setuid(0))
		attack.Report("allowed", allowed)
		status, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				attack.Report("cap_eff", strings.TrimSpace(v))
			}
		}
	})
}
