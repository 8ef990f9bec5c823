//go:build linux && !poll_opt

package loop

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// gnetReadEvents is what gnet (v2.9.7, level-triggered) registers for a
// conn it reads: ReadEvents in its netpoll package.
const gnetReadEvents = unix.EPOLLIN | unix.EPOLLPRI

// setEvents sets the events gnet's epoll instance watches on its
// descriptor fd (gnet's data word is the descriptor). A taker or holder of
// fd's conn's read duty: the engine closes the instance only after every
// conn's OnClose, which waits for the duty (inline.go, rule 5). (x/sys
// makes epoll_ctl without the runtime's syscall entry already: it never
// blocks; see package nbio.)
func (w *idleWait) setEvents(fd int, events uint32) error {
	w.epollCtls.Add(1)
	return unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: events})
}

// makeInlineRes makes newInlineRes's duplicate. O_NONBLOCK, which the
// duplicate shares with gnet's descriptor, makes os.NewFile register it
// with Go's netpoller.
func makeInlineRes(sfd int) (*inlineRes, error) {
	fd, err := unix.FcntlInt(uintptr(sfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if !nonBlocking(fd) { // a holder's reads are raw (package nbio)
		_ = unix.Close(fd)
		return nil, errBlockingSocket
	}
	f := os.NewFile(uintptr(fd), "inline-socket")
	// A file the netpoller did not take (its watches are used up) takes no
	// deadline: a holder could not wait on it.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	r := &inlineRes{sock: f, rc: rc, fd: fd}
	r.readFn = r.read
	return r, nil
}
