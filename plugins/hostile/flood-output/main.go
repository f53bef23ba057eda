// Command flood-output writes 1 GiB to stdout and stderr, then answers.
package main

import (
	"bytes"
	"os"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.Serve("flood-output", func() {
		line := append(bytes.Repeat([]byte("flood "), 170), '\n') // 1 KiB
		chunk := bytes.Repeat(line, 1024)                         // 1 MiB
		for i := 0; i < 512; i++ {
			_, _ = os.Stdout.Write(chunk)
			_, _ = os.Stderr.Write(chunk)
		}
	})
}
