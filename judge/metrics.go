package judge

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a judge process's operator series. A nil *Metrics records
// nothing, so workers in tests and `hackctl eval` need none.
type Metrics struct {
	finished *prometheus.CounterVec
	phases   *prometheus.HistogramVec
	fenced   *prometheus.CounterVec
	full     prometheus.Counter
}

// NewMetrics registers the judge's series with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hackarena_submissions_finished_total",
			Help: "Submissions this judge finished, by challenge, final status and reason (empty for scored); only results the store wrote count.",
		}, []string{"challenge", "status", "reason"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hackarena_judge_phase_seconds",
			Help: "How long each phase of a run took: slot_wait (an engine slot), start (sandbox and handshake), judging (every batch and scoring); within judging, outputs_marked or outputs_quiet (the wait for the plugin's start-up output before the first hidden batch: until the SDK's marker passed on each output, or until they fell quiet).",
			// 5 ms to about 10 minutes.
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 14),
		}, []string{"phase"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hackarena_judge_fenced_writes_total",
			Help: "Writes of a run refused because another judge's attempt of the job was current (the run had been taken over), by what was refused.",
		}, []string{"write"}),
		full: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hackarena_judge_disk_full_waits_total",
			Help: "Times a judge waited to keep a judged run's predictions or result because the disk (or Redis's) was full; it keeps the score and tries again.",
		}),
	}
	for _, c := range []prometheus.Collector{m.finished, m.phases, m.fenced, m.full} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register judge metrics: %w", err)
		}
	}
	return m, nil
}

// phaseNames maps the Evaluator's phase names to the metric's.
var phaseNames = map[string]string{"slot_wait": "slot_wait", "start": "start", "judge": "judging",
	"outputs_marked": "outputs_marked", "outputs_quiet": "outputs_quiet"}

// ObservePhase records one phase of a run (the Evaluator's Phase hook).
func (m *Metrics) ObservePhase(name string, d time.Duration) {
	if m == nil {
		return
	}
	if n, ok := phaseNames[name]; ok {
		m.phases.WithLabelValues(n).Observe(d.Seconds())
	}
}

func (m *Metrics) finishedOne(challenge, status, reason string) {
	if m != nil {
		m.finished.WithLabelValues(challenge, status, reason).Inc()
	}
}

func (m *Metrics) fencedWrite(write string) {
	if m != nil {
		m.fenced.WithLabelValues(write).Inc()
	}
}

func (m *Metrics) diskFull() {
	if m != nil {
		m.full.Inc()
	}
}
