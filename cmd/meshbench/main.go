// Command meshbench runs load against Mesh nodes and reports what they carry.
//
// Usage:
//
//	meshbench run [flags]     a load run (see meshbench run -h)
//	meshbench node [flags]    a node process serving the meshbench actors
//
// `make run` runs `meshbench run` with its defaults: a cluster run that starts
// three `meshbench node` processes of this same program on 127.0.0.1 with
// ephemeral ports and a random cookie, connects them into a full mesh, runs
// pinger/ponger pairs across them and prints msgs/s per node and in total,
// the remote spawn rate and the ping-pong latency. `meshbench run -mode=local`
// runs the pairs on one node in this process instead.
//
// `meshbench node -name n1@127.0.0.1:0 -cookie secret` prints the node's name,
// port bound included, as the first line of stdout, and serves until SIGINT,
// SIGTERM or the end of stdin (-stdin=false to ignore stdin). Its actors are
// listed in nodecmd.go.
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

// mainExit runs the command line args and returns the process's exit code.
func mainExit(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, args, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		return 1
	}
	return 0
}

const usage = `usage: meshbench <command> [flags]

commands:
  run    a load run: node processes ping-ponging across a full mesh, reporting msgs/s,
         spawns/s and latency (-mode=local: one node in this process)
  node   a node process serving the meshbench actors until SIGTERM or end of stdin
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "run":
		return runLoad(ctx, args[1:], stdout, stderr)
	case "node":
		return runNode(ctx, args[1:], os.Stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
