// Command engine-flood tries to make the Engine buffer what no handler
// will ever see: it opens more connections to the Engine's socket than
// the one a run gets, and on its connection opens stream after stream,
// each announcing a 64 MiB message and sending all of it but the last
// byte. Unchecked, four connections took the judge's heap from 2 MiB to
// 2 GiB in 2.2 s.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
	"github.com/hackarena/hackarena/plugins/hostile/internal/rawengine"
)

const (
	streams  = 16
	announce = 64 << 20
)

func main() {
	rawengine.Serve("engine-flood", func(ctx context.Context, e *rawengine.Engine) error {
		path, err := e.SocketPath()
		if err != nil {
			return err
		}
		conn, err := net.Dial("unix", path)
		if err != nil {
			return err
		}
		defer conn.Close()
		sent, reset := flood(conn, 6*time.Second)
		attack.Report("streams_reset", reset)
		attack.Report("mib_sent", sent>>20)
		// Once this connection is being served, try for more.
		refusedConns := 0
		for range 8 {
			if extra, err := net.Dial("unix", path); err != nil {
				refusedConns++
			} else {
				extra.Close()
			}
		}
		attack.Report("extra_conns_refused", refusedConns)
		<-ctx.Done() // hold everything until the run ends
		return ctx.Err()
	})
}

// flood speaks HTTP/2 on conn: a stream per call, Load and Run in turn,
// each announcing announce bytes and sending all but the last, as fast
// as the engine's flow-control windows allow, for d.
func flood(conn net.Conn, d time.Duration) (sent int64, reset int) {
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		return 0, 0
	}
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	connWindow := int64(65535)
	windows := map[uint32]int64{}
	dead := map[uint32]bool{}
	streamInit := int64(65535)
	go func() {
		for {
			f, err := fr.ReadFrame()
			mu.Lock()
			if err != nil {
				connWindow = -1 << 62
				cond.Broadcast()
				mu.Unlock()
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
						streamInit = int64(v)
					}
					fr.WriteSettingsAck()
				}
			case *http2.WindowUpdateFrame:
				if f.StreamID == 0 {
					connWindow += int64(f.Increment)
				} else {
					windows[f.StreamID] += int64(f.Increment)
				}
			case *http2.RSTStreamFrame:
				dead[f.StreamID] = true
				reset++
			case *http2.PingFrame:
				if !f.IsAck() {
					fr.WritePing(true, f.Data)
				}
			case *http2.GoAwayFrame:
				connWindow = -1 << 62
			}
			cond.Broadcast()
			mu.Unlock()
		}
	}()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	stop := time.Now().Add(d)
	chunk := make([]byte, 16<<10)
	for i := 0; i < streams && time.Now().Before(stop); i++ {
		id := uint32(2*i + 1)
		method := "/hackarena.engine.v1.Engine/Run"
		if i%4 == 0 {
			method = "/hackarena.engine.v1.Engine/Load"
		}
		hbuf.Reset()
		for _, h := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "engine"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
		}
		mu.Lock()
		windows[id] = streamInit
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true})
		mu.Unlock()
		if err != nil {
			break
		}
		var prefix [5]byte
		binary.BigEndian.PutUint32(prefix[1:], announce)
		left := int64(announce + 5 - 1)
		first := true
		for left > 0 && time.Now().Before(stop) {
			mu.Lock()
			for !dead[id] && connWindow >= 0 && (connWindow == 0 || windows[id] == 0) && time.Now().Before(stop) {
				waitFor(cond, 100*time.Millisecond)
			}
			if dead[id] || connWindow < 0 || !time.Now().Before(stop) {
				mu.Unlock()
				break
			}
			n := min(int64(len(chunk)), left, connWindow, windows[id])
			buf := chunk[:n]
			if first {
				copy(buf, prefix[:])
				first = false
			}
			err := fr.WriteData(id, false, buf)
			connWindow -= n
			windows[id] -= n
			mu.Unlock()
			if err != nil {
				return sent, reset
			}
			sent += n
			left -= n
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return sent, reset
}

// waitFor waits on c (whose lock the caller holds) for at most d.
func waitFor(c *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, c.Broadcast)
	c.Wait()
	t.Stop()
}
