// Command hackarena runs the Hackarena platform: `hackarena serve` (HTTP API
// plus in-process judge workers) or `hackarena judge` (workers only).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hackarena/hackarena/challenges"
	"github.com/hackarena/hackarena/gpu"
	"github.com/hackarena/hackarena/judge"
	"github.com/hackarena/hackarena/judge/sandbox"
	"github.com/hackarena/hackarena/platform/api"
	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/blob"
	"github.com/hackarena/hackarena/platform/events"
	"github.com/hackarena/hackarena/platform/receipts"
	"github.com/hackarena/hackarena/platform/redisproc"
	"github.com/hackarena/hackarena/platform/retention"
	"github.com/hackarena/hackarena/platform/sdkmodule"
	"github.com/hackarena/hackarena/platform/store"
)

const usage = `usage: hackarena serve [flags]   run the HTTP API and judge workers
       hackarena judge [flags]   run judge workers against the same Redis
       hackarena engine          (started by the judge: one engine slot's process)
Run "hackarena serve -h" for the flags; each has a HACKARENA_* variable.`

func main() {
	if len(os.Args) == 2 && os.Args[1] == "engine" {
		os.Exit(gpu.ServeEngineProcess())
	}
	if len(os.Args) < 2 || (os.Args[1] != "serve" && os.Args[1] != "judge") {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	cmd := os.Args[1]
	cfg, err := parseConfig(cmd, os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "hackarena:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cmd, cfg, log); err != nil {
		log.Error("hackarena stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cmd string, cfg config, log *slog.Logger) error {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir %s: %w", dataDir, err)
	}

	// Only a serve that manages its own redis-server owns its data dir:
	// API replicas on one Redis share theirs (blobs and predictions are
	// written by rename, content-addressed or by submission).
	if cmd == "serve" && cfg.RedisURL == "" {
		unlock, err := lockDataDir(dataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}

	// Plugin sockets live in a short directory of this process's own: a
	// socket path under a deep data dir would pass the kernel's 107-byte
	// limit. Its name comes from the data dir, command and worker name, so
	// a restart after a crash finds (and clears) what the crashed process
	// left, tmpfs included. It is removed after the workers have stopped.
	sockets, err := socketRoot(dataDir, cmd, cfg.WorkerName)
	if err != nil {
		return err
	}
	defer os.RemoveAll(sockets)
	// Sandboxed plugins run as nobody and must reach their own run's
	// directory by name (but cannot list the others). As root the
	// directory gets its own small noexec tmpfs: nothing a plugin writes
	// there can run, and filling it cannot fill the host's disk.
	if err := os.Chmod(sockets, 0o711); err != nil {
		return fmt.Errorf("create plugin socket dir: %w", err)
	}
	if cfg.Workers > 0 {
		unmount, mounted, err := sandbox.MountSocketRoot(sockets)
		if err != nil {
			return err
		}
		defer func() {
			if err := unmount(); err != nil {
				log.Warn("unmount plugin socket tmpfs", "dir", sockets, "err", err)
			}
		}()
		if !mounted {
			log.Warn("not root: plugin socket directories are on the host's /tmp, where a plugin could run what it writes (see docs/security.md)")
		}
	}

	// Shutdown order, by the defers below (last in, first out): stop the
	// API and workers and wait for them (a stopping worker still writes to
	// Redis to give its job back), then close the client, then stop the
	// managed redis-server.
	errs := make(chan error, cfg.Workers+4)
	redisCtx, stopRedis := context.WithCancel(context.Background())
	var redisWG sync.WaitGroup
	defer func() { stopRedis(); redisWG.Wait() }()

	redisURL := cfg.RedisURL
	switch {
	case redisURL == "" && cmd == "judge":
		// A judge beside `hackarena serve` joins the Redis that serve
		// manages instead of starting (and fighting over) a second one.
		if redisURL, err = redisproc.RunningURL(filepath.Join(dataDir, "redis")); err != nil {
			return err
		}
	case redisURL == "":
		managed, err := redisproc.Start(ctx, redisproc.Options{Dir: filepath.Join(dataDir, "redis"), Log: log})
		if err != nil {
			return fmt.Errorf("start managed redis (or set REDIS_URL): %w", err)
		}
		redisURL = managed.URL()
		redisWG.Add(1)
		go func() {
			defer redisWG.Done()
			if err := managed.Supervise(redisCtx); err != nil {
				errs <- err
			}
		}()
	}
	rdb, err := store.Connect(ctx, redisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := store.CountRedisErrors(rdb, prometheus.DefaultRegisterer); err != nil {
		return err
	}
	st := store.New(rdb)

	var wg sync.WaitGroup
	// The engine processes stop after the workers that use them.
	var engines *gpu.Pool
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
		if engines != nil {
			engines.Close()
		}
	}()

	env := challenges.Env{Datasets: cfg.Datasets, Cache: filepath.Join(dataDir, "datasets"), MNISTDir: cfg.MNISTDir}
	registry, err := loadChallenges(ctx, cfg, st, env, log)
	if err != nil {
		return err
	}
	refresh := func(ctx context.Context) error { return registry.Sync(ctx, st, env) }
	if err := prometheus.DefaultRegisterer.Register(store.NewQueueCollector(st, registry.Slugs, log)); err != nil {
		return fmt.Errorf("register queue metrics: %w", err)
	}
	blobs := blob.New(filepath.Join(dataDir, "blobs"))
	predictions := &judge.PredictionStore{Dir: filepath.Join(dataDir, "predictions")}

	if cfg.Workers > 0 {
		owner := cfg.WorkerName
		if owner == "" {
			owner = judge.DefaultConsumer(cmd, 0)
		}
		sb, err := sandbox.New(ctx, cfg.Sandbox, sandbox.DockerOptions{Runtime: cfg.DockerRuntime, Owner: owner})
		if err != nil {
			return fmt.Errorf("judge cannot run plugins safely: %w", err)
		}
		engines, err = startEngine(ctx, cfg, log)
		if err != nil {
			return err
		}
		judgeMetrics, err := judge.NewMetrics(prometheus.DefaultRegisterer)
		if err != nil {
			return err
		}
		for i := range cfg.Workers {
			w := newWorker(cfg, cmd, i, st, registry, blobs, sb, filepath.Join(sockets, strconv.Itoa(i)), log)
			w.Evaluator.Engines, w.Evaluator.Phase = engines, judgeMetrics.ObservePhase
			w.Predictions, w.Refresh, w.Metrics = predictions, refresh, judgeMetrics
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := w.Run(ctx); err != nil {
					errs <- fmt.Errorf("judge worker %s: %w", w.Consumer, err)
				}
			}()
		}
	} else if cmd == "judge" {
		return errors.New("hackarena judge with 0 workers has nothing to do: set --workers")
	}

	switch {
	case cfg.MetricsAddr != "":
		if err := serveMetrics(ctx, cfg.MetricsAddr, log, &wg, errs); err != nil {
			return err
		}
	case cmd == "judge":
		// A judge has no API port to serve them on: it takes a port of
		// its own, unless another judge on this host has it already.
		if err := serveMetrics(ctx, defaultJudgeMetricsAddr, log, &wg, errs); err != nil {
			log.Warn("this judge serves no /metrics: set HACKARENA_METRICS_ADDR to a free address", "err", err)
		}
	}
	if cmd == "serve" {
		hub := events.NewHub(st, 0, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hub.Run(ctx); err != nil {
				errs <- fmt.Errorf("event hub: %w", err)
			}
		}()
		storageMetrics, err := retention.NewMetrics(prometheus.DefaultRegisterer)
		if err != nil {
			return err
		}
		collector := &retention.Collector{Store: st, Blobs: blobs, Challenges: registry, Policy: retention.Policy{KeepLast: cfg.KeepLast},
			Predictions: predictions, DataDir: dataDir, Log: log, Metrics: storageMetrics}
		wg.Add(1)
		go func() {
			defer wg.Done()
			collector.Run(ctx, cfg.CollectEvery)
		}()
		srv := &api.Server{Store: st, Challenges: registry, Blobs: blobs, MaxUpload: cfg.MaxUploadMB << 20,
			Log: log, RequireJudge: true, Env: env, Predictions: predictions, Events: hub,
			Throttles: cfg.Throttles, TrustedProxies: cfg.TrustedProxies,
			Storage: collector, DataDir: dataDir, MinFreeDisk: cfg.MinFreeDisk}
		if cfg.MetricsAddr == "" {
			srv.Metrics = promhttp.Handler()
		}
		if srv.Observe, err = api.NewMetrics(prometheus.DefaultRegisterer); err != nil {
			return err
		}
		key, err := receipts.LoadKey(os.Getenv("HACKARENA_RECEIPT_KEY"), filepath.Join(dataDir, "receipt.key"))
		if err != nil {
			return err
		}
		srv.Receipts = &receipts.Issuer{Key: key, Store: st}
		if root, err := sdkmodule.FindSource(cfg.SDKSource); err != nil {
			log.Warn("the SDK is not served as a Go module, so hackctl init cannot make plugin folders against this server (set HACKARENA_SDK_SOURCE)", "err", err)
		} else if srv.SDK, err = sdkmodule.FromSource(root); err != nil {
			log.Warn("the SDK is not served as a Go module", "err", err)
		} else {
			log.Info("serving the SDK as a Go module", "module", sdkmodule.Path, "version", srv.SDK.Version, "goproxy", "/goproxy/")
		}
		if err := serveAPI(ctx, cfg, srv, dataDir, log, &wg, errs); err != nil {
			return err
		}
		// Another API server may take an organizer's change: follow it.
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(5 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					if err := refresh(ctx); err != nil && ctx.Err() == nil {
						log.Warn("refresh challenge definitions", "err", err)
					}
					// A spec change whose rebuild was lost (its server
					// crashed between the two) is finished here, by
					// whichever server sees it first.
					if err := reconcileBoards(ctx, st, registry, log); err != nil && ctx.Err() == nil {
						log.Warn("reconcile leaderboards", "err", err)
					}
				}
			}
		}()
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-errs:
		return err
	}
}

// loadChallenges builds the challenges from their folders, then applies
// the organizers' updates kept in Redis. A challenge that cannot load is
// listed as unavailable with the reason; the others run.
func loadChallenges(ctx context.Context, cfg config, st *store.Store, env challenges.Env, log *slog.Logger) (*challenges.Registry, error) {
	var fsys fs.FS = challenges.Builtin
	display := "challenges (built in)"
	if cfg.ChallengesDir != "" {
		fsys, display = os.DirFS(cfg.ChallengesDir), cfg.ChallengesDir
	}
	reg, err := challenges.LoadAll(ctx, fsys, display, env)
	if err != nil {
		return nil, err
	}
	if err := reg.Sync(ctx, st, env); err != nil {
		return nil, err
	}
	// A file edited between restarts, or a rebuild lost to a crash, leaves
	// boards ranked by other rules than the challenge's.
	if err := reconcileBoards(ctx, st, reg, log); err != nil {
		return nil, err
	}
	for _, c := range reg.All() {
		if c.Status != challenges.StatusOpen {
			log.Error("challenge unavailable", "challenge", c.Slug, "reason", c.StatusReason)
		} else {
			log.Info("challenge loaded", "challenge", c.Slug, "revision", c.Revision)
		}
	}
	return reg, nil
}

// reconcileBoards rebuilds the boards of every challenge whose boards rank
// by other rules than its own, from the records. A challenge this process
// holds an older revision of than Redis is left to the next round (after
// the next refresh), so a lagging server never rebuilds by old rules.
func reconcileBoards(ctx context.Context, st *store.Store, reg *challenges.Registry, log *slog.Logger) error {
	for _, c := range reg.All() {
		if c.Status != challenges.StatusOpen {
			continue
		}
		if latest, err := st.SpecRevision(ctx, c.Slug); err != nil {
			return err
		} else if latest != c.Revision {
			continue
		}
		rebuilt, _, err := st.ReconcileBoards(ctx, c.Slug, store.RulesOf(c))
		if err != nil {
			return err
		}
		if rebuilt {
			log.Warn("the boards ranked by other rules than the challenge's; rebuilt them", "challenge", c.Slug, "metric", c.PrimaryMetric)
		}
	}
	return nil
}

// startEngine finds the devices, splits them into the slots that runs
// borrow, and starts each slot's engine process.
func startEngine(ctx context.Context, cfg config, log *slog.Logger) (*gpu.Pool, error) {
	found, err := gpu.Discover(ctx, cfg.EngineDevices, cfg.EngineMemory)
	if err != nil {
		return nil, fmt.Errorf("engine devices: %w", err)
	}
	if found.Note != "" {
		log.Warn(found.Note)
	}
	pool, err := gpu.NewPool(gpu.PoolConfig{Devices: found.Usable, SlotsPerDevice: cfg.EngineSlots,
		Grace: cfg.EngineGrace, Log: log, Registerer: prometheus.DefaultRegisterer})
	if err != nil {
		return nil, err
	}
	for _, d := range found.Usable {
		log.Info("engine device", "device", d.String(), "slots", cfg.EngineSlots, "slot_memory_mib", d.MemoryBytes/int64(cfg.EngineSlots)>>20, "blas", gpu.BLAS())
	}
	if err := pool.Start(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func newWorker(cfg config, role string, i int, st *store.Store, reg *challenges.Registry, blobs *blob.Store, sb sandbox.Sandbox, socketDir string, log *slog.Logger) *judge.Worker {
	name := cfg.WorkerName
	if name == "" {
		name = judge.DefaultConsumer(role, i)
	} else if cfg.Workers > 1 {
		name = fmt.Sprintf("%s-%d", name, i)
	}
	// A working judge renews its job's lease every quarter of it, so the
	// lease need not cover a run (or the wait for an engine slot): it is
	// how soon a dead or frozen judge's job is taken over.
	lease := cfg.JudgeLease
	if lease <= 0 {
		lease = time.Minute
	}
	return &judge.Worker{
		Store: st, Challenges: reg, Blobs: blobs,
		Evaluator: judge.NewEvaluator(sb, socketDir, cfg.RunTimeout, nil),
		Consumer:  name, Lease: lease, MaxAttempts: 3, Log: log,
	}
}

func serveAPI(ctx context.Context, cfg config, srv *api.Server, dataDir string, log *slog.Logger, wg *sync.WaitGroup, errs chan<- error) error {
	secret := []byte(cfg.JWTSecret)
	if len(secret) == 0 {
		var err error
		if secret, err = auth.LoadOrCreateSecret(filepath.Join(dataDir, "jwt.secret")); err != nil {
			return err
		}
	}
	tokens, err := auth.NewTokens(secret, cfg.TokenTTL)
	if err != nil {
		return fmt.Errorf("HACKARENA_JWT_SECRET: %w", err)
	}
	// Teams of the version before members become teams of one, each with
	// a member of its name and password (also done lazily at login, for
	// a team an older API replica registers during a rolling upgrade).
	if n, err := srv.Store.AdoptLegacyTeams(ctx); err != nil {
		return fmt.Errorf("adopt the teams of the previous version: %w", err)
	} else if n > 0 {
		log.Info("teams of the previous version adopted as teams of one", "teams", n)
	}
	if cfg.OrganizerPassword != "" {
		if err := api.EnsureOrganizer(ctx, srv.Store, cfg.OrganizerPassword); err != nil {
			return fmt.Errorf("bootstrap organizer: %w", err)
		}
	}
	srv.Tokens = tokens
	app := srv.App()
	wg.Add(2)
	go func() {
		defer wg.Done()
		log.Info("hackarena listening", "url", "http://"+cfg.Addr, "data_dir", dataDir)
		if err := app.Listen(cfg.Addr); err != nil {
			errs <- fmt.Errorf("listen on %s (set HACKARENA_ADDR to a free address): %w", cfg.Addr, err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		if err := app.ShutdownWithTimeout(10 * time.Second); err != nil {
			log.Warn("http shutdown", "err", err)
		}
	}()
	return nil
}

// defaultJudgeMetricsAddr is where `hackarena judge` serves /metrics when
// HACKARENA_METRICS_ADDR does not say (Prometheus's port for exporters).
const defaultJudgeMetricsAddr = "127.0.0.1:9464"

// serveMetrics serves /metrics on an address of its own (the operator's
// network, not the participants'), for `serve` and `judge` alike.
func serveMetrics(ctx context.Context, addr string, log *slog.Logger, wg *sync.WaitGroup, errs chan<- error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s (set HACKARENA_METRICS_ADDR to a free address): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	wg.Add(2)
	go func() {
		defer wg.Done()
		log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("serve metrics on %s: %w", addr, err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdownCtx)
	}()
	return nil
}

// socketRoot creates the process's plugin socket directory, first
// clearing a previous incarnation's.
func socketRoot(dataDir, cmd, workerName string) (string, error) {
	sum := sha256.Sum256([]byte(dataDir + "\x00" + cmd + "\x00" + workerName))
	dir := filepath.Join(os.TempDir(), "hackarena-sock-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Lstat(dir); err == nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH) // a crashed run's tmpfs, if any
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("clear the previous plugin socket dir %s: %w", dir, err)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("create plugin socket dir: %w", err)
	}
	return dir, nil
}

// lockDataDir makes sure one `hackarena serve` owns a data dir: a second one
// would start a second redis-server on the same files (and stop the first
// one's through its pid file). The kernel drops the lock when the process
// dies, even by SIGKILL.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "serve.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another hackarena serve is running on data dir %s: stop it, or give this one its own HACKARENA_DATA_DIR", dir)
	}
	return func() { f.Close() }, nil
}
