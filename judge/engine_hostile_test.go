package judge

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hackarena/hackarena/gpu"
)

// engineAttack is a hostile plugin that attacks the Engine (table in
// docs/security.md): how its run must end, and what it must have seen.
type engineAttack struct {
	plugin  string
	reason  string
	message string
	// observed are "observed key=value" lines the plugin must log.
	observed map[string]string
}

var engineAttacks = []engineAttack{
	{plugin: "engine-overflow", reason: ReasonCrashed, message: "the Engine refused its request (network: input shape [4294967296 4294967296 1]",
		observed: map[string]string{"load_code": "InvalidArgument", "run_code": "InvalidArgument"}},
	{plugin: "engine-flood", reason: ReasonTimeout, message: "wall-time limit",
		// 16 streams of 64 MiB messages, all but one byte each: 4 calls
		// admitted (one Load), 12 refused before a byte is buffered.
		observed: map[string]string{"extra_conns_refused": "8", "streams_reset": "12"}},
	{plugin: "engine-compute", reason: ReasonTimeout, message: "wall-time limit"},
	{plugin: "engine-onnx", reason: ReasonCrashed, message: `node "/act" (LeakyRelu, opset 17): LeakyRelu is not an operator the Engine has`,
		observed: map[string]string{"cycle_code": "InvalidArgument", "bomb_code": "InvalidArgument", "stride_code": "InvalidArgument",
			"huge_code": "InvalidArgument", "garbage_code": "InvalidArgument", "op_code": "InvalidArgument",
			"cycle_fast": "true", "bomb_fast": "true", "stride_fast": "true", "huge_fast": "true", "garbage_fast": "true", "op_fast": "true"}},
	{plugin: "engine-npz-bomb", reason: ReasonMemory, message: "MiB of weights needs 512.1 MiB, over this slot's memory budget of 384.0 MiB",
		observed: map[string]string{"load_code": "ResourceExhausted"}},
}

// engineCPU is the CPU time, user and system, the processes have used.
func engineCPU(t *testing.T, pids map[string]int) time.Duration {
	t.Helper()
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatalf("engine process %d: %v", pid, err)
		}
		// Fields after the command name, which is in parentheses.
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		utime, _ := strconv.Atoi(fields[11])
		stime, _ := strconv.Atoi(fields[12])
		total += time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
	}
	return total
}

// TestEngineAttacksFailOnlyTheirRun submits each Engine attack in each
// sandbox while another team's network scores on the other slot: the
// attack's run ends with its own reason, the judge (this process) is
// unharmed, heap and goroutines flat, and no engine CPU is spent after
// the attack's deadline plus the grace.
func TestEngineAttacksFailOnlyTheirRun(t *testing.T) {
	ch := loadMNIST(t)
	victim := buildPlugin(t, "mnist-mlp")
	const wall = 8 * time.Second
	for _, a := range engineAttacks {
		plugin := buildPlugin(t, "hostile/"+a.plugin)
		for name, sb := range backends(t) {
			t.Run(a.plugin+"/"+name, func(t *testing.T) {
				pool := newPool(t, 2, 768<<20, false)
				attacker := newEvaluatorOn(t, sb, wall)
				attacker.Engines = pool
				honest := newEvaluatorOn(t, sb, 5*time.Minute)
				honest.Engines = pool
				pid := os.Getpid()
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				goroutines := runtime.NumGoroutine()

				var wg sync.WaitGroup
				var attackErr, victimErr error
				var attackLog string
				var deadline time.Time
				wg.Add(2)
				go func() {
					defer wg.Done()
					deadline = time.Now().Add(wall)
					_, _, attackLog, attackErr = attacker.Evaluate(context.Background(), "attacker", plugin, ch)
				}()
				go func() {
					defer wg.Done()
					// Starts once the attack holds its slot.
					for pool.Stats().Free == 2 {
						time.Sleep(5 * time.Millisecond)
					}
					_, _, _, victimErr = honest.Evaluate(context.Background(), "victim", victim, ch)
				}()
				wg.Wait()

				var f *Failure
				if !errors.As(attackErr, &f) || f.Reason != a.reason || !strings.Contains(f.Msg, a.message) {
					t.Errorf("attack ended with %v, want %s mentioning %q\n%s", attackErr, a.reason, a.message, attackLog)
				}
				obs := observations(attackLog)
				for k, v := range a.observed {
					if obs[k] != v {
						t.Errorf("the plugin observed %s=%q, want %q", k, obs[k], v)
					}
				}
				t.Logf("attack: %v; observed %v", attackErr, obs)
				if victimErr != nil {
					t.Errorf("another team's run beside the attack: %v", victimErr)
				}
				if os.Getpid() != pid {
					t.Fatal("the judge's pid changed")
				}

				// Both slots are lent again once their processes answer.
				for end := time.Now().Add(30 * time.Second); pool.Stats().Free != 2 && time.Now().Before(end); {
					time.Sleep(10 * time.Millisecond)
				}
				if s := pool.Stats(); s.Free != 2 {
					t.Fatalf("after the runs %d of 2 slots are free", s.Free)
				}
				// No CPU for the run after its deadline plus the grace.
				time.Sleep(time.Until(deadline.Add(gpu.DefaultEngineGrace)))
				pids := pool.PIDs()
				cpu0 := engineCPU(t, pids)
				time.Sleep(time.Second)
				if spent := engineCPU(t, pids) - cpu0; spent > 100*time.Millisecond {
					t.Errorf("the engine processes spent %s of CPU in the second after the run's deadline plus the grace", spent)
				}

				for end := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines+5 && time.Now().Before(end); {
					time.Sleep(20 * time.Millisecond)
				}
				if n := runtime.NumGoroutine(); n > goroutines+5 {
					t.Errorf("the judge has %d goroutines after the runs, %d before", n, goroutines)
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
					t.Errorf("the judge's heap grew by %d MiB during the runs", grew>>20)
				}
			})
		}
	}
}

// TestKilledEngineProcessFailsOnlyItsRun kills the engine process by hand
// while a network runs on it: that run fails as the platform's failure,
// the slot comes back with a new process, and the next submission scores.
func TestKilledEngineProcessFailsOnlyItsRun(t *testing.T) {
	ch := loadMNIST(t)
	slow, fast := buildPlugin(t, "mnist-cnn"), buildPlugin(t, "mnist-mlp")
	e := newEvaluator(t, 5*time.Minute)
	pool := withEngine(t, e, 1, 2<<30)
	var old int
	for _, pid := range pool.PIDs() {
		old = pid
	}
	done := make(chan error, 1)
	go func() {
		_, _, _, err := e.Evaluate(context.Background(), "team", slow, ch)
		done <- err
	}()
	// Once the engine is computing for the run, kill it.
	cpu0 := engineCPU(t, map[string]int{"": old})
	for end := time.Now().Add(time.Minute); engineCPU(t, map[string]int{"": old})-cpu0 < 300*time.Millisecond; {
		if time.Now().After(end) {
			t.Fatal("the engine never started computing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var f *Failure
	if !errors.As(err, &f) || f.Reason != ReasonInternal || !strings.Contains(f.Msg, "signal: killed") || !strings.Contains(f.Msg, "not the plugin's") {
		t.Fatalf("the run on the killed engine ended with %v, want an internal failure naming the kill", err)
	}
	if _, _, _, err := e.Evaluate(context.Background(), "team", fast, ch); err != nil {
		t.Fatalf("the next submission: %v", err)
	}
	for _, pid := range pool.PIDs() {
		if pid == old {
			t.Error("the killed process still serves the slot")
		}
	}
}
