package sandbox

import (
	"io"
	"sync"
)

// Bounds of what the judge holds of a plugin's stdout or stderr before
// go-plugin reads it.
const (
	// outputPending is how much unread output one stream may hold; past
	// it, output is dropped rather than the plugin (or the copier feeding
	// the stream) made to wait.
	outputPending = 256 << 10
	// outputLine is the longest line go-plugin is handed: its stdout
	// scanner stops for good at 64 KiB, after which nothing reads the
	// stream and the plugin, or Docker's copier, blocks on it for ever.
	outputLine = 16 << 10
)

// outputPipe carries one output stream of a sandboxed plugin to go-plugin.
// Writes never block: they split lines longer than outputLine and drop
// what does not fit in outputPending. Reads end when the writer is closed
// (the stream ended) or the pipe is closed (the sandbox ended).
type outputPipe struct {
	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	line    int // length of the current line so far
	dropped int64
	// writeClosed: no more output will come; readClosed: nobody reads.
	writeClosed, readClosed bool
}

func newOutputPipe() *outputPipe {
	p := &outputPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// Write keeps what fits of b, splitting long lines, and never blocks.
func (p *outputPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.readClosed || p.writeClosed {
		return len(b), nil
	}
	for i, c := range b {
		if len(p.buf) >= outputPending {
			p.dropped += int64(len(b) - i)
			break
		}
		if c == '\n' {
			p.line = 0
		} else if p.line++; p.line > outputLine {
			p.buf = append(p.buf, '\n')
			p.line = 1
			if len(p.buf) >= outputPending {
				p.dropped++
				continue
			}
		}
		p.buf = append(p.buf, c)
	}
	p.cond.Broadcast()
	return len(b), nil
}

// CloseWrite marks the end of the stream: readers get what is left, then
// io.EOF.
func (p *outputPipe) CloseWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writeClosed = true
	p.cond.Broadcast()
}

// Read implements io.Reader.
func (p *outputPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.writeClosed && !p.readClosed {
		p.cond.Wait()
	}
	if len(p.buf) == 0 || p.readClosed {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = nil // let the backing array go between bursts
	}
	return n, nil
}

// Close ends the stream for its reader at once, dropping what is unread.
func (p *outputPipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readClosed = true
	p.buf = nil
	p.cond.Broadcast()
	return nil
}

// Dropped is how many bytes did not fit.
func (p *outputPipe) Dropped() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// drainInto copies src into p until src ends, then closes p for writing.
func drainInto(p *outputPipe, src io.Reader) {
	defer p.CloseWrite()
	_, _ = io.Copy(p, src)
}
