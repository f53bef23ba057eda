// Command local-services tries the host's local services: the Docker
// socket, Redis on its default port, and abstract unix sockets (which are
// per network namespace).
package main

import (
	"net"
	"time"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
)

func main() {
	attack.Serve("local-services", func() {
		reached := []string{}
		for _, target := range [][2]string{
			{"unix", "/var/run/docker.sock"},
			{"unix", "/run/containerd/containerd.sock"},
			{"tcp", "127.0.0.1:6379"},
			{"tcp", "127.0.0.1:8080"},
			// The judge tests listen on this abstract socket on the host.
			{"unix", "@hackarena-hostile-abstract"},
		} {
			if c, err := net.DialTimeout(target[0], target[1], time.Second); err == nil {
				c.Close()
				reached = append(reached, target[1])
			}
		}
		attack.Report("reached", reached)
	})
}
