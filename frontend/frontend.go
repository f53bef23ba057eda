// Package frontend is the spectator web page, embedded into the server
// binary so the platform ships as one file: plain HTML, CSS and JavaScript
// modules, no build step, nothing fetched from elsewhere.
package frontend

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files are the page's files: index.html, style.css and the modules.
var Files, _ = fs.Sub(static, "static")

// IndexHTML is the page served at "/".
var IndexHTML, _ = fs.ReadFile(Files, "index.html")
