package images

import (
	_ "embed"
	"io/fs"
	"path/filepath"
)

// HAProxyConfig is the load balancer's configuration.
//
//go:embed haproxy.cfg
var HAProxyConfig string

// passwd is root and the unprivileged user everything runs as.
const passwd = "root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n"
const group = "root:x:0:\nnogroup:x:65534:\n"

// Platform is the image of `hackarena serve` and `hackarena judge`:
// static hackarena and hackctl, bubblewrap with its libraries (a judge
// that cannot reach a Docker Engine sandboxes with it), the MNIST files,
// and the SDK's source, which serve offers as a Go module.
func Platform(hackarena, hackctl, mnistDir, repoRoot string) *Spec {
	s := &Spec{
		Name: "hackarena",
		Files: map[string]string{
			"/usr/local/bin/hackarena":              hackarena,
			"/usr/local/bin/hackctl":                hackctl,
			"/usr/bin/bwrap":                        "/usr/bin/bwrap",
			"/usr/local/share/hackarena/src/go.mod": filepath.Join(repoRoot, "go.mod"),
		},
		Trees: map[string]string{
			"/usr/local/share/hackarena/src/sdk": filepath.Join(repoRoot, "sdk"),
			"/data/mnist":                        mnistDir,
		},
		Contents: map[string]string{"/etc/passwd": passwd, "/etc/group": group},
		Programs: []string{"/usr/bin/bwrap"},
		Dirs:     map[string]fs.FileMode{"/tmp": 0o777 | fs.ModeSticky, "/var/lib/hackarena": 0o755, "/data/datasets": 0o755},
		Changes: []string{
			"ENV HACKARENA_MNIST_DIR=/data/mnist HACKARENA_DATASETS=/data/datasets HACKARENA_DATA_DIR=/var/lib/hackarena HACKARENA_SDK_SOURCE=/usr/local/share/hackarena/src HACKARENA_ADDR=0.0.0.0:8080",
			"EXPOSE 8080",
			`ENTRYPOINT ["/usr/local/bin/hackarena"]`,
			`CMD ["serve"]`,
		},
	}
	return s
}

// Redis is Debian's redis-server (and redis-cli, for health checks) with
// the libraries they link, keeping an append-only file under /data.
func Redis() *Spec {
	return &Spec{
		Name:     "hackarena-redis",
		Files:    map[string]string{"/usr/bin/redis-server": "/usr/bin/redis-server", "/usr/bin/redis-cli": "/usr/bin/redis-cli"},
		Programs: []string{"/usr/bin/redis-server", "/usr/bin/redis-cli"},
		Contents: map[string]string{"/etc/passwd": passwd, "/etc/group": group},
		Dirs:     map[string]fs.FileMode{"/data": 0o777, "/tmp": 0o777 | fs.ModeSticky},
		Changes: []string{
			"EXPOSE 6379",
			"WORKDIR /data",
			`CMD ["/usr/bin/redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--appendonly", "yes", "--appendfsync", "always"]`,
		},
	}
}

// LoadBalancer is Debian's HAProxy with HAProxyConfig, in front of the
// API replicas.
func LoadBalancer() *Spec {
	config := HAProxyConfig
	return &Spec{
		Name:     "hackarena-haproxy",
		Files:    map[string]string{"/usr/sbin/haproxy": "/usr/sbin/haproxy"},
		Programs: []string{"/usr/sbin/haproxy"},
		Contents: map[string]string{"/etc/haproxy/haproxy.cfg": config, "/etc/passwd": passwd, "/etc/group": group},
		Dirs:     map[string]fs.FileMode{"/tmp": 0o777 | fs.ModeSticky, "/run/haproxy": 0o777},
		Changes: []string{
			"EXPOSE 8080",
			`CMD ["/usr/sbin/haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]`,
		},
	}
}
