package gpu

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The judge drives each engine process over one SOCK_SEQPACKET socket
// pair: one JSON message per packet, with file descriptors (the plugin's
// accepted connection, the hidden images' shared memory) riding along as
// SCM_RIGHTS. Requests are answered in order; the judge sends one at a
// time per process. A batch is the exception: it is told, not asked (no
// answer), so the judge need not wait a round trip on each batch before
// it asks the plugin; the engine holds a plugin's request for that batch
// until the message has been read (Session.RunBatch).

// Control operations.
const (
	opConfig = "config" // judge → engine: who to be; answered by ready
	opReady  = "ready"
	opOpen   = "open" // a run's session starts; answered by opened
	opOpened = "opened"
	opConn   = "conn"   // the plugin's connection (fd); answered by ok
	opBatch  = "batch"  // the batch being judged; not answered
	opCancel = "cancel" // the run's deadline passed; answered by ok
	opClose  = "close"  // answered by closed, with the session's report
	opClosed = "closed"
	opPing   = "ping"   // answered by ok, with the threads the process uses
	opReport = "report" // answered by ok, with the session's report so far
	opOK     = "ok"
)

// ctlMsg is every control message; each op uses some of the fields.
type ctlMsg struct {
	Op  string `json:"op"`
	Err string `json:"err,omitempty"`
	// Seq numbers a request; its answer carries the same, so an answer
	// that comes after its request timed out is not taken for the next's.
	Seq uint64 `json:"seq,omitempty"`

	// config
	UID, GID  int `json:",omitempty"`
	Threads   int `json:",omitempty"`
	Device    Device
	SlotIndex int `json:",omitempty"`
	Limits    Engine
	// MemoryLimit is the process's hard limit (cgroup or rlimit).
	MemoryLimit int64 `json:",omitempty"`
	// ready
	FLOPS float64 `json:",omitempty"`
	PID   int     `json:",omitempty"`

	// open
	Session  uint64 `json:",omitempty"`
	Budget   int64  `json:",omitempty"`
	Deadline int64  `json:",omitempty"` // unix nanoseconds; 0: none
	Images   int64  `json:",omitempty"` // bytes of the shared images, when an fd rides along

	// batch
	BatchID uint64 `json:",omitempty"`
	Offset  int64  `json:",omitempty"` // bytes into the images
	Count   int    `json:",omitempty"`
	Bytes   int64  `json:",omitempty"`

	// closed
	Report *Report `json:",omitempty"`
}

type ctlConn struct{ c *net.UnixConn }

// maxCtlMsg bounds one control packet; they are a few hundred bytes.
const maxCtlMsg = 64 << 10

// socketPair makes the judge's and the engine's ends of a control socket.
func socketPair() (judgeEnd *ctlConn, engineEnd *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("engine control socket: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "engine-control")
	defer mine.Close()
	c, err := fileCtl(mine)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c, os.NewFile(uintptr(fds[1]), "engine-control"), nil
}

// fileCtl wraps a control socket's file (dup'd; f may be closed after).
func fileCtl(f *os.File) (*ctlConn, error) {
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("engine control socket: %w", err)
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("engine control socket is a %T, not a unix socket", conn)
	}
	return &ctlConn{c: uc}, nil
}

func (c *ctlConn) send(m ctlMsg, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Op, err)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send %s: %w", m.Op, err)
	}
	return nil
}

// errCtlClosed is the other end gone.
var errCtlClosed = errors.New("the engine control socket closed")

// recv reads one message and the files that came with it; a zero
// deadline waits for ever.
func (c *ctlConn) recv(deadline time.Time) (ctlMsg, []*os.File, error) {
	if err := c.c.SetReadDeadline(deadline); err != nil {
		return ctlMsg{}, nil, err
	}
	buf := make([]byte, maxCtlMsg)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return ctlMsg{}, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return ctlMsg{}, nil, fmt.Errorf("control message: %w", err)
		}
		for _, cm := range cmsgs {
			fds, err := unix.ParseUnixRights(&cm)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "engine-fd"))
			}
		}
	}
	if n == 0 && oobn == 0 {
		return ctlMsg{}, nil, errCtlClosed
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeFiles(files)
		return ctlMsg{}, nil, errors.New("control message truncated")
	}
	var m ctlMsg
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeFiles(files)
		return ctlMsg{}, nil, fmt.Errorf("decode control message: %w", err)
	}
	return m, files, nil
}

func (c *ctlConn) Close() error { return c.c.Close() }

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
