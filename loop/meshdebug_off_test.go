//go:build !meshdebug

package loop

const meshDebug = false
