//go:build !meshdebug

package node

const meshDebug = false
