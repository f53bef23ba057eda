package main

import (
	"context"
	"testing"
	"time"

	"github.com/hackarena/hackarena/sdk/client"
)

// TestEndToEndAnUploadWhoseAnswerWasCutIsOneSubmission: the server takes
// an upload and its answer is cut on the way back, as a dropped connection
// or a replica restarting does; the client sends it again with the same
// Idempotency-Key and gets the submission the first try made, and the
// team has one submission, not two.
func TestEndToEndAnUploadWhoseAnswerWasCutIsOneSubmission(t *testing.T) {
	srv := startServer(t, t.TempDir())
	srv.waitFor("/readyz")
	proxy := cuttingProxy(t, srv.url, "/submissions", 0)
	c := client.New(proxy.URL, "")
	_, token, err := c.Register(context.Background(), "retrying", "retry-password")
	if err != nil {
		t.Fatal(err)
	}
	c.Token = token
	sub, err := c.Submit(context.Background(), "mnist", buildPlugin(t, "mnist-centroid"))
	if err != nil {
		t.Fatalf("submit through a cut answer: %v", err)
	}
	mine, err := client.New(srv.url, token).MySubmissions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != 1 || mine[0].ID != sub.ID {
		t.Fatalf("the team has %d submissions (%+v); want the one the retry answered with, %s", len(mine), mine, sub.ID)
	}
	if final := waitFinal(t, c, sub.ID, 2*time.Minute); final.Status != "scored" {
		t.Fatalf("the submission ended %s: %s", final.Status, final.Message)
	}
}
