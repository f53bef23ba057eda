package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/platform/api"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/retention"
)

// config is everything the server reads from flags and HACKARENA_*
// variables (flags win). Defaults run a complete platform on one machine.
type config struct {
	Addr              string
	RedisURL          string
	DataDir           string
	MNISTDir          string
	Datasets          string
	ChallengesDir     string
	SDKSource         string
	Sandbox           string
	DockerRuntime     string
	JWTSecret         string
	OrganizerPassword string
	Workers           int
	WorkerName        string
	MaxUploadMB       int64
	RunTimeout        time.Duration
	JudgeLease        time.Duration
	TokenTTL          time.Duration
	EngineDevices     string
	EngineSlots       int
	EngineMemory      int64
	EngineGrace       time.Duration
	MetricsAddr       string
	PasswordCost      int
	TrustedProxies    []string
	Throttles         api.Throttles
	KeepLast          int
	CollectEvery      time.Duration
	MinFreeDisk       int64
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func parseConfig(cmd string, args []string) (config, error) {
	fs := flag.NewFlagSet("hackarena "+cmd, flag.ContinueOnError)
	var c config
	fs.StringVar(&c.Addr, "addr", envOr("HACKARENA_ADDR", "127.0.0.1:8080"), "HTTP listen address (HACKARENA_ADDR)")
	fs.StringVar(&c.RedisURL, "redis-url", envOr("REDIS_URL", ""), "Redis URL; empty starts a managed redis-server under the data dir (REDIS_URL)")
	fs.StringVar(&c.DataDir, "data-dir", envOr("HACKARENA_DATA_DIR", "./var"), "where blobs, the managed Redis and the JWT secret live (HACKARENA_DATA_DIR)")
	fs.StringVar(&c.MNISTDir, "mnist-dir", envOr("HACKARENA_MNIST_DIR", ""), "directory with the MNIST IDX files; empty uses the pinned Go module (HACKARENA_MNIST_DIR)")
	fs.StringVar(&c.Datasets, "datasets", challenges.FindDatasets(), "data mirror with imdb/ and houses/; default ../shared/datasets beside the checkout when present (HACKARENA_DATASETS)")
	fs.StringVar(&c.SDKSource, "sdk-source", envOr("HACKARENA_SDK_SOURCE", ""), "checkout whose sdk/ is served as a Go module at /goproxy/ for hackctl init; empty finds the one above the working directory or the executable (HACKARENA_SDK_SOURCE)")
	fs.StringVar(&c.ChallengesDir, "challenges", envOr("HACKARENA_CHALLENGES", ""), "directory of challenge folders (each with challenge.json); empty uses the built-in mnist, imdb and houses (HACKARENA_CHALLENGES)")
	fs.StringVar(&c.Sandbox, "sandbox", envOr("HACKARENA_SANDBOX", "auto"), "plugin sandbox: auto, bwrap or docker (HACKARENA_SANDBOX)")
	fs.StringVar(&c.DockerRuntime, "docker-runtime", envOr("HACKARENA_DOCKER_RUNTIME", ""), "OCI runtime of sandbox containers, e.g. runsc for gVisor; empty uses the engine's default (HACKARENA_DOCKER_RUNTIME)")
	fs.StringVar(&c.OrganizerPassword, "organizer-password", envOr("HACKARENA_ORGANIZER_PASSWORD", ""), "creates the organizer account with this password if missing (HACKARENA_ORGANIZER_PASSWORD)")
	fs.StringVar(&c.WorkerName, "worker-name", envOr("HACKARENA_WORKER_NAME", ""), "judge consumer name; default host-role-index (HACKARENA_WORKER_NAME)")
	workers, err := strconv.Atoi(envOr("HACKARENA_WORKERS", "1"))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_WORKERS must be a number: %w", err)
	}
	fs.IntVar(&c.Workers, "workers", workers, "judge workers in this process; 0 serves the API only (HACKARENA_WORKERS)")
	maxMB, err := strconv.ParseInt(envOr("HACKARENA_MAX_UPLOAD_MB", "64"), 10, 64)
	if err != nil {
		return c, fmt.Errorf("HACKARENA_MAX_UPLOAD_MB must be a number: %w", err)
	}
	fs.Int64Var(&c.MaxUploadMB, "max-upload-mb", maxMB, "largest plugin upload in MiB (HACKARENA_MAX_UPLOAD_MB)")
	runTimeout, err := time.ParseDuration(envOr("HACKARENA_RUN_TIMEOUT", "0s"))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_RUN_TIMEOUT must be a duration like 90s: %w", err)
	}
	fs.DurationVar(&c.RunTimeout, "run-timeout", runTimeout, "wall-time limit of one judged run; 0 uses each challenge's limit (HACKARENA_RUN_TIMEOUT)")
	lease, err := time.ParseDuration(envOr("HACKARENA_JUDGE_LEASE", "1m"))
	if err != nil || lease < time.Second {
		return c, fmt.Errorf("HACKARENA_JUDGE_LEASE must be a duration of at least 1s like 1m (got %q)", envOr("HACKARENA_JUDGE_LEASE", "1m"))
	}
	fs.DurationVar(&c.JudgeLease, "judge-lease", lease, "how long a judge that stopped renewing its job's lease keeps it before another judge takes it over (HACKARENA_JUDGE_LEASE)")
	ttl, err := time.ParseDuration(envOr("HACKARENA_TOKEN_TTL", "168h"))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_TOKEN_TTL must be a duration like 24h: %w", err)
	}
	fs.DurationVar(&c.TokenTTL, "token-ttl", ttl, "lifetime of issued tokens (HACKARENA_TOKEN_TTL)")
	fs.StringVar(&c.EngineDevices, "engine-devices", envOr("HACKARENA_ENGINE_DEVICES", "auto"), "devices of the tensor engine: auto (NVIDIA GPUs listed by nvidia-smi, reported; networks run on the CPU in this build) or cpu (HACKARENA_ENGINE_DEVICES)")
	slots, err := strconv.Atoi(envOr("HACKARENA_ENGINE_SLOTS", "2"))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_ENGINE_SLOTS must be a number: %w", err)
	}
	fs.IntVar(&c.EngineSlots, "engine-slots", slots, "slots per engine device: runs judged at once, each with an equal share of the device's memory (HACKARENA_ENGINE_SLOTS)")
	memory, err := units.RAMInBytes(envOr("HACKARENA_ENGINE_MEMORY", "4GiB"))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_ENGINE_MEMORY must be a size like 4GiB: %w", err)
	}
	fs.Int64Var(&c.EngineMemory, "engine-memory", memory, "memory of the CPU engine device in bytes, split between its slots (HACKARENA_ENGINE_MEMORY, e.g. 4GiB)")
	grace, err := time.ParseDuration(envOr("HACKARENA_ENGINE_GRACE", "2s"))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_ENGINE_GRACE must be a duration like 2s: %w", err)
	}
	fs.DurationVar(&c.EngineGrace, "engine-grace", grace, "how long an engine process may take to stop a run's work after the run ends before it is killed and restarted (HACKARENA_ENGINE_GRACE)")
	keepLast, err := strconv.Atoi(envOr("HACKARENA_KEEP_LAST", strconv.Itoa(retention.DefaultKeepLast)))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_KEEP_LAST must be a number: %w", err)
	}
	fs.IntVar(&c.KeepLast, "keep-last", keepLast, "plugin binaries kept per team and challenge besides queued, finals and board entries: its latest N; -1 keeps every binary (HACKARENA_KEEP_LAST)")
	collectEvery, err := time.ParseDuration(envOr("HACKARENA_COLLECT_EVERY", "10m"))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_COLLECT_EVERY must be a duration like 10m: %w", err)
	}
	fs.DurationVar(&c.CollectEvery, "collect-every", collectEvery, "how often the binaries the retention does not keep are removed; 0 only on POST /api/v1/storage/collect (HACKARENA_COLLECT_EVERY)")
	minFree, err := units.RAMInBytes(envOr("HACKARENA_MIN_FREE_DISK", "1GiB"))
	if err != nil {
		return c, fmt.Errorf("HACKARENA_MIN_FREE_DISK must be a size like 1GiB: %w", err)
	}
	fs.Int64Var(&c.MinFreeDisk, "min-free-disk", minFree, "free bytes of the data dir's filesystem under which /readyz reports low disk space; 0 checks nothing (HACKARENA_MIN_FREE_DISK, e.g. 1GiB)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", envOr("HACKARENA_METRICS_ADDR", ""), "serve /metrics on this address of its own instead of the API's, so it need not be published to participants; a judge without it serves them on "+defaultJudgeMetricsAddr+" when that is free (HACKARENA_METRICS_ADDR)")
	proxies := fs.String("trusted-proxies", envOr("HACKARENA_TRUSTED_PROXIES", ""), "comma-separated addresses of load balancers whose X-Forwarded-For names the client, for the per-address throttles (HACKARENA_TRUSTED_PROXIES)")
	for _, v := range []struct {
		flag, env string
		def       int
		into      *int
		usage     string
	}{
		{"login-limit", "HACKARENA_LOGIN_LIMIT", api.DefaultLoginLimit, &c.Throttles.LoginPerTeam.Limit, "failed logins per team name before it is locked for the lockout"},
		{"login-address-limit", "HACKARENA_LOGIN_ADDRESS_LIMIT", api.DefaultLoginAddressLimit, &c.Throttles.LoginPerAddress.Limit, "failed logins per client address before it is locked for the lockout"},
		{"register-limit", "HACKARENA_REGISTER_LIMIT", api.DefaultRegisterLimit, &c.Throttles.RegisterPerAddress.Limit, "teams registered per client address per register window"},
		{"password-cost", "HACKARENA_PASSWORD_COST", 10, &c.PasswordCost, "bcrypt cost of new password hashes, 4 to 31; each step doubles the work of a login"},
	} {
		n, err := strconv.Atoi(envOr(v.env, strconv.Itoa(v.def)))
		if err != nil || n < 1 {
			return c, fmt.Errorf("%s must be a positive number, got %q", v.env, os.Getenv(v.env))
		}
		fs.IntVar(v.into, v.flag, n, v.usage+" ("+v.env+")")
	}
	for _, v := range []struct {
		flag, env string
		def       time.Duration
		into      *time.Duration
		usage     string
	}{
		{"login-lockout", "HACKARENA_LOGIN_LOCKOUT", api.DefaultLoginLockout, &c.Throttles.LoginPerTeam.Window, "window in which failed logins count, and how long a lock lasts after the last"},
		{"register-window", "HACKARENA_REGISTER_WINDOW", api.DefaultRegisterWindow, &c.Throttles.RegisterPerAddress.Window, "window of the registration limit"},
	} {
		d, err := time.ParseDuration(envOr(v.env, v.def.String()))
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%s must be a positive duration like 15m, got %q", v.env, os.Getenv(v.env))
		}
		fs.DurationVar(v.into, v.flag, d, v.usage+" ("+v.env+")")
	}
	c.JWTSecret = os.Getenv("HACKARENA_JWT_SECRET")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.Workers < 0 {
		return c, fmt.Errorf("workers must be 0 or more, got %d", c.Workers)
	}
	if c.EngineSlots < 1 {
		return c, fmt.Errorf("engine slots must be 1 or more, got %d", c.EngineSlots)
	}
	if c.EngineMemory <= 0 {
		return c, fmt.Errorf("engine memory must be positive, got %d bytes", c.EngineMemory)
	}
	if c.EngineGrace <= 0 {
		return c, fmt.Errorf("engine grace must be positive, got %s", c.EngineGrace)
	}
	c.Throttles.LoginPerAddress.Window = c.Throttles.LoginPerTeam.Window
	if err := auth.SetHashCost(c.PasswordCost); err != nil {
		return c, fmt.Errorf("HACKARENA_PASSWORD_COST: %w", err)
	}
	for _, p := range strings.Split(*proxies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.TrustedProxies = append(c.TrustedProxies, p)
		}
	}
	if c.MaxUploadMB <= 0 {
		return c, fmt.Errorf("max upload must be positive, got %d MiB", c.MaxUploadMB)
	}
	return c, nil
}
