// Command write-root tries to change the sandbox: write its root, its own
// binary and /etc, then run a program it wrote.
package main

import (
	"os"
	"os/exec"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--exit" {
		return
	}
	attack.Serve("write-root", func() {
		written := []string{}
		for _, path := range []string{"/x", "/plugin", "/etc/passwd", "/proc/sys/kernel/hostname"} {
			if err := os.WriteFile(path, []byte("x"), 0o755); err == nil {
				written = append(written, path)
			}
		}
		attack.Report("written", written)
		self, _ := os.ReadFile("/proc/self/exe")
		executed := []string{}
		for _, dir := range []string{"/tmp", os.Getenv("PLUGIN_UNIX_SOCKET_DIR"), "/dev/shm"} {
			path := dir + "/run-me"
			if os.WriteFile(path, self, 0o755) == nil && exec.Command(path, "--exit").Run() == nil {
				executed = append(executed, dir)
			}
		}
		attack.Report("executed_from", executed)
	})
}
