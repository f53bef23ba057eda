// Package frontend is the spectator web page, embedded into the server
// binary so the platform ships as one file.
package frontend

import _ "embed"

// IndexHTML is the page served at "/".
//
//go:embed index.html
var IndexHTML []byte
