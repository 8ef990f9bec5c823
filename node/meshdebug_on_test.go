//go:build meshdebug

package node

// meshDebug says the test binary was built with the meshdebug tag, whose
// stream checks (loop/debug_on.go) allocate: the allocation pins skip.
const meshDebug = true
