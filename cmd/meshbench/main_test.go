package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshrt/mesh/node"
)

// bound is the safety bound on every wait of these tests: generous for a
// loaded 2-core machine under -race. It is not a timing assertion.
const bound = 60 * time.Second

// runArgs runs the command line in this process and returns its exit code,
// stdout and stderr.
func runArgs(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := exitCode(run(ctx, args, strings.NewReader(""), &out, &errOut), &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExitTwoWithAMessage(t *testing.T) {
	t.Setenv(cookieEnv, "")
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"bench", "--scenario", "galaxy"}, `--scenario must be one of`},
		{[]string{"bench", "stray"}, `unexpected arguments ["stray"]`},
		{[]string{"bench", "--senders", "0"}, `--senders must be`},
		{[]string{"bench", "--duration", "0s"}, `--duration must be positive`},
		{[]string{"bench", "--payload", "-1"}, `--payload must be`},
		{[]string{"bench", "--nosuchflag"}, `flag provided but not defined: -nosuchflag`},
		{[]string{"bench", "--procs", "--peers", "a@127.0.0.1:1"}, `exclude each other`},
		{[]string{"bench", "--peers", "a@127.0.0.1:1"}, `no cookie`},
		{[]string{"run", "--nodes", "1"}, `--nodes must be`},
		{[]string{"run", "extra"}, `unexpected arguments`},
		{[]string{"node", "--name", "x@127.0.0.1:0"}, `no cookie: give --cookie-file FILE or set $MESH_COOKIE`},
		{[]string{"node", "--cookie-file", filepath.Join(t.TempDir(), "missing")}, `--cookie-file`},
		{[]string{"node", "--cookie", "c", "stray"}, `unexpected arguments`},
	} {
		code, out, errOut := runArgs(t, context.Background(), tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("meshbench %q: exit %d, stderr %q (stdout %q); want exit 2 and %q", tc.args, code, errOut, out, tc.want)
		}
	}
}

func TestHelpExitsZeroWithTheUsageOnStdout(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}, {"bench", "-h"}, {"run", "--help"}, {"node", "-h"}} {
		code, out, errOut := runArgs(t, context.Background(), args...)
		if code != 0 || !strings.Contains(out, "usage: meshbench") {
			t.Errorf("meshbench %q: exit %d, stdout %q, stderr %q; want exit 0 and the usage", args, code, out, errOut)
		}
	}
	_, out, _ := runArgs(t, context.Background(), "bench", "-h")
	for _, f := range []string{"-scenario", "-senders", "-payload", "-duration", "-nodes", "-procs", "-peers", "-json", "-cpuprofile"} {
		if !strings.Contains(out, f) {
			t.Errorf("bench -h does not list %s:\n%s", f, out)
		}
	}
}

// jsonFields are the fields §5.1 of the design pins, all numbers but
// scenario.
var jsonFields = []string{"msgs_per_sec", "mb_per_sec", "p50_us", "p90_us", "p99_us", "p999_us",
	"max_us", "senders", "payload", "nodes", "duration_s", "errors"}

// benchJSON runs bench with --json and returns the decoded object.
func benchJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	code, out, errOut := runArgs(t, ctx, append([]string{"bench", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("bench %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("bench %q: stdout is not one JSON object: %v\n%s", args, err, out)
	}
	if dec.More() {
		t.Fatalf("bench %q: more than one JSON value on stdout:\n%s", args, out)
	}
	return m
}

func checkSchema(t *testing.T, m map[string]any, scenario string) {
	t.Helper()
	if m["scenario"] != scenario {
		t.Errorf("scenario = %v, want %s", m["scenario"], scenario)
	}
	for _, f := range jsonFields {
		if _, ok := m[f].(float64); !ok {
			t.Errorf("%s: field %s = %#v, want a number", scenario, f, m[f])
		}
	}
	if m["msgs_per_sec"].(float64) <= 0 || m["errors"].(float64) != 0 {
		t.Errorf("%s: msgs_per_sec %v, errors %v: want traffic and no errors", scenario, m["msgs_per_sec"], m["errors"])
	}
	if m["samples"].(float64) <= 0 {
		t.Errorf("%s: no latency samples", scenario)
	}
	p50, p99, mx := m["p50_us"].(float64), m["p99_us"].(float64), m["max_us"].(float64)
	if !(0 < p50 && p50 <= p99 && p99 <= mx) {
		t.Errorf("%s: percentiles p50 %v p99 %v max %v out of order", scenario, p50, p99, mx)
	}
}

// Every scenario runs in one process and prints the JSON fields of §5.1,
// filled; throughput and latency carry their raw crypto/tls baseline.
func TestBenchJSONHasTheDesignFieldsForEveryScenario(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc, func(t *testing.T) {
			m := benchJSON(t, "--scenario", sc, "--duration", "300ms", "--senders", "2", "--fanout", "3")
			checkSchema(t, m, sc)
			if m["senders"].(float64) != 2 || m["nodes"].(float64) != 2 || m["payload"].(float64) != 64 || m["mode"] != "in-process" {
				t.Errorf("%s: senders %v nodes %v payload %v mode %v; want 2, 2, 64, in-process", sc, m["senders"], m["nodes"], m["payload"], m["mode"])
			}
			b, hasBase := m["baseline"].(map[string]any)
			if wantBase := sc == "throughput" || sc == "latency"; hasBase != wantBase {
				t.Fatalf("%s: baseline %v, want one: %v", sc, m["baseline"], wantBase)
			}
			if hasBase && (b["msgs_per_sec"].(float64) <= 0 || m["ratio_to_baseline"].(float64) <= 0) {
				t.Errorf("%s: baseline %v ratio %v", sc, b, m["ratio_to_baseline"])
			}
		})
	}
}

// --procs runs the worker nodes as `meshbench node` processes.
func TestBenchWithProcsRunsNodeProcesses(t *testing.T) {
	m := benchJSON(t, "--scenario", "throughput", "--procs", "--duration", "300ms")
	checkSchema(t, m, "throughput")
	if m["mode"] != "processes" {
		t.Errorf("mode = %v, want processes", m["mode"])
	}
	if !strings.Contains(m["command"].(string), "--procs") {
		t.Errorf("command = %v", m["command"])
	}
}

// An interrupt (Ctrl-C: signal.NotifyContext cancels the context) during
// the measured phase prints the figures so far and exits 130.
func TestInterruptPrintsTheFiguresSoFarAndExits130(t *testing.T) {
	for _, json := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		phaseStarted = func(string) { time.AfterFunc(200*time.Millisecond, cancel) }
		args := []string{"bench", "--scenario", "latency", "--duration", "1h"}
		if json {
			args = append(args, "--json")
		}
		code, out, errOut := runArgs(t, ctx, args...)
		phaseStarted = nil
		cancel()
		if code != 130 {
			t.Fatalf("interrupted bench: exit %d, want 130\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if json {
			var m map[string]any
			if err := jsonDecode(out, &m); err != nil || m["interrupted"] != true || m["msgs_per_sec"].(float64) <= 0 {
				t.Fatalf("interrupted --json: %v %v\n%s", m, err, out)
			}
		} else if !regexp.MustCompile(`(?m)^latency\*\s+[1-9][\d,]* `).MatchString(out) || !strings.Contains(out, "interrupted: the figures so far") {
			t.Fatalf("interrupted bench printed no figures so far:\n%s", out)
		}
	}
}

func jsonDecode(s string, v any) error { return json.NewDecoder(strings.NewReader(s)).Decode(v) }

// The default run (make run, shortened) fills every row of its table.
func TestDefaultRunFillsEveryRow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*bound)
	defer cancel()
	code, out, errOut := runArgs(t, ctx, "run", "--duration", "300ms")
	if code != 0 {
		t.Fatalf("run: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, re := range []string{
		`(?m)^command: meshbench run --duration 300ms$`,
		`(?m)^machine: \w+/\w+, GOMAXPROCS=\d+`,
		`(?m)^meshbench: 3 nodes \(processes, TLS 1.3\)`,
		`(?m)^throughput\s+[1-9][\d,]*\s+[\d.]+(\s+[\d.,]+){5}\s+0$`,
		`(?m)^raw tls stream\s+[1-9][\d,]*\s+[\d.]+(\s+-){5}\s+0$`,
		`(?m)^latency\s+[1-9][\d,]*\s+[\d.]+(\s+[\d.,]+){5}\s+0$`,
		`(?m)^raw tls ping-pong\s+[1-9][\d,]*\s+[\d.]+(\s+[\d.,]+){5}\s+0$`,
		`(?m)^call\s+[1-9][\d,]*\s+[\d.]+(\s+[\d.,]+){5}\s+0$`,
		`(?m)^spawn\s+[1-9][\d,]*\s+-(\s+[\d.,]+){5}\s+0$`,
		`(?m)^registry\s+[1-9][\d,]*\s+-(\s+[\d.,]+){5}\s+0$`,
		`(?m)^fanout\s+[1-9][\d,]*\s+[\d.]+(\s+[\d.,]+){5}\s+0$`,
		`(?m)^throughput / raw tls stream: [\d.]+x$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %q:\n%s", re, out)
		}
	}
}

// startNodeProcess starts this test binary as `meshbench node args...` with
// stdin from /dev/null and env added, and returns it with its name (the
// first line of stdout) and a reader of its stderr.
func startNodeProcess(t *testing.T, env []string, args ...string) (*exec.Cmd, string, *bufio.Reader) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"node"}, args...)...)
	cmd.Env = append(cmd.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("node printed no name: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return cmd, strings.TrimSpace(line), bufio.NewReader(stderr)
}

// waitExit waits for cmd and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(bound):
		t.Fatal("node process did not exit")
		return -1
	}
}

// connectTo starts an in-process node with cookie, connects it to name and
// returns it (stopped when the test ends).
//
// A handshake on a machine loaded enough (-race, load 25) can miss a
// node's 5 s handshake deadline, or the served node's 1 s first-byte one:
// the probe allows the whole bound for its own, and tries again, as a
// node's redial would, until the bound. A wrong cookie fails at once.
func connectTo(t *testing.T, cookie, name string) *node.Node {
	t.Helper()
	n, err := node.Start("probe@127.0.0.1:0", cookie, node.WithHandshakeTimeout(bound))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		_ = n.Stop(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	for {
		err := n.Connect(ctx, name)
		if err == nil {
			return n
		}
		if errors.Is(err, node.ErrAuth) || ctx.Err() != nil {
			t.Fatalf("connect to the node process %s: %v", name, err)
		}
		t.Logf("connect to the node process %s: %v; again", name, err)
		time.Sleep(50 * time.Millisecond)
	}
}

// A node process whose stdin is /dev/null (systemd, nohup, containers)
// serves until SIGTERM, and then exits 0; the cookie comes from a file.
func TestNodeServesUntilSIGTERMWithStdinAtEOF(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cookie")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, name, _ := startNodeProcess(t, nil, "--name", "served@127.0.0.1:0", "--cookie-file", file)
	if !regexp.MustCompile(`^served@127\.0\.0\.1:[1-9]\d*$`).MatchString(name) {
		t.Fatalf("first line %q: want the node's name with its bound port", name)
	}
	connectTo(t, "s3cret", name) // serving, with stdin long at its end
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
}

// --stop-at-eof makes the end of stdin a stop (the parent-child use).
func TestNodeStopsAtEndOfStdinWhenAsked(t *testing.T) {
	cmd, _, _ := startNodeProcess(t, []string{cookieEnv + "=c"}, "--name", "eof@127.0.0.1:0", "--stop-at-eof")
	if code := waitExit(t, cmd); code != 0 {
		t.Fatalf("exit %d at the end of stdin, want 0", code)
	}
}

// --cookie still works, for tests, with a warning on stderr.
func TestCookieFlagWarns(t *testing.T) {
	t.Setenv(cookieEnv, "")
	var errOut bytes.Buffer
	c, err := resolveCookie("", "visible", &errOut)
	if err != nil || c != "visible" || !strings.Contains(errOut.String(), "warning: --cookie puts the secret on the command line") {
		t.Fatalf("resolveCookie(--cookie) = %q, %v, stderr %q", c, err, errOut.String())
	}
	t.Setenv(cookieEnv, "from-env")
	if c, err := resolveCookie("", "", io.Discard); err != nil || c != "from-env" {
		t.Fatalf("resolveCookie($MESH_COOKIE) = %q, %v", c, err)
	}
}

// A real `meshbench node --metrics-addr` serves the Prometheus exposition
// format on /metrics (parsed here, the node's series labelled with its name)
// and the profiles on /debug/pprof/.
func TestNodeServesMetricsAndProfiles(t *testing.T) {
	cmd, name, stderr := startNodeProcess(t, []string{cookieEnv + "=m"}, "--name", "scraped@127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	line, err := stderr.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`metrics on (http://\S+/metrics)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no metrics address in %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	connectTo(t, "m", name)

	// The per-peer series follow the link table, which can lag the
	// connected gauge for a moment (a link being replaced, on a busy
	// machine): scrape until both show the link, within the bound.
	wanted := []string{"mesh_handshakes_total", "mesh_processes", "mesh_messages_sent_total", "mesh_frames_sent_total",
		"mesh_send_stalls_total", "mesh_batch_messages", "go_goroutines", "process_cpu_seconds_total"}
	fams := scrape(t, m[1])
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); fams = scrape(t, m[1]) {
		missing := false
		for _, want := range wanted {
			if _, ok := fams[want]; !ok {
				missing = true
			}
		}
		if !missing {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	peers, ok := fams["mesh_peers_connected"]
	if !ok || len(peers.GetMetric()) != 1 {
		t.Fatalf("no mesh_peers_connected in the scrape: %v", keys(fams))
	}
	pm := peers.GetMetric()[0]
	if pm.GetGauge().GetValue() != 1 || !hasLabel(pm.GetLabel(), "node", name) {
		t.Errorf("mesh_peers_connected = %v, labels %v; want 1 with node=%q", pm.GetGauge().GetValue(), pm.GetLabel(), name)
	}
	for _, want := range wanted {
		if _, ok := fams[want]; !ok {
			t.Errorf("the scrape lacks %s (has %v)", want, keys(fams))
		}
	}
	resp, err := http.Get(strings.TrimSuffix(m[1], "/metrics") + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine") {
		t.Errorf("/debug/pprof/: %s %q", resp.Status, body)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0", code)
	}
}

// scrape GETs url and parses the text exposition format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not the exposition format: %v", url, err)
	}
	return fams
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func hasLabel(ls []*dto.LabelPair, name, value string) bool {
	for _, l := range ls {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// compare runs Mesh and the raw crypto/tls pipe and prints one table with
// the ratios; a system whose runtime is missing (no erl on PATH) is skipped
// with a message, not an error.
func TestCompareRunsMeshAndRawAndSkipsAMissingErlang(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no erl here
	ctx, cancel := context.WithTimeout(context.Background(), 2*bound)
	defer cancel()
	code, out, errOut := runArgs(t, ctx, "compare", "--duration", "300ms", "--senders", "2", "--systems", "mesh,raw-tls,erlang-tls")
	if code != 0 {
		t.Fatalf("compare: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// A rate above zero, as the table prints it: grouped thousands, or one
	// decimal under 100 (a spawn rate on a loaded machine: "49.9").
	const pos = `(?:[\d,]*[1-9][\d,]*(?:\.\d)?|0\.[1-9])`
	for _, re := range []string{
		`(?m)^mesh\s+` + pos + `\s+` + pos + `\s+[\d.,]+\s+[\d.,]+\s+` + pos + `\s+Mesh distribution`,
		`(?m)^raw-tls\s+` + pos + `\s+-\s+[\d.,]+\s+[\d.,]+\s+-\s+crypto/tls`,
		`(?m)^erlang-tls\s+skipped: no erl on PATH`,
		`(?m)^mesh vs raw-tls \(above 1: mesh better\): oneway 1 [\d.]+x, rtt p50 [\d.]+x, rtt p99 [\d.]+x$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("compare output lacks %q:\n%s", re, out)
		}
	}
	if code, _, errOut := runArgs(t, ctx, "compare", "--systems", "proto.actor"); code != 2 || !strings.Contains(errOut, `unknown system "proto.actor"`) {
		t.Errorf("compare --systems proto.actor: exit %d, stderr %q; want 2", code, errOut)
	}
}
