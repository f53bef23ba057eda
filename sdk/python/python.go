// Package python ships the SDK's Python export helper (hackarena_export.py)
// inside hackctl, which writes it out for participants who train in
// PyTorch: `hackctl helper`.
package python

import _ "embed"

// Helper is hackarena_export.py.
//
//go:embed hackarena_export.py
var Helper []byte

// HelperName is the file name the helper is written as (it is imported as
// hackarena_export).
const HelperName = "hackarena_export.py"
