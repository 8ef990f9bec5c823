//go:build linux && !poll_opt

package loop

import (
	"os"

	"golang.org/x/sys/unix"
)

// gnetReadEvents is what gnet (v2.9.7, level-triggered) registers for a
// conn it reads: ReadEvents in its netpoll package.
const gnetReadEvents = unix.EPOLLIN | unix.EPOLLPRI

// setEvents sets the events gnet's epoll instance watches on its
// descriptor fd (gnet's data word is the descriptor). A taker or holder of
// fd's conn's read duty: the engine closes the instance only after every
// conn's OnClose, which waits for the duty (inline.go, rule 5).
func (w *idleWait) setEvents(fd int, events uint32) error {
	return unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: events})
}

// makeInlineRes makes newInlineRes's resources.
func makeInlineRes(sfd int) (*inlineRes, error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		_ = unix.Close(efd)
		return nil, err
	}
	fail := func(err error) (*inlineRes, error) {
		_ = unix.Close(ep)
		_ = unix.Close(efd)
		return nil, err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, sfd, &unix.EpollEvent{Fd: int32(sfd), Events: unix.EPOLLIN | unix.EPOLLRDHUP}); err != nil {
		return fail(err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Fd: int32(efd), Events: unix.EPOLLIN}); err != nil {
		return fail(err)
	}
	// O_NONBLOCK makes os.NewFile register it with the netpoller.
	if err := unix.SetNonblock(ep, true); err != nil {
		return fail(err)
	}
	f := os.NewFile(uintptr(ep), "inline-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		_ = unix.Close(efd)
		return nil, err
	}
	r := &inlineRes{ep: f, rc: rc, efd: int32(efd), sfd: sfd}
	r.readFn = r.read
	return r, nil
}
