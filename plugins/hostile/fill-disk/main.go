// Command fill-disk writes a 2 GiB file, and fills /tmp and its socket
// directory.
package main

import (
	"os"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.Serve("fill-disk", func() {
		// SIGXFSZ would kill the plugin at the file-size limit; ignoring it
		// turns the limit into EFBIG, which it reports.
		ignoreSIGXFSZ()
		for _, target := range []struct{ key, path string }{
			{"tmp", "/tmp/big"},
			{"socket_dir", os.Getenv("PLUGIN_UNIX_SOCKET_DIR") + "/big"},
			{"root", "/big"},
		} {
			n, why := attack.Fill(target.path, 2<<30, false)
			attack.Report(target.key+"_written_mib", n>>20)
			attack.Report(target.key+"_stopped_by", why)
		}
	})
}
