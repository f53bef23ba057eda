// Command probe reports what a sandboxed process can see and do, one
// "key=value" line each, for the sandbox tests.
package main

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	report := func(k string, v any) { fmt.Printf("%s=%v\n", k, v) }
	report("uid", os.Getuid())
	_, err := net.DialTimeout("tcp", os.Args[1], time.Second)
	report("tcp_dial_ok", err == nil)
	err = os.WriteFile("/written-by-plugin", []byte("x"), 0o644)
	report("root_write_ok", err == nil)
	err = os.WriteFile("/plugin", []byte("x"), 0o644)
	report("binary_write_ok", err == nil)
	entries, _ := os.ReadDir("/")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	report("root", strings.Join(names, ","))
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		env = append(env, k)
	}
	sort.Strings(env)
	report("env", strings.Join(env, ","))
	sock := os.Getenv("PLUGIN_UNIX_SOCKET_DIR")
	err = os.WriteFile(sock+"/probe", []byte("x"), 0o600)
	report("socket_dir_write_ok", err == nil)
}
