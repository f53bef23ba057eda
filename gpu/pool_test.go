package gpu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hackarena/hackarena/sdk/engine"
	"github.com/hackarena/hackarena/sdk/network"
)

// newTestPool starts a pool of engine processes run from this test
// binary (TestMain).
func newTestPool(t *testing.T, cfg PoolConfig) *Pool {
	t.Helper()
	if cfg.Devices == nil {
		cfg.Devices = []Device{CPUDevice(256 << 20)}
	}
	if cfg.SlotsPerDevice == 0 {
		cfg.SlotsPerDevice = 1
	}
	cfg.Command = []string{os.Args[0], "-test.run=^$"}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// openRun lends the pool's slot to a run and dials its Engine as a plugin
// would.
func openRun(t *testing.T, p *Pool, spec RunSpec) (*EngineLease, *Run, *engine.Client) {
	t.Helper()
	lease, err := p.Acquire(context.Background(), "team")
	if err != nil {
		t.Fatal(err)
	}
	run, err := lease.Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	return lease, run, dialRun(t, run)
}

func onlyPID(t *testing.T, p *Pool) int {
	t.Helper()
	for _, pid := range p.PIDs() {
		return pid
	}
	t.Fatal("no engine process runs")
	return 0
}

// waitFree waits until every slot is lent again.
func waitFree(t *testing.T, p *Pool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); p.Stats().Free != p.Stats().Total; {
		if time.Now().After(end) {
			t.Fatalf("slots not lent again: %+v", p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEngineProcessHoldsNothingOfTheJudges: the process serving a slot is
// not the judge, has an environment of its own few variables, and, as
// root, another uid and an empty network namespace; its cgroup has the
// slot's budget plus the overhead.
func TestEngineProcessHoldsNothingOfTheJudges(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://127.0.0.1:6379")
	p := newTestPool(t, PoolConfig{Overhead: 64 << 20})
	pid := onlyPID(t, p)
	if pid == os.Getpid() {
		t.Fatal("the engine runs in the judge's process")
	}
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, kv := range bytes.Split(bytes.TrimRight(environ, "\x00"), []byte{0}) {
		name, _, _ := strings.Cut(string(kv), "=")
		names = append(names, name)
	}
	if got := strings.Join(names, ","); got != EngineProcessEnv+",GOMAXPROCS,OPENBLAS_NUM_THREADS" {
		t.Errorf("the engine's environment has %s", got)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: the engine's uid, network namespace and cgroup must be checked")
		}
		t.Log("not root: uid, network namespace and cgroup are not checked")
		return
	}
	status, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if !strings.Contains(string(status), "Uid:\t"+strconv.Itoa(engineUIDBase)) {
		t.Errorf("the engine does not run as uid %d:\n%s", engineUIDBase, status)
	}
	ours, _ := os.Readlink("/proc/self/ns/net")
	theirs, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if ours == theirs || theirs == "" {
		t.Errorf("the engine shares the judge's network namespace (%s)", theirs)
	}
	cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(cg), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[1] == "memory" {
			limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"))
			if err != nil || strings.TrimSpace(string(limit)) != strconv.Itoa(256<<20+64<<20) {
				t.Errorf("the engine's memory cgroup %s has limit %q (%v), want the budget plus the overhead", parts[2], limit, err)
			}
		}
	}
}

// TestEngineProcessKilledAtItsMemoryLimit runs a batch whose activations
// the slot's budget allows, in a process whose limit leaves 1 MiB for
// everything else (the call's message and reply are that overhead's): the
// kernel kills it, the run's outcome says memory, and the slot is lent
// again with a new process.
func TestEngineProcessKilledAtItsMemoryLimit(t *testing.T) {
	p := newTestPool(t, PoolConfig{Devices: []Device{CPUDevice(96 << 20)}, Overhead: 1 << 20})
	old := onlyPID(t, p)
	lease, run, c := openRun(t, p, RunSpec{})
	// An embedding runs on gorgonia's graph (an inference plan holds less
	// than its charge): its token ids take 8 bytes each, and the graph
	// allocates every output anew while it holds the last run's.
	net := &network.Network{Input: []int{4096}, Layers: []network.Layer{{Kind: network.Embedding, InputDim: 2, OutputDim: 2}}}
	js, npz := zeroFiles(t, net)
	n, err := c.LoadFiles(context.Background(), js, npz)
	if err != nil {
		t.Fatal(err)
	}
	const batch = 760
	if act, _ := RunBytes(net, batch); act > 96<<20 {
		t.Fatalf("the batch's %d MiB of activations do not fit the budget", act>>20)
	}
	_, err = n.RunBytes(context.Background(), batch, make([]byte, batch*4096))
	out := run.Close()
	lease.Release()
	if err == nil || out.Failure == nil || out.Failure.Kind != FailedMemory || !strings.Contains(out.Failure.Msg, "memory limit (budget 96 MiB plus 1 MiB overhead)") {
		t.Fatalf("run: %v; outcome %+v, want the process killed for memory", err, out.Failure)
	}
	waitFree(t, p)
	if pid := onlyPID(t, p); pid == old {
		t.Error("the killed process still serves the slot")
	}
	if got := testutil.ToFloat64(p.restarts.WithLabelValues(FailedMemory)); got != 1 {
		t.Errorf("restarts counted %v, want 1", got)
	}
	// The next run on the slot works.
	lease, run, c = openRun(t, p, RunSpec{})
	defer lease.Release()
	js, npz = mlpFiles(t, 4)
	if _, err := c.LoadFiles(context.Background(), js, npz); err != nil {
		t.Fatalf("a run after the restart: %v", err)
	}
	if out := run.Close(); out.Failure != nil {
		t.Fatalf("a run after the restart: %+v", out.Failure)
	}
}

// TestEngineWorkPastTheGraceIsKilled: one Dense layer (no boundary to stop
// at) still computing when the run ends and the grace passes: the process
// is killed, the outcome says so, and the slot comes back.
func TestEngineWorkPastTheGraceIsKilled(t *testing.T) {
	// 4 GiB: the product's weights and activations (1 GiB) take more than
	// the usual 1.5 GiB limit under the race detector.
	p := newTestPool(t, PoolConfig{Devices: []Device{CPUDevice(4 << 30)}, Grace: 100 * time.Millisecond})
	old := onlyPID(t, p)
	lease, run, c := openRun(t, p, RunSpec{})
	// 1.1 TFLOP in one matrix product: seconds on a CPU slot even with
	// OpenBLAS, more than receiving, widening and compiling the batch
	// take (a second or two of CPU under the race detector). The run must
	// end inside the product: ended before it, the batch is refused at
	// once and there is nothing to kill. The inputs are ones: gonum's
	// product skips the zeros of its left side.
	const width, batch = 8192, 8000 // the batch under gRPC's 64 MiB message
	js, npz := zeroFiles(t, &network.Network{Input: []int{width}, Layers: []network.Layer{{Kind: network.Dense, Units: width}}})
	n, err := c.LoadFiles(context.Background(), js, npz)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ones := bytes.Repeat([]byte{1}, batch*width)
	go func() {
		_, err := n.RunBytes(context.Background(), batch, ones)
		done <- err
	}()
	// Once the engine is well into the product, end the run.
	cpu := func() time.Duration { return processCPU(t, old) }
	start := cpu()
	for end := time.Now().Add(time.Minute); ; {
		select {
		case err := <-done:
			t.Fatalf("the batch ended before the run did: %v (%+v)", err, run.Close().Failure)
		default:
		}
		if cpu()-start >= 5*time.Second {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the engine never started computing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	run.Cancel()
	out := run.Close()
	lease.Release()
	if out.Failure == nil || out.Failure.Kind != FailedDeadline {
		t.Fatalf("outcome %+v, want the process killed past the grace", out.Failure)
	}
	if err := <-done; err == nil {
		t.Error("the plugin's call succeeded on a killed engine")
	}
	if got := testutil.ToFloat64(p.kills); got != 1 {
		t.Errorf("deadline kills counted %v, want 1", got)
	}
	waitFree(t, p)
	if onlyPID(t, p) == old {
		t.Error("the killed process still serves the slot")
	}
}

// TestEngineProcessRefusesComputeThatCannotFinish: the engine process
// refuses a batch that its own measured rate cannot finish before the
// run's deadline, and the outcome reports it.
func TestEngineProcessRefusesComputeThatCannotFinish(t *testing.T) {
	p := newTestPool(t, PoolConfig{Devices: []Device{CPUDevice(1 << 30)}})
	// 100 GFLOP an example, from 5 MiB of weights: 3.2 TFLOP a batch.
	const batch = 32
	net := &network.Network{Input: []int{64, 128, 128}, Layers: []network.Layer{{Kind: network.Conv2D, Filters: 2048, Kernel: []int{5, 5}}}}
	flops, err := net.FLOPs(batch)
	if err != nil {
		t.Fatal(err)
	}
	var rate float64
	for _, sp := range p.procs {
		rate = sp.flops
	}
	// A deadline at half the time the batch needs at the engine's rate.
	need := time.Duration(float64(flops) / rate * float64(time.Second))
	lease, run, c := openRun(t, p, RunSpec{Deadline: time.Now().Add(need / 2)})
	defer lease.Release()
	js, npz := zeroFiles(t, net)
	n, err := c.LoadFiles(context.Background(), js, npz)
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.RunBytes(context.Background(), batch, make([]byte, batch*64*128*128))
	out := run.Close()
	if err == nil || !strings.Contains(err.Error(), "GFLOP") || out.Compute == nil || out.Refusals[RefusedCompute] != 1 {
		t.Fatalf("run: %v; outcome %+v, want a compute refusal (%.1f GFLOP at %.1f GFLOP/s)", err, out, float64(flops)/1e9, rate/1e9)
	}
	if status.Code(errors.Unwrap(err)) != codes.ResourceExhausted {
		t.Errorf("a compute refusal came back as %v", err)
	}
	if got := testutil.ToFloat64(p.refusals.WithLabelValues(RefusedCompute)); got != 1 {
		t.Errorf("hackarena_engine_refusals_total{kind=\"compute\"} is %v, want 1", got)
	}
}

// zeroFiles is net with every weight 0: a small .npz, however large the
// network.
func zeroFiles(t *testing.T, net *network.Network) ([]byte, []byte) {
	t.Helper()
	return filledFiles(t, net, 0)
}

// filledFiles is net with every weight v.
func filledFiles(t *testing.T, net *network.Network, v float32) ([]byte, []byte) {
	t.Helper()
	ps, err := net.Params()
	if err != nil {
		t.Fatal(err)
	}
	w := network.Weights{}
	for _, p := range ps {
		n := 1
		for _, d := range p.Shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = v
		}
		w[p.Name] = &network.Array{Shape: p.Shape, Data: data}
	}
	js, err := net.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var npz bytes.Buffer
	if err := network.WriteNPZ(&npz, w); err != nil {
		t.Fatal(err)
	}
	return js, npz.Bytes()
}

// processCPU is a process's user and system CPU time.
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(utime+stime) * time.Second / time.Duration(clockTicks)
}

// clockTicks is USER_HZ, which /proc reports CPU times in.
const clockTicks = 100

// TestARunAloneUsesEveryCore: the engine process of a run that is alone
// works with every core; when a second run opens, each works with half,
// the first from its next batch on, and it gets them all back when the
// other closes.
func TestARunAloneUsesEveryCore(t *testing.T) {
	p := newTestPool(t, PoolConfig{SlotsPerDevice: 2})
	cores := runtime.NumCPU()
	images := make([]byte, 4*784)
	_, first, _ := openRun(t, p, RunSpec{Images: images})
	if got := first.Threads(); got != cores {
		t.Errorf("a run alone works with %d threads, want all %d cores", got, cores)
	}
	_, second, _ := openRun(t, p, RunSpec{Images: images})
	half := max(1, cores/2)
	if got := second.Threads(); got != half {
		t.Errorf("the second run works with %d threads, want %d", got, half)
	}
	if err := first.SetBatch(1, 0, 2, 784); err != nil {
		t.Fatal(err)
	}
	if got, inProcess := first.Threads(), engineThreads(t, first); got != half || inProcess != half {
		t.Errorf("with a second run open the first works with %d threads (its process says %d), want %d", got, inProcess, half)
	}
	second.Close()
	if err := first.SetBatch(2, 2, 2, 784); err != nil {
		t.Fatal(err)
	}
	if got, inProcess := first.Threads(), engineThreads(t, first); got != cores || inProcess != cores {
		t.Errorf("alone again the first run works with %d threads (its process says %d), want %d", got, inProcess, cores)
	}
	first.Close()
}

// engineThreads asks a run's engine process how many threads it works
// with now. A batch is told without an answer; the ping comes after it on
// the same socket, so it answers once the batch was taken.
func engineThreads(t *testing.T, r *Run) int {
	t.Helper()
	reply, err := r.lease.sp.call(ctlMsg{Op: opPing}, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return reply.Threads
}
