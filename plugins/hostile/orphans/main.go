// Command orphans leaves children behind: detached, in their own session,
// sleeping long after the run.
package main

import (
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

// Marker is in every orphan's command line, so a test can look for them.
const Marker = "hackarena-orphan-marker"

func main() {
	if len(os.Args) > 1 && os.Args[1] == Marker {
		time.Sleep(time.Hour)
		return
	}
	attack.Serve("orphans", func() {
		started := 0
		for range 5 {
			cmd := exec.Command("/proc/self/exe", Marker)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if cmd.Start() == nil {
				_ = cmd.Process.Release()
				started++
			}
		}
		attack.Report("orphans_started", started)
	})
}
