// Command panic-at-start panics before the go-plugin handshake.
package main

func main() {
	panic("hostile plugin: panic at start")
}
