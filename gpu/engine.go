package gpu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/hackarena/hackarena/sdk/engine"
	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/nn"
	"github.com/hackarena/hackarena/sdk/onnx"
)

// Engine runs networks for plugins, one Session per run.
type Engine struct {
	// MaxHandles bounds the networks one run may hold loaded at once.
	MaxHandles int
	// MaxConcurrentCalls bounds the Load/Run calls one run may have in
	// flight; more are refused, not queued, so a plugin cannot pile up
	// goroutines in the judge.
	MaxConcurrentCalls int
	// MaxBatchSizes bounds the batch sizes compiled per network; the
	// least recently used one is dropped beyond it.
	MaxBatchSizes int
	// FLOPS is the rate this slot computes at (floating-point operations
	// a second, as measured by CalibrateFLOPS); a batch whose estimate
	// does not fit the run's remaining time at this rate is refused. 0
	// refuses nothing.
	FLOPS float64
}

// Engine limits when the fields are zero.
const (
	DefaultMaxHandles         = 8
	DefaultMaxConcurrentCalls = 4
	DefaultMaxBatchSizes      = 4
)

// Typed errors a caller branches on (the gRPC service maps them to
// status codes, the judge to a failure reason).
var (
	ErrUnknownHandle = errors.New("unknown network handle: load the network in this run and use the handle Load returned")
	ErrBusy          = errors.New("too many engine calls at once")
	ErrTooMany       = errors.New("too many networks loaded")
	ErrClosed        = errors.New("the run is over")
)

// BudgetError is a network or batch that does not fit the slot's memory.
type BudgetError struct {
	What   string
	Need   int64 // bytes the run would hold with it
	Budget int64
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("%s needs %.1f MiB, over this slot's memory budget of %.1f MiB: use a smaller network or smaller batches",
		e.What, float64(e.Need)/(1<<20), float64(e.Budget)/(1<<20))
}

// InputError is a request the engine cannot run as given.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// ComputeError is a batch whose estimated compute does not fit the time
// the run has left.
type ComputeError struct {
	Batch int
	FLOPs int64
	Need  time.Duration // at the slot's measured rate
	Left  time.Duration
}

func (e *ComputeError) Error() string {
	return fmt.Sprintf("a batch of %d examples needs about %.1f GFLOP, %s on this slot, and the run has %s left: use smaller batches or a smaller network",
		e.Batch, float64(e.FLOPs)/1e9, e.Need.Round(time.Millisecond), max(e.Left, 0).Round(time.Millisecond))
}

// Refusal kinds, as counted by a session and exported to Prometheus.
const (
	RefusedMemory  = "memory"
	RefusedCompute = "compute"
	RefusedBusy    = "busy"
	RefusedInput   = "input"
	RefusedHandles = "handles"
	RefusedClosed  = "closed"
)

// refusalKind names the kind of a refusal, "" for an error that is not
// one.
func refusalKind(err error) string {
	var budget *BudgetError
	var compute *ComputeError
	var input *InputError
	switch {
	case errors.As(err, &budget):
		return RefusedMemory
	case errors.As(err, &compute):
		return RefusedCompute
	case errors.Is(err, ErrBusy):
		return RefusedBusy
	case errors.As(err, &input), errors.Is(err, ErrUnknownHandle):
		return RefusedInput
	case errors.Is(err, ErrTooMany):
		return RefusedHandles
	case errors.Is(err, ErrClosed):
		return RefusedClosed
	}
	return ""
}

// Session is one run's use of a slot. Everything it loaded is released
// when it closes.
type Session struct {
	engine *Engine
	slot   *Slot
	calls  chan struct{}

	// ctx ends when the run does (its deadline, or Cancel): work in
	// flight stops at the next layer.
	ctx      context.Context
	cancel   context.CancelFunc
	deadline time.Time

	mu         sync.Mutex
	handles    map[string]*loaded
	charged    int64
	overBudget *BudgetError
	compute    *ComputeError
	input      string
	refusals   map[string]int
	closed     bool
	// computing is how long the session's networks ran, in all.
	computing time.Duration
	// batch is the judge's current batch of images, which a plugin may
	// name instead of sending them back; batchSet is closed (and
	// replaced) when it changes.
	batch    judgeBatch
	batchSet chan struct{}
}

type judgeBatch struct {
	id     uint64
	size   int
	images []byte
}

type loaded struct {
	net     *network.Network
	weights network.Weights
	wbytes  int64

	mu   sync.Mutex // one batch at a time per network: an Inference is not concurrent
	infs []compiled // most recently used last
}

type compiled struct {
	batch int
	inf   *nn.Inference
	bytes int64
	flops int64
	// input holds a batch of one-byte values made float32, reused: a new
	// array per batch (3 MiB for 1,000 MNIST images, zeroed first) cost
	// as much as converting it.
	input []float32
}

// Open starts a run's session on slot, without a deadline.
func (e *Engine) Open(slot *Slot) *Session { return e.OpenUntil(slot, time.Time{}) }

// OpenUntil starts a run's session on slot that ends at deadline (zero:
// when closed): work still running then is cancelled, and a batch whose
// compute estimate does not fit the time left is refused.
func (e *Engine) OpenUntil(slot *Slot, deadline time.Time) *Session {
	calls := e.MaxConcurrentCalls
	if calls <= 0 {
		calls = DefaultMaxConcurrentCalls
	}
	ctx, cancel := context.WithCancel(context.Background())
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(context.Background(), deadline)
	}
	return &Session{engine: e, slot: slot, calls: make(chan struct{}, calls), handles: map[string]*loaded{},
		ctx: ctx, cancel: cancel, deadline: deadline, refusals: map[string]int{}, batchSet: make(chan struct{})}
}

// Cancel stops the session's work in flight at the next layer boundary
// and refuses new calls; Close still frees what it holds.
func (s *Session) Cancel() { s.cancel() }

// refuse counts a refusal of the run's and returns it; every exported
// call passes its error through it once.
func (s *Session) refuse(err error) error {
	kind := refusalKind(err)
	if kind == "" {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals[kind]++
	var compute *ComputeError
	if errors.As(err, &compute) && s.compute == nil {
		s.compute = compute
	}
	if kind == RefusedInput && s.input == "" {
		s.input = err.Error()
	}
	return err
}

// Report is what a session refused, for the judge's verdict and metrics.
type Report struct {
	// OverBudget is the first memory refusal, Compute the first compute
	// refusal, Input the first request the engine could not run.
	OverBudget *BudgetError
	Compute    *ComputeError
	Input      string
	// Refusals counts refusals by kind (Refused*).
	Refusals map[string]int
	// ComputeSeconds is how long the session's networks ran, in all: the
	// run's Engine time.
	ComputeSeconds float64
}

// Report says what the session refused so far.
func (s *Session) Report() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Report{OverBudget: s.overBudget, Compute: s.compute, Input: s.input, Refusals: map[string]int{}, ComputeSeconds: s.computing.Seconds()}
	for k, n := range s.refusals {
		r.Refusals[k] = n
	}
	return r
}

// Slot is the slot the session runs on.
func (s *Session) Slot() *Slot { return s.slot }

// Charged is the memory the session holds on its slot.
func (s *Session) Charged() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.charged
}

func (s *Session) enter() error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	select {
	case s.calls <- struct{}{}:
		return nil
	default:
		return fmt.Errorf("%w (at most %d): wait for one to return", ErrBusy, cap(s.calls))
	}
}

func (s *Session) leave() { <-s.calls }

// charge reserves n bytes, or records and returns a BudgetError.
func (s *Session) charge(what string, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if n > s.slot.MemoryBudget-s.charged {
		err := &BudgetError{What: what, Need: s.charged + n, Budget: s.slot.MemoryBudget}
		if s.overBudget == nil {
			s.overBudget = err
		}
		return err
	}
	s.charged += n
	return nil
}

func (s *Session) refund(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.charged -= n
}

// LoadInfo describes a loaded network.
type LoadInfo struct {
	Handle  string
	Charged int64
	Budget  int64
	Device  string
}

// Load decodes and checks a network, charges its weights to the slot
// before decoding them (each batch size's activations are charged when it
// first runs), and returns a handle.
func (s *Session) Load(ctx context.Context, networkJSON, weightsNPZ []byte) (LoadInfo, error) {
	info, err := s.load(ctx, networkJSON, weightsNPZ)
	return info, s.refuse(err)
}

func (s *Session) load(ctx context.Context, networkJSON, weightsNPZ []byte) (LoadInfo, error) {
	if err := s.enter(); err != nil {
		return LoadInfo{}, err
	}
	defer s.leave()
	if onnx.Sniff(networkJSON) == nil && len(weightsNPZ) == 0 {
		return s.loadONNX(ctx, networkJSON)
	}
	net, err := network.Decode(networkJSON)
	if err != nil {
		return LoadInfo{}, &InputError{err.Error()}
	}
	ps, err := net.Params()
	if err != nil {
		return LoadInfo{}, &InputError{err.Error()}
	}
	var wbytes int64
	for _, p := range ps {
		wbytes += 4 * int64(elementsOf(p.Shape))
	}
	// Charged from the network's own parameter list, before a byte of the
	// .npz is inflated: the weights can be no larger than that.
	if err := s.charge(fmt.Sprintf("loading a network with %.1f MiB of weights", float64(wbytes)/(1<<20)), wbytes); err != nil {
		return LoadInfo{}, err
	}
	w, err := net.ReadWeights(weightsNPZ, wbytes)
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = s.ctx.Err()
	}
	if err != nil {
		s.refund(wbytes)
		if ctx.Err() != nil || s.ctx.Err() != nil {
			return LoadInfo{}, err
		}
		return LoadInfo{}, &InputError{err.Error()}
	}
	return s.keep(&loaded{net: net, weights: w, wbytes: wbytes})
}

// loadONNX imports an ONNX model (sdk/onnx) onto the Engine's layers. The
// file is charged to the slot before it is decoded (its weights, as
// float32, are no larger than it), then the imported weights replace that
// charge.
func (s *Session) loadONNX(ctx context.Context, model []byte) (LoadInfo, error) {
	fileBytes := int64(len(model))
	if err := s.charge(fmt.Sprintf("decoding an ONNX model of %.1f MiB", float64(fileBytes)/(1<<20)), fileBytes); err != nil {
		return LoadInfo{}, err
	}
	net, w, err := onnx.Load(model)
	s.refund(fileBytes)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			return LoadInfo{}, err
		}
		return LoadInfo{}, &InputError{err.Error()}
	}
	var wbytes int64
	for _, a := range w {
		wbytes += 4 * int64(len(a.Data))
	}
	if err := s.charge(fmt.Sprintf("loading an ONNX network with %.1f MiB of weights", float64(wbytes)/(1<<20)), wbytes); err != nil {
		return LoadInfo{}, err
	}
	return s.keep(&loaded{net: net, weights: w, wbytes: wbytes})
}

// keep gives a loaded network a handle.
func (s *Session) keep(l *loaded) (LoadInfo, error) {
	handle, err := newHandle()
	if err != nil {
		s.refund(l.wbytes)
		return LoadInfo{}, err
	}
	maxHandles := s.engine.MaxHandles
	if maxHandles <= 0 {
		maxHandles = DefaultMaxHandles
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.charged -= l.wbytes
		return LoadInfo{}, ErrClosed
	}
	if len(s.handles) >= maxHandles {
		s.charged -= l.wbytes
		return LoadInfo{}, fmt.Errorf("%w: a run may hold %d; release one first", ErrTooMany, maxHandles)
	}
	s.handles[handle] = l
	return LoadInfo{Handle: handle, Charged: s.charged, Budget: s.slot.MemoryBudget, Device: s.slot.Device.String()}, nil
}

// elementsOf is the element count of a shape network.Shapes has checked.
func elementsOf(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func newHandle() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make handle: %w", err)
	}
	return "net-" + hex.EncodeToString(b[:]), nil
}

func (s *Session) lookup(handle string) (*loaded, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	l, ok := s.handles[handle]
	if !ok {
		return nil, ErrUnknownHandle
	}
	return l, nil
}

// Input is a batch's values as they arrived: float32s, their
// little-endian bytes, or one byte per value. They are turned into
// float32 only after the shape has been checked against the network.
type Input struct {
	Float32 []float32
	LE      []byte // little-endian float32
	Uint8   []byte
}

func (in Input) len() int {
	switch {
	case in.Uint8 != nil:
		return len(in.Uint8)
	case in.LE != nil:
		if len(in.LE)%4 != 0 {
			return -1
		}
		return len(in.LE) / 4
	}
	return len(in.Float32)
}

// floats is the input as float32; one-byte values are widened into
// *buf, which is made or grown as needed.
func (in Input) floats(buf *[]float32) []float32 {
	switch {
	case in.Uint8 != nil:
		if cap(*buf) < len(in.Uint8) {
			*buf = make([]float32, len(in.Uint8))
		}
		x := (*buf)[:len(in.Uint8)]
		widen(x, in.Uint8)
		return x
	case in.LE != nil:
		v, _ := engine.BytesFloat32(in.LE)
		return v
	}
	return in.Float32
}

// Run computes one batch. shape is [batch, input...] (or [batch, n] with
// n the input's element count); data holds batch × input values.
func (s *Session) Run(ctx context.Context, handle string, shape []int, data []float32) ([]int, []float32, error) {
	return s.RunInput(ctx, handle, shape, Input{Float32: data})
}

// RunInput is Run for any encoding of the input.
func (s *Session) RunInput(ctx context.Context, handle string, shape []int, in Input) ([]int, []float32, error) {
	outShape, out, err := s.run(ctx, handle, shape, in)
	return outShape, out, s.refuse(err)
}

func (s *Session) run(ctx context.Context, handle string, shape []int, in Input) ([]int, []float32, error) {
	if err := s.enter(); err != nil {
		return nil, nil, err
	}
	defer s.leave()
	l, err := s.lookup(handle)
	if err != nil {
		return nil, nil, err
	}
	inSize := elementsOf(l.net.Input)
	if len(shape) < 2 || shape[0] <= 0 {
		return nil, nil, &InputError{fmt.Sprintf("input shape %v: want [batch, %v...] with batch ≥ 1", shape, l.net.Input)}
	}
	// Checked: a request's dimensions are the plugin's to choose.
	rest := int64(1)
	for _, d := range shape[1:] {
		if d <= 0 || int64(d) > int64(inSize)/rest {
			rest = -1
			break
		}
		rest *= int64(d)
	}
	if rest != int64(inSize) || int64(in.len()) != int64(shape[0])*int64(inSize) {
		return nil, nil, &InputError{fmt.Sprintf("input shape %v with %d values does not fit the network's input %v", shape, in.len(), l.net.Input)}
	}
	batch := shape[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	// The call ends with the plugin's request or with the run, whichever
	// is first.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(s.ctx, stop)()
	// The session's own context too: AfterFunc stops ctx from a goroutine
	// of its own, and a Close that freed this network while the call
	// waited for it must not find it computing after all.
	if err := errors.Join(ctx.Err(), s.ctx.Err()); err != nil {
		return nil, nil, err
	}
	c, err := s.inference(l, batch)
	if err != nil {
		return nil, nil, err
	}
	if err := s.fits(c); err != nil {
		return nil, nil, err
	}
	began := time.Now()
	out, err := c.inf.RunContext(ctx, in.floats(&c.input))
	s.mu.Lock()
	s.computing += time.Since(began)
	s.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, &InputError{err.Error()}
	}
	outSize := len(out) / batch
	return []int{batch, outSize}, out, nil
}

// fits refuses a batch whose compute estimate, at the slot's rate, does
// not fit the time the run has left.
func (s *Session) fits(c *compiled) error {
	if s.engine.FLOPS <= 0 || s.deadline.IsZero() {
		return nil
	}
	need := time.Duration(float64(c.flops) / s.engine.FLOPS * float64(time.Second))
	if left := time.Until(s.deadline); need > left {
		return &ComputeError{Batch: c.batch, FLOPs: c.flops, Need: need, Left: left}
	}
	return nil
}

// inference returns the network compiled for batch, compiling and
// charging it when it is new. The caller holds l.mu.
func (s *Session) inference(l *loaded, batch int) (*compiled, error) {
	for i, c := range l.infs {
		if c.batch == batch {
			l.infs = append(append(l.infs[:i:i], l.infs[i+1:]...), c)
			return &l.infs[len(l.infs)-1], nil
		}
	}
	act, err := RunBytes(l.net, batch)
	if err != nil {
		return nil, &InputError{err.Error()}
	}
	flops, err := l.net.FLOPs(batch)
	if err != nil {
		return nil, &InputError{err.Error()}
	}
	// Refused before compiling, which allocates.
	if err := s.fits(&compiled{batch: batch, flops: flops}); err != nil {
		return nil, err
	}
	maxSizes := s.engine.MaxBatchSizes
	if maxSizes <= 0 {
		maxSizes = DefaultMaxBatchSizes
	}
	if len(l.infs) >= maxSizes {
		old := l.infs[0]
		l.infs = l.infs[1:]
		old.inf.Close()
		s.refund(old.bytes)
	}
	if err := s.charge(fmt.Sprintf("a batch of %d examples", batch), act); err != nil {
		return nil, err
	}
	inf, err := nn.NewInference(l.net, l.weights, batch)
	if err != nil {
		s.refund(act)
		return nil, &InputError{err.Error()}
	}
	l.infs = append(l.infs, compiled{batch: batch, inf: inf, bytes: act, flops: flops})
	return &l.infs[len(l.infs)-1], nil
}

// RunBytes is the memory a compiled batch size is charged: twice its
// activations. An inference plan holds less (two buffers the size of its
// largest activation, and im2col buffers of one example per thread); a
// network without one runs on gorgonia's graph, whose tape machine
// allocates every output anew on each run while the graph still holds the
// previous run's
// (measured on mnist-cnn at batch 1,000: 724 MiB held between runs, 813
// MiB more allocated by each; releasing the held ones crashes gorgonia's
// tensor pool).
func RunBytes(net *network.Network, batch int) (int64, error) {
	act, err := net.ActivationBytes(batch)
	if err != nil {
		return 0, err
	}
	if act > math.MaxInt64/2 {
		return 0, fmt.Errorf("a batch of %d examples needs more memory than can be counted", batch)
	}
	return 2 * act, nil
}

// SetBatch records the images of the batch the judge is about to send:
// until the next, a run may name it by id (RunBatch).
func (s *Session) SetBatch(id uint64, size int, images []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batch = judgeBatch{id: id, size: size, images: images}
	close(s.batchSet)
	s.batchSet = make(chan struct{})
}

// batchWait bounds how long RunBatch holds a request for the batch after
// the current one: the judge tells the engine process of a batch without
// waiting, so the plugin's request can overtake the telling by the time
// it takes that process to read it.
var batchWait = 2 * time.Second

// RunBatch runs a network on the images of the judge's current batch.
func (s *Session) RunBatch(ctx context.Context, handle string, id uint64) ([]int, []float32, error) {
	s.mu.Lock()
	b, set := s.batch, s.batchSet
	s.mu.Unlock()
	if id != 0 && id == b.id+1 {
		wait := time.NewTimer(batchWait)
		select {
		case <-set:
		case <-wait.C:
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
		wait.Stop()
		s.mu.Lock()
		b = s.batch
		s.mu.Unlock()
	}
	if id == 0 || id != b.id {
		return nil, nil, s.refuse(&InputError{fmt.Sprintf("batch %d is not the batch being judged: name the ID of the batch Predict was given", id)})
	}
	return s.RunInput(ctx, handle, []int{b.size, len(b.images) / b.size}, Input{Uint8: b.images})
}

// widen turns one-byte values (pixels) into the float32 a network reads,
// into x (as long), spread over the threads when there are many.
func widen(x []float32, bytes []byte) {
	parts := max(1, min(runtime.GOMAXPROCS(0), len(bytes)/widenPart))
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := len(bytes)*p/parts, len(bytes)*(p+1)/parts
		if p == parts-1 {
			widenRange(x[lo:hi], bytes[lo:hi])
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); widenRange(x[lo:hi], bytes[lo:hi]) }()
	}
	wg.Wait()
}

// widenPart is about the fewest values worth a thread of their own.
const widenPart = 1 << 16

func widenRange(x []float32, bytes []byte) {
	x = x[:len(bytes)]
	for i, v := range bytes {
		x[i] = float32(v)
	}
}

// Release frees a network.
func (s *Session) Release(handle string) error {
	s.mu.Lock()
	l, ok := s.handles[handle]
	if ok {
		delete(s.handles, handle)
	}
	s.mu.Unlock()
	if !ok {
		return s.refuse(ErrUnknownHandle)
	}
	s.free(l)
	return nil
}

func (s *Session) free(l *loaded) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.wbytes
	for _, c := range l.infs {
		c.inf.Close()
		n += c.bytes
	}
	l.infs = nil
	s.refund(n)
}

// Close releases everything the run loaded; later calls fail with
// ErrClosed. It waits for calls in flight on each network.
func (s *Session) Close() {
	s.cancel()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	handles := s.handles
	s.handles = map[string]*loaded{}
	s.mu.Unlock()
	for _, l := range handles {
		s.free(l)
	}
}
