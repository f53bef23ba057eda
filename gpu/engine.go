package gpu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/hackarena/hackarena/sdk/network"
	"github.com/hackarena/hackarena/sdk/nn"
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

// Session is one run's use of a slot. Everything it loaded is released
// when it closes.
type Session struct {
	engine *Engine
	slot   *Slot
	calls  chan struct{}

	mu         sync.Mutex
	handles    map[string]*loaded
	charged    int64
	overBudget *BudgetError
	closed     bool
	// batch is the judge's current batch of images, which a plugin may
	// name instead of sending them back.
	batch judgeBatch
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
}

// Open starts a run's session on slot.
func (e *Engine) Open(slot *Slot) *Session {
	calls := e.MaxConcurrentCalls
	if calls <= 0 {
		calls = DefaultMaxConcurrentCalls
	}
	return &Session{engine: e, slot: slot, calls: make(chan struct{}, calls), handles: map[string]*loaded{}}
}

// Slot is the slot the session runs on.
func (s *Session) Slot() *Slot { return s.slot }

// Charged is the memory the session holds on its slot.
func (s *Session) Charged() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.charged
}

// OverBudget is the first budget error of the run, or nil: the judge
// reports a run that failed after one as out of memory.
func (s *Session) OverBudget() *BudgetError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overBudget
}

func (s *Session) enter() error {
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
	if s.charged+n > s.slot.MemoryBudget {
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

// Load decodes and checks a network and its .npz weights, charges the
// weights to the slot (each batch size's activations are charged when
// it first runs), and returns a handle.
func (s *Session) Load(ctx context.Context, networkJSON, weightsNPZ []byte) (LoadInfo, error) {
	if err := s.enter(); err != nil {
		return LoadInfo{}, err
	}
	defer s.leave()
	net, err := network.Decode(networkJSON)
	if err != nil {
		return LoadInfo{}, &InputError{err.Error()}
	}
	w, err := network.ReadNPZ(weightsNPZ)
	if err != nil {
		return LoadInfo{}, &InputError{err.Error()}
	}
	if err := net.CheckWeights(w); err != nil {
		return LoadInfo{}, &InputError{err.Error()}
	}
	if err := ctx.Err(); err != nil {
		return LoadInfo{}, err
	}
	l := &loaded{net: net, weights: w, wbytes: w.Bytes()}
	if err := s.charge(fmt.Sprintf("loading a network with %.1f MiB of weights", float64(l.wbytes)/(1<<20)), l.wbytes); err != nil {
		return LoadInfo{}, err
	}
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

// Run computes one batch. shape is [batch, input...] (or [batch, n] with
// n the input's element count); data holds batch × input values.
func (s *Session) Run(ctx context.Context, handle string, shape []int, data []float32) ([]int, []float32, error) {
	if err := s.enter(); err != nil {
		return nil, nil, err
	}
	defer s.leave()
	l, err := s.lookup(handle)
	if err != nil {
		return nil, nil, err
	}
	inSize := 1
	for _, d := range l.net.Input {
		inSize *= d
	}
	if len(shape) < 2 || shape[0] <= 0 {
		return nil, nil, &InputError{fmt.Sprintf("input shape %v: want [batch, %v...] with batch ≥ 1", shape, l.net.Input)}
	}
	rest := 1
	for _, d := range shape[1:] {
		rest *= d
	}
	if rest != inSize || len(data) != shape[0]*inSize {
		return nil, nil, &InputError{fmt.Sprintf("input shape %v with %d values does not fit the network's input %v", shape, len(data), l.net.Input)}
	}
	batch := shape[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	inf, err := s.inference(l, batch)
	if err != nil {
		return nil, nil, err
	}
	out, err := inf.Run(data)
	if err != nil {
		return nil, nil, &InputError{err.Error()}
	}
	outSize := len(out) / batch
	return []int{batch, outSize}, out, nil
}

// inference returns the network compiled for batch, compiling and
// charging it when it is new. The caller holds l.mu.
func (s *Session) inference(l *loaded, batch int) (*nn.Inference, error) {
	for i, c := range l.infs {
		if c.batch == batch {
			l.infs = append(append(l.infs[:i:i], l.infs[i+1:]...), c)
			return c.inf, nil
		}
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
	act, err := l.net.ActivationBytes(batch)
	if err != nil {
		return nil, &InputError{err.Error()}
	}
	if err := s.charge(fmt.Sprintf("a batch of %d examples", batch), act); err != nil {
		return nil, err
	}
	inf, err := nn.NewInference(l.net, l.weights, batch)
	if err != nil {
		s.refund(act)
		return nil, &InputError{err.Error()}
	}
	l.infs = append(l.infs, compiled{batch: batch, inf: inf, bytes: act})
	return inf, nil
}

// SetBatch records the images of the batch the judge is about to send:
// until the next, a run may name it by id (RunBatch).
func (s *Session) SetBatch(id uint64, size int, images []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batch = judgeBatch{id: id, size: size, images: images}
}

// RunBatch runs a network on the images of the judge's current batch.
func (s *Session) RunBatch(ctx context.Context, handle string, id uint64) ([]int, []float32, error) {
	s.mu.Lock()
	b := s.batch
	s.mu.Unlock()
	if id == 0 || id != b.id {
		return nil, nil, &InputError{fmt.Sprintf("batch %d is not the batch being judged: name the ID of the batch Predict was given", id)}
	}
	return s.Run(ctx, handle, []int{b.size, len(b.images) / b.size}, widen(b.images))
}

// widen turns one-byte values (pixels) into the float32 a network reads.
func widen(bytes []byte) []float32 {
	x := make([]float32, len(bytes))
	for i, v := range bytes {
		x[i] = float32(v)
	}
	return x
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
		return ErrUnknownHandle
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
