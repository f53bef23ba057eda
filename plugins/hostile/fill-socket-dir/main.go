// Command fill-socket-dir fills its socket directory with bytes and holds
// them while it answers slowly, so that another run judged at the same
// time meets a full directory if runs share one.
package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.ServeHolding("fill-socket-dir", func() {
		signal.Ignore(syscall.SIGXFSZ)
		n, why := attack.Fill(os.Getenv("PLUGIN_UNIX_SOCKET_DIR")+"/big", 2<<30, true)
		attack.Report("socket_dir_written_kib", n>>10)
		attack.Report("socket_dir_stopped_by", why)
	}, 400*time.Millisecond)
}
