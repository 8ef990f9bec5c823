// Command meshbench runs load against Mesh nodes and reports what they carry.
//
// Usage:
//
//	meshbench                 a short cluster run on 127.0.0.1: the table a newcomer sees
//	meshbench run [flags]     the same, with flags (see meshbench run -h)
//	meshbench bench --scenario throughput|latency|call|spawn|registry|fanout [flags]
//	meshbench node --name n@host:port [--cookie-file F | MESH_COOKIE] [--metrics-addr ADDR] [--connect PEER]
//	meshbench compare [flags] Mesh side by side with a raw crypto/tls pipe and Erlang/OTP distribution
//
// Exit codes: 0 success (and -h), 1 a failed run, 2 a usage error, 130 a run
// interrupted by Ctrl-C (after printing the figures so far).
//
// `meshbench run` starts three `meshbench node` processes of this same
// program on 127.0.0.1 (TLS, ephemeral ports, a random cookie handed over in
// the environment), connects a controller node to them, and runs each
// scenario in turn, printing one table: messages (or operations) per
// second, MB/s, latency percentiles from an HdrHistogram holding every
// sample, and errors. `meshbench bench` runs one scenario with every knob;
// `--json` prints one JSON object instead of the table.
//
// `meshbench node` serves the actors that bench and run drive (see package
// internal/nodeproc) until SIGINT or SIGTERM; with --metrics-addr it serves
// Prometheus /metrics and /debug/pprof/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(mainExit(os.Args[1:])) }

// errInterrupted is returned by a run that ended on Ctrl-C (or SIGTERM)
// after printing its figures so far: exit status 130.
var errInterrupted = errors.New("interrupted")

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// mainExit runs the command line args and returns the process's exit code.
func mainExit(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return exitCode(run(ctx, args, os.Stdin, os.Stdout, os.Stderr), os.Stderr)
}

// exitCode maps run's error to the exit status, printing it when it is one.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errInterrupted):
		return 130
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "meshbench: %v\n(meshbench -h for usage)\n", err)
		return 2
	default:
		fmt.Fprintln(stderr, "meshbench:", err)
		return 1
	}
}

const usage = `usage: meshbench [command] [flags]

commands:
  run      (the default) a short cluster run: three node processes on 127.0.0.1, TLS,
           one table of throughput, latency, calls, remote spawn, registry and fan-out
  bench    one scenario with every knob: --scenario throughput|latency|call|spawn|registry|fanout
           [--senders N] [--payload BYTES] [--duration D] [--nodes N] [--procs]
           [--peers a@h:p,...] [--json] [--cpuprofile F]
  node     a node process serving the meshbench actors until SIGINT/SIGTERM:
           --name n@host:port [--cookie-file F | MESH_COOKIE] [--metrics-addr ADDR] [--connect PEER]
  compare  Mesh side by side with a raw crypto/tls pipe and Erlang/OTP distribution
           (plain and TLS, when erl is installed), one workload, one table

meshbench <command> -h shows a command's flags.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return runDefault(ctx, nil, stdout, stderr)
	}
	switch args[0] {
	case "run":
		return runDefault(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "node":
		return runNode(ctx, args[1:], stdin, stdout, stderr)
	case "compare":
		return runCompare(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return flag.ErrHelp
	default:
		return usagef("unknown command %q (commands: run, bench, node, compare)", args[0])
	}
}

// parseFlags parses args with fs, refusing stray arguments. -h prints the
// usage on stdout and returns flag.ErrHelp; a bad flag is a usage error.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, "usage: meshbench %s [flags]\n", fs.Name())
			fs.PrintDefaults()
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	return nil
}
