// Command long-line writes one line of 1 MiB straight to file descriptor
// 1, past go-plugin's own stdio forwarding: go-plugin's stdout scanner
// stops for good at a line of 64 KiB, and then nothing reads the stream.
package main

import (
	"bytes"
	"syscall"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.Serve("long-line", func() {
		line := append(bytes.Repeat([]byte{'y'}, 1<<20), '\n')
		for rest := line; len(rest) > 0; {
			n, err := syscall.Write(1, rest)
			if err != nil {
				attack.Report("write_error", err)
				break
			}
			rest = rest[n:]
		}
		attack.Report("written_mib", 1)
	})
}
