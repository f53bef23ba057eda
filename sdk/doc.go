// Package sdk is the plugin contract between the Hackarena judge and a
// participant's model: the Model interface, the go-plugin handshake, dense
// batch types and Serve, the one call a plugin's main makes.
package sdk
