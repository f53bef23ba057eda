// Command net-escape tries outbound TCP (public DNS and web servers, the
// Docker bridge gateway) and a DNS lookup.
package main

import (
	"context"
	"net"
	"time"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.Serve("net-escape", func() {
		reached := []string{}
		for _, addr := range []string{"1.1.1.1:53", "8.8.8.8:443", "172.17.0.1:22", "172.17.0.1:6379", "10.0.0.1:80"} {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				reached = append(reached, addr)
			}
		}
		attack.Report("tcp_reached", reached)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := net.DefaultResolver.LookupHost(ctx, "example.com")
		attack.Report("dns_ok", err == nil)
	})
}
