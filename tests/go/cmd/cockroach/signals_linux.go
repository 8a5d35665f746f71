// Copyright: crdb.tls contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

package main

import (
	"os/signal"
	"runtime"
	"syscall"
	"unsafe"
)

// Who sent a signal: Go's os/signal does not say, and the tests check that
// the reload came from the process owner. So the main goroutine is locked to
// the main thread (the thread group leader), blocks SIGHUP, SIGTERM and
// SIGINT there and takes them with rt_sigtimedwait, which returns the
// sender's pid and uid. The signals' disposition is SIG_IGN, so that if one
// ever reaches another thread it is dropped instead of killing the process;
// while the leader waits in rt_sigtimedwait the kernel hands it the signal.

func init() {
	runtime.LockOSThread()
}

var waited = []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT}

func sigset() uint64 {
	var set uint64
	for _, s := range waited {
		set |= 1 << (uint(s) - 1)
	}
	return set
}

// blockSignals must run on the locked main thread before anything else.
func blockSignals() error {
	for _, s := range waited {
		signal.Ignore(s)
	}
	set := sigset()
	const sigBlock = 0
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, sigBlock, uintptr(unsafe.Pointer(&set)), 0, 8, 0, 0); errno != 0 {
		return errno
	}
	return nil
}

type sigInfo struct {
	Signo int32
	Errno int32
	Code  int32
	_     int32
	Pid   int32
	UID   uint32
	_     [112]byte
}

// waitSignal blocks (on the main thread) until one of the signals arrives.
func waitSignal() (syscall.Signal, int, int) {
	set := sigset()
	for {
		var info sigInfo
		r, _, errno := syscall.Syscall6(syscall.SYS_RT_SIGTIMEDWAIT, uintptr(unsafe.Pointer(&set)),
			uintptr(unsafe.Pointer(&info)), 0, 8, 0, 0)
		if errno == syscall.EINTR || errno == syscall.EAGAIN {
			continue
		}
		if errno != 0 {
			panic("rt_sigtimedwait: " + errno.Error())
		}
		return syscall.Signal(r), int(info.Pid), int(info.UID)
	}
}

// signalName is Go's name for the signal (syscall.Signal.String()).
func signalName(s syscall.Signal) string { return s.String() }
