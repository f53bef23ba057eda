// Package gpu will own device discovery, the slot allocator and the shared
// tensor engine that plugins call through go-plugin's broker (ARCHITECTURE.md,
// issue "shared tensor engine"). The walking skeleton judges on CPU inside
// the plugin process and needs none of it yet.
package gpu
