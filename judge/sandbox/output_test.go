package sandbox

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzOutputPipe: whatever a plugin writes, in whatever pieces, go-plugin
// reads it back with no line longer than outputLine, and with only
// newlines added, until the pending bound.
func FuzzOutputPipe(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint16(3))
	f.Add(bytes.Repeat([]byte{'y'}, 3*outputLine+7), uint16(5000))
	f.Fuzz(func(t *testing.T, data []byte, piece uint16) {
		p := newOutputPipe()
		step := int(piece)%4096 + 1
		for off := 0; off < len(data); off += step {
			if _, err := p.Write(data[off:min(off+step, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		p.CloseWrite()
		got, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(got), "\n") {
			if len(line) > outputLine {
				t.Fatalf("a line of %d bytes reached go-plugin", len(line))
			}
		}
		if stripped := bytes.ReplaceAll(got, []byte("\n"), nil); !bytes.HasPrefix(bytes.ReplaceAll(data, []byte("\n"), nil), stripped) {
			t.Fatal("the pipe changed the plugin's bytes")
		}
		if int64(len(got))+p.Dropped() < int64(len(data)) {
			t.Fatalf("%d bytes read and %d dropped of %d written", len(got), p.Dropped(), len(data))
		}
	})
}

// TestOutputPipeNeverBlocksTheWriter: a writer far ahead of a reader that
// never reads is not held, and Close ends the reader at once.
func TestOutputPipeNeverBlocksTheWriter(t *testing.T) {
	p := newOutputPipe()
	chunk := bytes.Repeat([]byte{'z'}, 1<<20)
	for i := 0; i < 64; i++ {
		if n, err := p.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("write %d: %d %v", i, n, err)
		}
	}
	if p.Dropped() < 63<<20 {
		t.Fatalf("%d bytes dropped of 64 MiB written to a pipe nobody reads; want all but the pending bound", p.Dropped())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.ReadAll(p)
	}()
	p.Close()
	<-done
}
