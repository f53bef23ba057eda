// Command env-dump reports every environment variable it can see.
package main

import (
	"os"
	"sort"
	"strings"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.Serve("env-dump", func() {
		var keys []string
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			keys = append(keys, k)
		}
		sort.Strings(keys)
		attack.Report("env", strings.Join(keys, ","))
	})
}
