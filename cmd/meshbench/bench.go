package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/meshrt/mesh/node"
)

// benchConfig is one `meshbench bench` command line.
type benchConfig struct {
	spec
	nodes      int
	procs      bool
	peers      []string
	cookieFile string
	json       bool
	cpuprofile string
	baseline   bool
	args       []string // as given, for the report
}

func parseBench(args []string, stdout io.Writer) (benchConfig, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	c := benchConfig{args: args}
	fs.StringVar(&c.scenario, "scenario", "throughput", "what to measure: "+strings.Join(scenarios, ", "))
	fs.IntVar(&c.senders, "senders", 1, "concurrent senders (pingers, callers, spawners, registrars, publishers), spread over the nodes")
	fs.IntVar(&c.payload, "payload", 64, "payload bytes per message")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "length of the measured phase")
	fs.IntVar(&c.nodes, "nodes", 2, "worker nodes to start (besides this process's controller node)")
	fs.BoolVar(&c.procs, "procs", false, "run each worker node in its own OS process (default: all in this process)")
	fs.Var((*listFlag)(&c.peers), "peers", "drive these `meshbench node` nodes (a@h:p,b@h:p) instead of starting any")
	fs.StringVar(&c.cookieFile, "cookie-file", "", "with --peers: file holding their cookie (else $"+cookieEnv+")")
	fs.IntVar(&c.fanout, "fanout", 8, "fanout: subscribers per publisher")
	fs.BoolVar(&c.json, "json", false, "print one JSON object on stdout instead of the table")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write this process's CPU profile to `file` (without --procs/--peers it holds the nodes too)")
	fs.BoolVar(&c.baseline, "baseline", true, "throughput and latency: also run the raw crypto/tls baseline between the same nodes")
	if err := parseFlags(fs, args, stdout); err != nil {
		return c, err
	}
	switch {
	case !slices.Contains(scenarios, c.scenario):
		return c, usagef("bench: --scenario must be one of %s, not %q", strings.Join(scenarios, ", "), c.scenario)
	case c.senders < 1 || c.senders > 10000:
		return c, usagef("bench: --senders must be 1..10000")
	case c.payload < 0 || c.payload > 1<<20:
		return c, usagef("bench: --payload must be 0..1048576 bytes")
	case c.duration <= 0:
		return c, usagef("bench: --duration must be positive")
	case len(c.peers) == 0 && (c.nodes < 1 || c.nodes > 64):
		return c, usagef("bench: --nodes must be 1..64")
	case c.fanout < 1 || c.fanout > 10000:
		return c, usagef("bench: --fanout must be 1..10000")
	case len(c.peers) > 0 && c.procs:
		return c, usagef("bench: --peers and --procs exclude each other")
	}
	if len(c.peers) > 0 {
		c.nodes = len(c.peers)
	}
	return c, nil
}

// runBench runs one scenario (and its baseline) and prints the figures:
// a table, or with --json one JSON object.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBench(args, stdout)
	if err != nil {
		return err
	}
	spec := clusterSpec{nodes: cfg.nodes, procs: cfg.procs, peers: cfg.peers}
	if len(cfg.peers) > 0 {
		if spec.cookie, err = resolveCookie(cfg.cookieFile, "", stderr); err != nil {
			return err
		}
	}
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cl, err := startCluster(ctx, spec, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	defer cl.close()

	withBaseline := cfg.baseline && (cfg.scenario == "throughput" || cfg.scenario == "latency")
	total := cfg.duration
	if withBaseline {
		total *= 2
	}
	prog := newProgress(stderr, total)
	defer prog.finish()
	var rows []figures
	runErr := cl.ctl.Run(context.Background(), func(p *node.Process) error {
		f, err := runScenario(ctx, p, cl, cfg.spec, prog.wait)
		rows = append(rows, f)
		if err != nil || !withBaseline {
			return err
		}
		b, err := runBaseline(ctx, p, cl, cfg.spec, prog.wait)
		rows = append(rows, b)
		return err
	})
	prog.finish()
	if runErr != nil && !errors.Is(runErr, errInterrupted) {
		return runErr
	}
	head := benchHeader{
		command: "meshbench bench " + strings.Join(cfg.args, " "),
		machine: machine(),
		mode:    cl.mode,
		nodes:   len(cl.workers),
	}
	if cfg.json {
		if err := writeJSON(stdout, cfg, head, rows); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "meshbench bench: %s, %d sender(s), %d-byte payload, %v, %d nodes (%s)\n",
			cfg.scenario, cfg.senders, cfg.payload, cfg.duration, head.nodes, head.mode)
		fmt.Fprintf(stdout, "command: %s\nmachine: %s\n", head.command, head.machine)
		fmt.Fprintf(stdout, "unit: %s\n", scenarioUnit[cfg.scenario])
		writeTable(stdout, rows)
		if len(rows) == 2 && rows[1].rate() > 0 {
			fmt.Fprintf(stdout, "%s / %s: %.2fx\n", rows[0].name, rows[1].name, rows[0].rate()/rows[1].rate())
		}
	}
	return runErr
}

type benchHeader struct {
	command, machine, mode string
	nodes                  int
}

// jsonFigures are one row of figures in the JSON report.
type jsonFigures struct {
	Name       string  `json:"name,omitempty"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"`
	P50        float64 `json:"p50_us"`
	P90        float64 `json:"p90_us"`
	P99        float64 `json:"p99_us"`
	P999       float64 `json:"p999_us"`
	Max        float64 `json:"max_us"`
	Ops        int64   `json:"ops"`
	Samples    int64   `json:"samples"`
	DurationS  float64 `json:"duration_s"`
	Errors     int64   `json:"errors"`
}

// jsonReport is the --json object: §5.1's fields and the run's context.
type jsonReport struct {
	Scenario string `json:"scenario"`
	jsonFigures
	Senders     int          `json:"senders"`
	Payload     int          `json:"payload"`
	Nodes       int          `json:"nodes"`
	Mode        string       `json:"mode"`
	Unit        string       `json:"unit"`
	Interrupted bool         `json:"interrupted"`
	Baseline    *jsonFigures `json:"baseline,omitempty"`
	Ratio       float64      `json:"ratio_to_baseline,omitempty"`
	Command     string       `json:"command"`
	Machine     string       `json:"machine"`
	Time        string       `json:"time"`
}

func toJSON(f figures) jsonFigures {
	q := func(p float64) float64 { return max(0, f.quantileUS(p)) }
	j := jsonFigures{
		MsgsPerSec: f.rate(), MBPerSec: f.mbPerSec(),
		P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), Max: q(100),
		Ops: f.ops, DurationS: f.span.Seconds(), Errors: f.errors,
	}
	if f.hist != nil {
		j.Samples = f.hist.TotalCount()
	}
	return j
}

func writeJSON(w io.Writer, cfg benchConfig, head benchHeader, rows []figures) error {
	r := jsonReport{
		Scenario: cfg.scenario, Senders: cfg.senders, Payload: cfg.payload, Nodes: head.nodes,
		Mode: head.mode, Unit: scenarioUnit[cfg.scenario],
		Command: head.command, Machine: head.machine, Time: time.Now().UTC().Format(time.RFC3339),
	}
	if len(rows) > 0 {
		r.jsonFigures = toJSON(rows[0])
		r.Interrupted = rows[0].partial
	}
	if len(rows) > 1 {
		b := toJSON(rows[1])
		b.Name = rows[1].name
		r.Baseline = &b
		r.Interrupted = r.Interrupted || rows[1].partial
		if b.MsgsPerSec > 0 {
			r.Ratio = r.MsgsPerSec / b.MsgsPerSec
		}
	}
	enc := json.NewEncoder(w)
	return enc.Encode(r)
}

// writeTable prints rows as one table: rate, MB/s, latency percentiles in
// microseconds, errors. A cell without figures shows "-".
func writeTable(w io.Writer, rows []figures) {
	fmt.Fprintf(w, "%-18s %12s %9s %9s %9s %9s %9s %9s %7s\n",
		"", "msgs/s", "MB/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "errors")
	for _, f := range rows {
		name := f.name
		if f.partial {
			name += "*"
		}
		mb := "-"
		if f.bytesPerOp > 0 {
			mb = fmt.Sprintf("%.1f", f.mbPerSec())
		}
		fmt.Fprintf(w, "%-18s %12s %9s %9s %9s %9s %9s %9s %7d\n", name, group(f.rate()), mb,
			us(f.quantileUS(50)), us(f.quantileUS(90)), us(f.quantileUS(99)), us(f.quantileUS(99.9)), us(f.quantileUS(100)), f.errors)
	}
	for _, f := range rows {
		if f.partial {
			fmt.Fprintln(w, "* interrupted: the figures so far")
			break
		}
	}
}

func us(v float64) string {
	switch {
	case v < 0:
		return "-"
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return group(v)
	}
}

// group formats v rounded, with thousands separators.
func group(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
