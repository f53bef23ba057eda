// Command fill-tmp fills /tmp (Docker's tmpfs; bubblewrap has none) with
// bytes and holds them while it answers slowly.
package main

import (
	"os/signal"
	"syscall"
	"time"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.ServeHolding("fill-tmp", func() {
		signal.Ignore(syscall.SIGXFSZ)
		n, why := attack.Fill("/tmp/big", 2<<30, true)
		attack.Report("tmp_written_kib", n>>10)
		attack.Report("tmp_stopped_by", why)
	}, 400*time.Millisecond)
}
