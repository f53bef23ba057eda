package gpu

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Slot is a share of one device: a memory budget that the networks and
// activations of one run are charged against, and a compute share (the
// fraction of the device this slot stands for).
type Slot struct {
	Device       Device
	Index        int
	MemoryBudget int64
	ComputeShare float64
}

func (s *Slot) String() string { return fmt.Sprintf("%s slot %d", s.Device, s.Index) }

// Allocator lends slots to runs. Waiting runs are served fairly: teams
// take turns, and each team's runs go in arrival order, so one team with
// many queued submissions cannot hold every slot.
type Allocator struct {
	mu    sync.Mutex
	free  []*Slot
	total int
	// teams holds the teams with waiting runs, in turn order.
	teams   []string
	waiting map[string][]*waiter

	busy *prometheus.GaugeVec
	wait prometheus.Histogram
}

type waiter struct {
	team  string
	ready chan *Slot // buffered: a hand-over never blocks the releaser
}

// ErrNoSlots is returned by NewAllocator for a configuration that would
// make every run wait forever.
var ErrNoSlots = errors.New("the engine has no slots: give slots per device ≥ 1")

// NewAllocator splits each device into slotsPerDevice equal slots and
// registers its gauges with reg (nil registers nothing).
func NewAllocator(devices []Device, slotsPerDevice int, reg prometheus.Registerer) (*Allocator, error) {
	if slotsPerDevice < 1 || len(devices) == 0 {
		return nil, ErrNoSlots
	}
	a := &Allocator{
		waiting: map[string][]*waiter{},
		busy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hackarena_engine_slots_busy", Help: "Engine slots lent to a run, per device.",
		}, []string{"device"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hackarena_engine_slot_wait_seconds", Help: "Time a run waited for an engine slot.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	for _, d := range devices {
		a.busy.WithLabelValues(deviceLabel(d)).Set(0)
		for i := 0; i < slotsPerDevice; i++ {
			a.free = append(a.free, &Slot{Device: d, Index: i, MemoryBudget: d.MemoryBytes / int64(slotsPerDevice), ComputeShare: 1 / float64(slotsPerDevice)})
		}
	}
	a.total = len(a.free)
	if reg != nil {
		for _, c := range []prometheus.Collector{a.busy, a.wait} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register engine metrics: %w", err)
			}
		}
	}
	return a, nil
}

func deviceLabel(d Device) string { return d.Kind + ":" + strconv.Itoa(d.Index) }

// Lease is a borrowed slot. Release gives it back; it is safe to call more
// than once, and a run must call it however it ends.
type Lease struct {
	a    *Allocator
	slot *Slot
	once sync.Once
}

// Slot is the borrowed slot.
func (l *Lease) Slot() *Slot { return l.slot }

// Release returns the slot to the allocator.
func (l *Lease) Release() { l.once.Do(func() { l.a.put(l.slot) }) }

// Acquire waits for a free slot for team. It returns ctx's error if ctx
// ends first, and then holds no slot.
func (a *Allocator) Acquire(ctx context.Context, team string) (*Lease, error) {
	start := time.Now()
	a.mu.Lock()
	if len(a.free) > 0 && len(a.teams) == 0 {
		s := a.take()
		a.mu.Unlock()
		a.wait.Observe(time.Since(start).Seconds())
		return &Lease{a: a, slot: s}, nil
	}
	w := &waiter{team: team, ready: make(chan *Slot, 1)}
	if len(a.waiting[team]) == 0 {
		a.teams = append(a.teams, team)
	}
	a.waiting[team] = append(a.waiting[team], w)
	a.mu.Unlock()

	select {
	case s := <-w.ready:
		a.wait.Observe(time.Since(start).Seconds())
		return &Lease{a: a, slot: s}, nil
	case <-ctx.Done():
		a.mu.Lock()
		removed := a.remove(w)
		a.mu.Unlock()
		if !removed {
			// The slot was handed over as ctx ended: pass it on.
			a.put(<-w.ready)
		}
		return nil, fmt.Errorf("wait for an engine slot: %w", ctx.Err())
	}
}

// take pops a free slot; the caller holds mu.
func (a *Allocator) take() *Slot {
	s := a.free[len(a.free)-1]
	a.free = a.free[:len(a.free)-1]
	a.busy.WithLabelValues(deviceLabel(s.Device)).Inc()
	return s
}

// put hands s to the next waiter in turn, or frees it.
func (a *Allocator) put(s *Slot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.teams) == 0 {
		a.busy.WithLabelValues(deviceLabel(s.Device)).Dec()
		a.free = append(a.free, s)
		return
	}
	team := a.teams[0]
	queue := a.waiting[team]
	w := queue[0]
	a.waiting[team] = queue[1:]
	a.teams = a.teams[1:]
	if len(a.waiting[team]) > 0 {
		a.teams = append(a.teams, team)
	} else {
		delete(a.waiting, team)
	}
	w.ready <- s
}

// remove drops a waiter that gave up; false means it was already served.
func (a *Allocator) remove(w *waiter) bool {
	queue := a.waiting[w.team]
	for i, q := range queue {
		if q != w {
			continue
		}
		a.waiting[w.team] = append(queue[:i:i], queue[i+1:]...)
		if len(a.waiting[w.team]) == 0 {
			delete(a.waiting, w.team)
			for j, t := range a.teams {
				if t == w.team {
					a.teams = append(a.teams[:j:j], a.teams[j+1:]...)
					break
				}
			}
		}
		return true
	}
	return false
}

// Stats is a snapshot of the allocator.
type Stats struct {
	Total, Free, Waiting int
}

// Stats reports how many slots exist, are free, and how many runs wait.
func (a *Allocator) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, q := range a.waiting {
		n += len(q)
	}
	return Stats{Total: a.total, Free: len(a.free), Waiting: n}
}
