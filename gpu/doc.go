// Package gpu owns the judge's compute: it discovers devices, splits each
// into slots that runs borrow one at a time, and runs the Engine that
// plugins call through go-plugin's broker to load a network and run
// batches on their slot. Untrusted plugins never touch a device.
package gpu
