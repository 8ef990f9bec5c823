//go:build race

package examples_test

// raceEnabled says the test binary was built with -race, so the examples are
// too: their dependencies are then already compiled in the build cache.
const raceEnabled = true
