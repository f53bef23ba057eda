package sandbox

import (
	"encoding/binary"
	"os"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// Classic BPF opcodes and seccomp return values (linux/filter.h,
// linux/seccomp.h).
const (
	bpfLdAbs  = 0x20 // BPF_LD | BPF_W | BPF_ABS
	bpfJeq    = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfJge    = 0x35 // BPF_JMP | BPF_JGE | BPF_K
	bpfJset   = 0x45 // BPF_JMP | BPF_JSET | BPF_K
	bpfRet    = 0x06 // BPF_RET | BPF_K
	retAllow  = 0x7fff0000
	retErrno  = 0x00050000
	retKill   = 0x80000000 // SECCOMP_RET_KILL_PROCESS
	archAMD64 = 0xc000003e // AUDIT_ARCH_X86_64
	x32Bit    = 0x40000000

	offNr   = 0
	offArch = 4
	offArg0 = 16 // low 32 bits of args[0] on little-endian
)

// deniedSyscalls fail with EPERM inside the bubblewrap sandbox: kernel
// keyrings, io_uring (a large attack surface that bypasses seccomp
// argument checks), tracing other processes, (un)mounting and namespace
// tricks, loading kernel code, and other host-level operations.
var deniedSyscalls = map[string]uint32{
	"add_key": 248, "request_key": 249, "keyctl": 250,
	"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
	"ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
	"mount": 165, "umount2": 166, "pivot_root": 155, "open_tree": 428, "move_mount": 429,
	"fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
	"unshare": 272, "setns": 308,
	"reboot": 169, "kexec_load": 246, "kexec_file_load": 320,
	"init_module": 175, "finit_module": 313, "delete_module": 176,
	"bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
	"open_by_handle_at": 304, "name_to_handle_at": 303,
	"swapon": 167, "swapoff": 168, "acct": 163, "syslog": 103,
	"settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305,
}

// Syscalls checked by argument.
const (
	sysSocket = 41
	sysClone  = 56
	sysClone3 = 435

	afALG   = 38
	afVSOCK = 40

	// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
	cloneNewMask = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

type sockFilter struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

// seccompBPF is the compiled filter; it is the same for every run.
var seccompBPF = seccompProgram()

// seccompProgram is the filter bubblewrap loads (--seccomp): x86-64 only,
// the denied syscalls fail with EPERM, sockets of the VSOCK and ALG
// families and clones into new namespaces too, clone3 (whose flags a
// classic filter cannot read) reports ENOSYS so runtimes fall back to
// clone, and everything else is allowed.
func seccompProgram() []byte {
	eperm := uint32(retErrno | uint32(syscall.EPERM))
	p := []sockFilter{
		{bpfLdAbs, 0, 0, offArch},
		{bpfJeq, 1, 0, archAMD64},
		{bpfRet, 0, 0, retKill},
		{bpfLdAbs, 0, 0, offNr},
		{bpfJge, 0, 1, x32Bit},
		{bpfRet, 0, 0, eperm},
	}
	for _, nr := range sortedDenied() {
		p = append(p, sockFilter{bpfJeq, 0, 1, nr}, sockFilter{bpfRet, 0, 0, eperm})
	}
	p = append(p,
		sockFilter{bpfJeq, 0, 1, sysClone3},
		sockFilter{bpfRet, 0, 0, retErrno | uint32(syscall.ENOSYS)},
		// socket(family, ...): the jump skips the 6 instructions of the
		// block when the call is not socket.
		sockFilter{bpfJeq, 0, 6, sysSocket},
		sockFilter{bpfLdAbs, 0, 0, offArg0},
		sockFilter{bpfJeq, 0, 1, afVSOCK},
		sockFilter{bpfRet, 0, 0, eperm},
		sockFilter{bpfJeq, 0, 1, afALG},
		sockFilter{bpfRet, 0, 0, eperm},
		sockFilter{bpfRet, 0, 0, retAllow},
		// clone(flags, ...): no new namespaces.
		sockFilter{bpfJeq, 0, 4, sysClone},
		sockFilter{bpfLdAbs, 0, 0, offArg0},
		sockFilter{bpfJset, 0, 1, cloneNewMask},
		sockFilter{bpfRet, 0, 0, eperm},
		sockFilter{bpfRet, 0, 0, retAllow},
		sockFilter{bpfRet, 0, 0, retAllow},
	)
	out := make([]byte, 0, 8*len(p))
	for _, f := range p {
		out = binary.LittleEndian.AppendUint16(out, f.code)
		out = append(out, f.jt, f.jf)
		out = binary.LittleEndian.AppendUint32(out, f.k)
	}
	return out
}

// sortedDenied keeps the program identical from run to run.
func sortedDenied() []uint32 {
	out := make([]uint32, 0, len(deniedSyscalls))
	for _, nr := range deniedSyscalls {
		out = append(out, nr)
	}
	slices.Sort(out)
	return out
}

// seccompFile holds the compiled filter in a memory file, positioned at
// its start, for bwrap to read from an inherited fd. It touches no
// filesystem: a plugin that fills a directory cannot make another run's
// setup fail.
func seccompFile() (*os.File, error) {
	fd, err := unix.MemfdCreate("hackarena-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, setupError("write seccomp filter", err)
	}
	f := os.NewFile(uintptr(fd), "hackarena-seccomp")
	if _, err := f.Write(seccompBPF); err != nil {
		f.Close()
		return nil, setupError("write seccomp filter", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, setupError("write seccomp filter", err)
	}
	return f, nil
}
