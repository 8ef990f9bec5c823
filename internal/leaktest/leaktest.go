// Package leaktest holds the goroutine-leak check every package's tests run
// at exit, with the one exception the whole module shares: gnet's worker
// pool (ants) starts two goroutines when its package loads, for the life of
// the process.
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// Options are the goleak options shared by the module's tests.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	}
}

// VerifyTestMain runs the tests and then fails if any goroutine is left.
func VerifyTestMain(m *testing.M) { goleak.VerifyTestMain(m, Options()...) }
