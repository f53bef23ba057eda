package gpu

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hackarena/hackarena/sdk/engine"
	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/nn"
)

func TestParseNvidiaSMI(t *testing.T) {
	cases := map[string]struct {
		gpus     int
		name     string
		memMiB   int64
		wantErr  string
		lastUUID string
	}{
		"nvidia-smi-h200.csv":   {gpus: 1, name: "NVIDIA H200", memMiB: 143771},
		"nvidia-smi-8xa100.csv": {gpus: 8, name: "NVIDIA A100-SXM4-80GB", memMiB: 81920, lastUUID: "GPU-0a1b2c3d-0000-4000-8000-000000000007"},
		"nvidia-smi-mig.csv":    {gpus: 2, name: "NVIDIA A100 80GB PCIe", memMiB: 81920},
		"nvidia-smi-lost.csv":   {wantErr: `row 2 (GPU 1): memory.total "[Unknown Error]" is not in MiB`},
	}
	for file, c := range cases {
		t.Run(file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			devs, err := ParseNvidiaSMI(out)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != c.gpus || devs[0].Name != c.name || devs[0].MemoryBytes != c.memMiB<<20 || devs[0].Kind != KindCUDA {
				t.Fatalf("parsed %+v", devs)
			}
			for i, d := range devs {
				if d.Index != i {
					t.Errorf("device %d has index %d", i, d.Index)
				}
			}
			if c.lastUUID != "" && devs[len(devs)-1].UUID != c.lastUUID {
				t.Errorf("last uuid %q", devs[len(devs)-1].UUID)
			}
		})
	}
	if _, err := ParseNvidiaSMI([]byte("No devices were found\n")); err == nil || !strings.Contains(err.Error(), "want the header") {
		t.Errorf("garbage: %v", err)
	}
}

func TestDiscoverWithoutNvidiaSMIIsOneCPUDevice(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	d, err := Discover(context.Background(), "auto", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Usable) != 1 || d.Usable[0].Kind != KindCPU || d.Usable[0].MemoryBytes != 1<<30 || len(d.GPUs) != 0 {
		t.Fatalf("discovered %+v", d)
	}
	if _, err := Discover(context.Background(), "tpu", 1); err == nil {
		t.Error("unknown mode accepted")
	}
}

// TestDiscoverReadsNvidiaSMI puts a recorded nvidia-smi on PATH (a fake of
// the one command this machine lacks): the GPUs are reported, and the
// engine stays on the CPU because this build has no CUDA.
func TestDiscoverReadsNvidiaSMI(t *testing.T) {
	dir := t.TempDir()
	recorded, err := filepath.Abs("testdata/nvidia-smi-8xa100.csv")
	if err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\n[ \"$1 $2\" = '--query-gpu=index,uuid,name,memory.total --format=csv' ] || exit 9\nexec cat " + recorded + "\n"
	if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":/bin:/usr/bin")
	d, err := Discover(context.Background(), "auto", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.GPUs) != 8 || len(d.Usable) != 1 || d.Usable[0].Kind != KindCPU || !strings.Contains(d.Note, "no CUDA support") {
		t.Fatalf("discovered %+v", d)
	}
	if d, _ := Discover(context.Background(), "cpu", 1<<30); len(d.GPUs) != 0 {
		t.Errorf("mode cpu still ran nvidia-smi: %+v", d)
	}
}

func newAllocator(t *testing.T, slots int) (*Allocator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := NewAllocator([]Device{CPUDevice(1 << 30)}, slots, reg)
	if err != nil {
		t.Fatal(err)
	}
	return a, reg
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAllocatorTakesTeamsInTurn queues three runs of team A, then one of
// team B: B is served second, not fourth.
func TestAllocatorTakesTeamsInTurn(t *testing.T) {
	a, _ := newAllocator(t, 1)
	hold, err := a.Acquire(context.Background(), "holder")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	enqueue := func(team string) {
		n := a.Stats().Waiting
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := a.Acquire(context.Background(), team)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, team)
			mu.Unlock()
			l.Release()
		}()
		waitFor(t, func() bool { return a.Stats().Waiting == n+1 })
	}
	for range 3 {
		enqueue("A")
	}
	enqueue("B")
	hold.Release()
	wg.Wait()
	if got := strings.Join(order, ","); got != "A,B,A,A" {
		t.Errorf("served %s, want A,B,A,A", got)
	}
}

func TestAllocatorCancelledWaitHoldsNoSlot(t *testing.T) {
	a, reg := newAllocator(t, 2)
	l1, _ := a.Acquire(context.Background(), "x")
	l2, _ := a.Acquire(context.Background(), "y")
	if got := testutil.ToFloat64(a.busy.WithLabelValues("cpu:0")); got != 2 {
		t.Errorf("busy gauge %v, want 2", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := a.Acquire(ctx, "z"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a deadline", err)
	}
	if s := a.Stats(); s.Waiting != 0 {
		t.Errorf("a cancelled wait is still queued: %+v", s)
	}
	l1.Release()
	l1.Release() // twice is harmless
	l2.Release()
	if s := a.Stats(); s.Free != 2 {
		t.Errorf("after release: %+v", s)
	}
	if got := testutil.ToFloat64(a.busy.WithLabelValues("cpu:0")); got != 0 {
		t.Errorf("busy gauge %v after release, want 0", got)
	}
	if n, err := testutil.GatherAndCount(reg, "hackarena_engine_slot_wait_seconds"); err != nil || n != 1 {
		t.Errorf("wait histogram: %d series, %v", n, err)
	}
}

// TestAllocatorNeverLosesASlot races acquires, cancellations and releases.
func TestAllocatorNeverLosesASlot(t *testing.T) {
	a, _ := newAllocator(t, 3)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%5)*time.Millisecond)
			defer cancel()
			l, err := a.Acquire(ctx, []string{"a", "b", "c", "d"}[i%4])
			if err != nil {
				return
			}
			time.Sleep(time.Duration(i%3) * time.Millisecond)
			l.Release()
		}()
	}
	wg.Wait()
	if s := a.Stats(); s.Free != 3 || s.Waiting != 0 {
		t.Fatalf("after the storm: %+v, want 3 free and none waiting", s)
	}
}

func TestNewAllocatorRefusesNoSlots(t *testing.T) {
	if _, err := NewAllocator([]Device{CPUDevice(1)}, 0, nil); !errors.Is(err, ErrNoSlots) {
		t.Errorf("err %v", err)
	}
}

// TestMain lets this test binary serve as an engine process.
func TestMain(m *testing.M) {
	if os.Getenv(EngineProcessEnv) == "1" {
		os.Exit(ServeEngineProcess())
	}
	// The in-process Engine the benchmarks compare with uses the kernels
	// engine processes get.
	UseBestBLASKernels()
	os.Exit(m.Run())
}

// mlpFiles is a small trained-shape network as a plugin would send it.
func mlpFiles(t testing.TB, hidden int) ([]byte, []byte) {
	return networkFiles(t, &network.Network{Input: []int{4}, Layers: []network.Layer{
		{Kind: network.Dense, Units: hidden, Activation: "relu"}, {Kind: network.Dense, Units: 3, Activation: "softmax"}}})
}

// networkFiles initialises net (seed 1) and returns its JSON and .npz.
func networkFiles(t testing.TB, net *network.Network) ([]byte, []byte) {
	t.Helper()
	m, err := nn.NewModel(net, 1)
	if err != nil {
		t.Fatal(err)
	}
	js, err := net.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var npz bytes.Buffer
	if err := network.WriteNPZ(&npz, m.Weights); err != nil {
		t.Fatal(err)
	}
	return js, npz.Bytes()
}

// serve runs a session's Engine on a real gRPC server over a unix socket,
// as the judge does through the broker, and returns a plugin-side client.
func serve(t *testing.T, s *Session) *engine.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(s)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return engine.NewClient(conn)
}

func TestEngineRunsWhatNNComputes(t *testing.T) {
	js, npz := mlpFiles(t, 8)
	s := (&Engine{}).Open(&Slot{Device: CPUDevice(1 << 30), MemoryBudget: 1 << 20})
	defer s.Close()
	c := serve(t, s)
	ctx := context.Background()
	n, err := c.LoadFiles(ctx, js, npz)
	if err != nil {
		t.Fatal(err)
	}
	if n.Budget != 1<<20 || n.Charged <= 0 || !strings.HasPrefix(n.Handle(), "net-") || len(n.Handle()) != 36 {
		t.Errorf("load info %+v handle %q", n, n.Handle())
	}
	x := []float32{1, 2, 3, 4, -1, 0, 1, 0.5}
	got, err := n.Run(ctx, 2, x)
	if err != nil {
		t.Fatal(err)
	}
	net, _ := network.Decode(js)
	w, _ := network.ReadNPZ(npz)
	want, err := (&nn.Model{Net: net, Weights: w}).Predict(x)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("got %d outputs, want 6", len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("output %d: engine %v, in-process %v", i, got[i], want[i])
		}
	}
	if _, err := n.Run(ctx, 2, x[:7]); status.Code(errors.Unwrap(err)) != codes.InvalidArgument {
		t.Errorf("ragged input: %v", err)
	}
	if err := n.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Charged() != 0 {
		t.Errorf("%d bytes still charged after release", s.Charged())
	}
	if _, err := n.Run(ctx, 2, x); status.Code(errors.Unwrap(err)) != codes.NotFound {
		t.Errorf("run after release: %v, want NotFound", err)
	}
}

// TestHandlesAreScopedToTheRun: a handle from one run means nothing in
// another, even on the same slot.
func TestHandlesAreScopedToTheRun(t *testing.T) {
	js, npz := mlpFiles(t, 8)
	slot := &Slot{Device: CPUDevice(1 << 30), MemoryBudget: 1 << 20}
	runA, runB := (&Engine{}).Open(slot), (&Engine{}).Open(slot)
	defer runA.Close()
	defer runB.Close()
	ctx := context.Background()
	info, err := runA.Load(ctx, js, npz)
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, runB)
	_, err = c.Run(ctx, info.Handle, 1, 4, []float32{1, 2, 3, 4})
	if status.Code(errors.Unwrap(err)) != codes.NotFound || !strings.Contains(err.Error(), "load the network in this run") {
		t.Fatalf("run B using run A's handle: %v, want NotFound", err)
	}
	runA.Close()
	if _, _, err := runA.Run(ctx, info.Handle, []int{1, 4}, []float32{1, 2, 3, 4}); !errors.Is(err, ErrClosed) {
		t.Errorf("run A after its end: %v", err)
	}
}

func TestBudgetIsChargedAndEnforced(t *testing.T) {
	js, npz := mlpFiles(t, 64)
	weights := int64((4*64 + 64 + 64*3 + 3) * 4)
	ctx := context.Background()

	s := (&Engine{}).Open(&Slot{Device: CPUDevice(1 << 30), MemoryBudget: weights - 1})
	_, err := s.Load(ctx, js, npz)
	var budget *BudgetError
	if !errors.As(err, &budget) || budget.Budget != weights-1 || s.Report().OverBudget == nil {
		t.Fatalf("load over budget: %v", err)
	}
	if !strings.Contains(err.Error(), "over this slot's memory budget") {
		t.Errorf("message %q", err)
	}
	if r := s.Report(); r.Refusals[RefusedMemory] != 1 || len(r.Refusals) != 1 {
		t.Errorf("refusals %v, want one memory refusal", r.Refusals)
	}
	s.Close()

	// Weights fit, a big batch's activations do not.
	s = (&Engine{}).Open(&Slot{Device: CPUDevice(1 << 30), MemoryBudget: weights + 10_000})
	defer s.Close()
	info, err := s.Load(ctx, js, npz)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Run(ctx, info.Handle, []int{4, 4}, make([]float32, 16)); err != nil {
		t.Fatalf("small batch: %v", err)
	}
	if _, _, err := s.Run(ctx, info.Handle, []int{1000, 4}, make([]float32, 4000)); !errors.As(err, &budget) || !strings.Contains(err.Error(), "a batch of 1000 examples") {
		t.Fatalf("big batch: %v", err)
	}
	if err := s.Release(info.Handle); err != nil {
		t.Fatal(err)
	}
	if s.Charged() != 0 {
		t.Errorf("%d bytes charged after release", s.Charged())
	}
}

func TestEngineBoundsHandlesAndBatchSizes(t *testing.T) {
	js, npz := mlpFiles(t, 4)
	ctx := context.Background()
	s := (&Engine{MaxHandles: 2, MaxBatchSizes: 2}).Open(&Slot{Device: CPUDevice(1 << 30), MemoryBudget: 1 << 30})
	defer s.Close()
	a, err := s.Load(ctx, js, npz)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, js, npz); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, js, npz); !errors.Is(err, ErrTooMany) {
		t.Errorf("third network: %v", err)
	}
	charged := s.Charged()
	for _, batch := range []int{1, 2, 3, 4, 5} {
		if _, _, err := s.Run(ctx, a.Handle, []int{batch, 4}, make([]float32, 4*batch)); err != nil {
			t.Fatal(err)
		}
	}
	net := &network.Network{Input: []int{4}, Layers: []network.Layer{{Kind: network.Dense, Units: 4, Activation: "relu"}, {Kind: network.Dense, Units: 3, Activation: "softmax"}}}
	four, _ := RunBytes(net, 4)
	five, _ := RunBytes(net, 5)
	act := four + five
	if got := s.Charged() - charged; got != act {
		t.Errorf("charged %d bytes for compiled batches, want %d (only the last two batch sizes kept)", got, act)
	}
}

func TestEngineRefusesTooManyCallsAtOnce(t *testing.T) {
	s := (&Engine{MaxConcurrentCalls: 1}).Open(&Slot{Device: CPUDevice(1 << 30), MemoryBudget: 1 << 30})
	defer s.Close()
	if err := s.enter(); err != nil {
		t.Fatal(err)
	}
	js, npz := mlpFiles(t, 4)
	if _, err := s.Load(context.Background(), js, npz); !errors.Is(err, ErrBusy) {
		t.Errorf("second call at once: %v, want ErrBusy", err)
	}
	if n := s.Report().Refusals[RefusedBusy]; n != 1 {
		t.Errorf("%d busy refusals counted, want 1", n)
	}
	s.leave()
	if _, err := s.Load(context.Background(), js, npz); err != nil {
		t.Errorf("after the first returned: %v", err)
	}
}

func TestEngineRejectsBadNetworks(t *testing.T) {
	js, npz := mlpFiles(t, 4)
	s := (&Engine{}).Open(&Slot{Device: CPUDevice(1 << 30), MemoryBudget: 1 << 30})
	defer s.Close()
	c := serve(t, s)
	cases := map[string]struct{ js, npz []byte }{
		"unknown layer": {[]byte(`{"input":[4],"layers":[{"kind":"Transformer"}]}`), npz},
		"not npz":       {js, []byte("PK not really")},
		"wrong weights": {[]byte(`{"input":[4],"layers":[{"kind":"Dense","units":9}]}`), npz},
	}
	for name, c2 := range cases {
		if _, err := c.LoadFiles(context.Background(), c2.js, c2.npz); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	_, err := s.Load(context.Background(), []byte(`{"input":[4],"layers":[{"kind":"Dense","units":9}]}`), npz)
	var input *InputError
	if !errors.As(err, &input) {
		t.Errorf("wrong weights: %v, want an InputError", err)
	}
}

// judgeBatchSession is a session with a small network on bytes (4
// values in, 3 classes out) loaded through a real gRPC server, for the
// tests of batches the judge sets.
func judgeBatchSession(t *testing.T) (*Session, *engine.Network) {
	t.Helper()
	net := &network.Network{Input: []int{4}, Layers: []network.Layer{
		{Kind: network.Rescaling, Scale: 1.0 / 255}, {Kind: network.Dense, Units: 3, Activation: "softmax"}}}
	js, npz := networkFiles(t, net)
	s := (&Engine{}).Open(&Slot{Device: CPUDevice(1 << 30), MemoryBudget: 1 << 20})
	t.Cleanup(s.Close)
	n, err := serve(t, s).LoadFiles(context.Background(), js, npz)
	if err != nil {
		t.Fatal(err)
	}
	return s, n
}

// TestRunBatchReadsTheJudgesCurrentBatch: a run may name the batch the
// judge is asking about instead of sending its images back, and only
// that batch.
func TestRunBatchReadsTheJudgesCurrentBatch(t *testing.T) {
	s, n := judgeBatchSession(t)
	ctx := context.Background()
	images := []byte{0, 10, 200, 255, 7, 7, 7, 7}
	s.SetBatch(5, 2, images)
	byRef, err := n.RunJudgeBatch(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := n.RunBytes(ctx, 2, images)
	if err != nil {
		t.Fatal(err)
	}
	if len(byRef) != 6 {
		t.Fatalf("%d outputs, want 6", len(byRef))
	}
	for i := range sent {
		if byRef[i] != sent[i] {
			t.Errorf("output %d: %v by reference, %v sent", i, byRef[i], sent[i])
		}
	}
	s.SetBatch(6, 2, images)
	if _, err := n.RunJudgeBatch(ctx, 5); status.Code(errors.Unwrap(err)) != codes.InvalidArgument || !strings.Contains(err.Error(), "not the batch being judged") {
		t.Errorf("a past batch: %v", err)
	}
}

// TestRunBatchWaitsForTheBatchTheJudgeIsTelling: the judge tells the
// engine process of a batch without waiting for it, so a plugin's request
// for that batch may arrive first; it is held until the batch is set, and
// a request for a batch further ahead is refused once the wait ends.
func TestRunBatchWaitsForTheBatchTheJudgeIsTelling(t *testing.T) {
	s, n := judgeBatchSession(t)
	ctx := context.Background()
	images := []byte{0, 10, 200, 255, 7, 7, 7, 7}
	s.SetBatch(1, 2, images)
	ran := make(chan error, 1)
	go func() {
		_, err := n.RunJudgeBatch(ctx, 2)
		ran <- err
	}()
	select {
	case err := <-ran:
		t.Fatalf("the request for batch 2 returned before batch 2 was set: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.SetBatch(2, 2, images)
	if err := <-ran; err != nil {
		t.Fatalf("batch 2, set while its request waited: %v", err)
	}

	defer func(d time.Duration) { batchWait = d }(batchWait)
	batchWait = 20 * time.Millisecond
	for _, id := range []uint64{3, 4} {
		if _, err := n.RunJudgeBatch(ctx, id); status.Code(errors.Unwrap(err)) != codes.InvalidArgument || !strings.Contains(err.Error(), "not the batch being judged") {
			t.Errorf("batch %d, never set: %v", id, err)
		}
	}
}
