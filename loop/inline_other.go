//go:build !linux || poll_opt

package loop

import "syscall"

// Inline reading needs epoll (inline_linux.go), and gnet's
// default epoll poller, whose data word is the descriptor (its poll_opt
// build keeps a pointer there, which an EPOLL_CTL_MOD of ours would
// break): elsewhere setEvents fails, so no duty is ever taken.

const gnetReadEvents = 0

func (w *idleWait) setEvents(int, uint32) error { return syscall.ENOTSUP }

func makeInlineRes(int) (*inlineRes, error) { return nil, syscall.ENOTSUP }
