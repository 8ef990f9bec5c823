package bench

import (
	"log/slog"
	"os"
)

// quietLogger is the benchmarks' nodes' logger: warnings and errors only,
// so that a node's INFO lines (peer up, peer down) do not land between,
// or inside, the benchmark's result lines that benchstat reads.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
