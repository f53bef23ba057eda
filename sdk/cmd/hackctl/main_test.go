package main

import (
	"flag"
	"reflect"
	"testing"
)

func TestParseInterleavedAcceptsFlagsAfterArguments(t *testing.T) {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	wait := fs.Bool("wait", false, "")
	pos, err := parseInterleaved(fs, []string{"mnist", "--wait", "./model"})
	if err != nil {
		t.Fatal(err)
	}
	if !*wait || !reflect.DeepEqual(pos, []string{"mnist", "./model"}) {
		t.Fatalf("wait=%v positional=%v", *wait, pos)
	}
}
