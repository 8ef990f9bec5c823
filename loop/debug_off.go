//go:build !meshdebug

package loop

import (
	"crypto/tls"
	"net"
)

// The stream checks of debug_on.go (build tag meshdebug) cost nothing here:
// the state is empty and every hook an empty method the compiler inlines.

// connDebug is a conn's state for the meshdebug checks: none here.
type connDebug struct{}

func dbgWrapConn(nc net.Conn) net.Conn                  { return nc }
func dbgConfig(cfg *tls.Config, _ net.Conn) *tls.Config { return cfg }
func (c *Conn) dbgDetached(nc net.Conn) net.Conn        { return nc }
func (c *Conn) dbgOpen()                                { _ = c.dbg }
func (c *Conn) dbgClose()                               {}
func (c *Conn) swapOutput(spare []byte) []byte          { return c.ad.SwapOutput(spare) }
func (c *Conn) dbgHanded(path string, b []byte)         {}
func (c *Conn) dbgGnetWrote()                           {}
func (c *Conn) dbgGnetEmpty()                           {}
func (c *Conn) dbgBesideGnet()                          {}
func (c *Conn) dbgWriteEnter(path string)               {}
func (c *Conn) dbgWriteLeave()                          {}
func (c *Conn) dbgTokenHeld(where string)               {}
func (c *Conn) dbgReadEnter(onLoop bool)                {}
func (c *Conn) dbgReadLeave()                           {}
func (c *Conn) dbgFed(onLoop bool, in []byte)           {}
func (c *Conn) dbgReadFailed(onLoop bool, err error)    {}
func (c *Conn) dbgUnread() int                          { return 0 }
func (c *Conn) dbgFedDone(onLoop bool)                  {}
func (c *Conn) dbgDrained(onLoop bool)                  {}
func (c *Conn) dbgUnreadSame(want int, after string)    {}
