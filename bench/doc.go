// Package bench holds Mesh's benchmark suites (local, remote, codec,
// registry), each with an in-run baseline so results can be compared as
// ratios on a noisy machine. Run them with `make bench` and compare runs with
// benchstat.
package bench
