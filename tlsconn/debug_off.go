//go:build !meshdebug

package tlsconn

// adapterDebug is the meshdebug build's record of what went through the
// adapter (debug_on.go): nothing here, and the hooks are empty.
type adapterDebug struct{}

func (a *Adapter) dbgWrote(p []byte)   { _ = a.dbg }
func (a *Adapter) dbgSwapped(b []byte) {}
func (a *Adapter) dbgFeed(b []byte)    {}
func (a *Adapter) dbgRead(p []byte)    {}
