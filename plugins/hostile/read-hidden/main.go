// Command read-hidden looks for hidden data: the host's files through
// /proc/1/root, the usual data directories, other users' homes, and
// secrets in /etc.
package main

import (
	"os"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.Serve("read-hidden", func() {
		readable := []string{}
		for _, path := range []string{
			"/etc/shadow", "/etc/hostname", "/root", "/home", "/work", "/var/lib", "/var/lib/hackarena",
			"/srv", "/data", "/proc/1/root/etc/shadow", "/proc/1/root/root", "/proc/1/root/work",
			"/proc/1/environ", "/proc/1/cmdline", "/sys/fs/cgroup",
		} {
			if fi, err := os.Stat(path); err == nil {
				ok := false
				if fi.IsDir() {
					_, err := os.ReadDir(path)
					ok = err == nil
				} else {
					_, err := os.ReadFile(path)
					ok = err == nil
				}
				if ok {
					readable = append(readable, path)
				}
			}
		}
		attack.Report("readable", readable)
	})
}
