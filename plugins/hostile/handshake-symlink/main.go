// Command handshake-symlink offers a "socket" in its socket directory that
// is a symlink to the Docker engine's socket.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	link := os.Getenv("PLUGIN_UNIX_SOCKET_DIR") + "/plugin-evil"
	_ = os.Symlink("/var/run/docker.sock", link)
	fmt.Printf("1|1|unix|%s|grpc\n", link)
	time.Sleep(time.Hour)
}
