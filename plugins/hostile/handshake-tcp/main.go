// Command handshake-tcp offers the judge a TCP address instead of a unix
// socket in its socket directory.
package main

import (
	"fmt"
	"net"
	"time"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	addr := "127.0.0.1:6379"
	if err == nil {
		addr = ln.Addr().String()
	}
	fmt.Printf("1|1|tcp|%s|grpc\n", addr)
	time.Sleep(time.Hour)
}
