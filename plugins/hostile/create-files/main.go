// Command create-files creates empty files in its socket directory and in
// /tmp until it is stopped, and holds them while it answers slowly: inodes
// are kernel memory that no byte limit counts.
package main

import (
	"os"
	"time"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.ServeHolding("create-files", func() {
		for _, target := range []struct{ key, dir string }{
			{"socket_dir", os.Getenv("PLUGIN_UNIX_SOCKET_DIR")},
			{"tmp", "/tmp"},
		} {
			n, why := attack.CreateFiles(target.dir, 2_000_000)
			attack.Report(target.key+"_files", n)
			attack.Report(target.key+"_stopped_by", why)
		}
	}, 400*time.Millisecond)
}
