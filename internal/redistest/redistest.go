// Package redistest starts a real redis-server for a test package.
package redistest

import (
	"context"
	"testing"

	"github.com/hackarena/hackarena/platform/redisproc"
	"github.com/redis/go-redis/v9"
)

// Start runs a fresh redis-server in a temporary directory for the test and
// returns a client to it. A missing redis-server fails the test loudly (it
// is installed by `make test`); it never skips.
func Start(t testing.TB) (*redis.Client, string) {
	t.Helper()
	srv, err := redisproc.Start(context.Background(), redisproc.Options{Dir: t.TempDir(), AppendFsync: "everysec"})
	if err != nil {
		t.Fatalf("start redis (run `make test`, which installs redis-server): %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	client := redis.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	return client, srv.URL()
}
