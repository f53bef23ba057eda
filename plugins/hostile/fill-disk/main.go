// Command fill-disk writes a 2 GiB file, and fills /tmp and its socket
// directory.
package main

import (
	"bytes"
	"errors"
	"os"
	"syscall"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

// fill writes up to limit bytes to path and says how far it got and why
// it stopped.
func fill(path string, limit int64) (int64, string) {
	f, err := os.Create(path)
	if err != nil {
		return 0, errName(err)
	}
	defer f.Close()
	defer os.Remove(path)
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	var n int64
	for n < limit {
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			return n, errName(err)
		}
	}
	return n, "none"
}

func errName(err error) string {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && errno == syscall.EFBIG:
		return "EFBIG"
	case errors.As(err, &errno) && errno == syscall.ENOSPC:
		return "ENOSPC"
	case errors.As(err, &errno) && errno == syscall.EROFS:
		return "EROFS"
	case errors.As(err, &errno) && errno == syscall.ENOENT:
		return "ENOENT"
	case errors.As(err, &errno) && errno == syscall.EACCES:
		return "EACCES"
	}
	return err.Error()
}

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
			n, why := fill(target.path, 2<<30)
			attack.Report(target.key+"_written_mib", n>>20)
			attack.Report(target.key+"_stopped_by", why)
		}
	})
}
