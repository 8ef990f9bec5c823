package main

// `meshbench compare`: one workload on Mesh, on a raw crypto/tls pipe and
// on Erlang/OTP distribution (plain and TLS), one after the other, two OS
// processes each, and one table. Everything it runs is this program or
// erlang/meshbench_erl.erl, embedded here and compiled with erlc at run
// time; a runtime that is missing (no erl) is skipped with a message.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshrt/mesh/node"
)

//go:embed erlang/meshbench_erl.erl
var erlangHarness []byte

// compareRow is one system's figures; a negative value was not measured.
type compareRow struct {
	system, transport                   string
	oneway1, onewayN, p50, p99, spawnPS float64
	skipped                             string // why the system did not run
}

type compareConfig struct {
	duration time.Duration
	senders  int
	payload  int
	systems  []string
	args     []string
}

var compareSystems = []string{"mesh", "raw-tls", "erlang-tcp", "erlang-tls"}

func parseCompare(args []string, stdout io.Writer) (compareConfig, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	c := compareConfig{args: args}
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "length of each measured phase")
	fs.IntVar(&c.senders, "senders", 8, "senders of the multi-sender one-way run (each to its own receiver)")
	fs.IntVar(&c.payload, "payload", 64, "payload bytes")
	fs.Var((*listFlag)(&c.systems), "systems", "systems to run, comma-separated (default "+strings.Join(compareSystems, ",")+")")
	if err := parseFlags(fs, args, stdout); err != nil {
		return c, err
	}
	if len(c.systems) == 0 {
		c.systems = compareSystems
	}
	for _, s := range c.systems {
		if !containsString(compareSystems, s) {
			return c, usagef("compare: unknown system %q (systems: %s)", s, strings.Join(compareSystems, ", "))
		}
	}
	switch {
	case c.duration <= 0:
		return c, usagef("compare: --duration must be positive")
	case c.senders < 1 || c.senders > 1000:
		return c, usagef("compare: --senders must be 1..1000")
	case c.payload < 0 || c.payload > 1<<20:
		return c, usagef("compare: --payload must be 0..1048576 bytes")
	}
	return c, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// runCompare runs each system in turn and prints one table and the ratios
// of Mesh to the others.
func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseCompare(args, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "meshbench compare: %d-byte payload, %v per phase, two OS processes per system on 127.0.0.1\n", cfg.payload, cfg.duration)
	fmt.Fprintf(stdout, "command: %s\nmachine: %s\n", strings.TrimSpace("meshbench compare "+strings.Join(args, " ")), machine())
	var rows []compareRow
	var mesh *compareRow
	var cl *cluster
	defer func() {
		if cl != nil {
			cl.close()
		}
	}()
	prog := &progress{} // each system announces itself on stderr; no bar
	for _, sys := range cfg.systems {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "meshbench compare: running %s\n", sys)
		var row compareRow
		var err error
		switch sys {
		case "mesh", "raw-tls":
			if cl == nil {
				if cl, err = startCluster(ctx, clusterSpec{nodes: 2, procs: true}, stderr); err != nil {
					return err
				}
			}
			if sys == "mesh" {
				row, err = compareMesh(ctx, cl, cfg, prog.wait)
			} else {
				row, err = compareRaw(ctx, cl, cfg, prog.wait)
			}
		case "erlang-tcp", "erlang-tls":
			row, err = compareErlang(ctx, sys, cfg, stderr)
		}
		if err != nil && !errors.Is(err, errInterrupted) {
			return fmt.Errorf("%s: %w", sys, err)
		}
		if row.skipped != "" {
			fmt.Fprintf(stderr, "meshbench compare: %s skipped: %s\n", sys, row.skipped)
		}
		rows = append(rows, row)
		if errors.Is(err, errInterrupted) {
			break
		}
	}
	for i := range rows {
		if rows[i].system == "mesh" {
			mesh = &rows[i]
		}
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "%-11s %14s %14s %12s %12s %10s  %s\n", "system", "oneway 1 /s", fmt.Sprintf("oneway %d /s", cfg.senders), "rtt p50 µs", "rtt p99 µs", "spawn /s", "transport")
	cell := func(v float64, w int) string {
		if v < 0 {
			return fmt.Sprintf("%*s", w, "-")
		}
		if v < 100 {
			return fmt.Sprintf("%*.1f", w, v)
		}
		return fmt.Sprintf("%*s", w, group(v))
	}
	for _, r := range rows {
		if r.skipped != "" {
			fmt.Fprintf(stdout, "%-11s skipped: %s\n", r.system, r.skipped)
			continue
		}
		fmt.Fprintf(stdout, "%-11s %14s %14s %12s %12s %10s  %s\n", r.system, cell(r.oneway1, 14), cell(r.onewayN, 14),
			cell(r.p50, 12), cell(r.p99, 12), cell(r.spawnPS, 10), r.transport)
	}
	if mesh != nil && mesh.skipped == "" {
		fmt.Fprintln(stdout)
		for _, r := range rows {
			if r.system == "mesh" || r.skipped != "" {
				continue
			}
			var parts []string
			ratio := func(what string, m, o float64, lowerBetter bool) {
				if m > 0 && o > 0 {
					if lowerBetter {
						parts = append(parts, fmt.Sprintf("%s %.2fx", what, o/m))
					} else {
						parts = append(parts, fmt.Sprintf("%s %.2fx", what, m/o))
					}
				}
			}
			ratio("oneway 1", mesh.oneway1, r.oneway1, false)
			ratio(fmt.Sprintf("oneway %d", cfg.senders), mesh.onewayN, r.onewayN, false)
			ratio("rtt p50", mesh.p50, r.p50, true)
			ratio("rtt p99", mesh.p99, r.p99, true)
			ratio("spawn", mesh.spawnPS, r.spawnPS, false)
			fmt.Fprintf(stdout, "mesh vs %s (above 1: mesh better): %s\n", r.system, strings.Join(parts, ", "))
		}
	}
	if ctx.Err() != nil {
		return errInterrupted
	}
	return nil
}

// compareMesh runs the workload on two Mesh node processes: every sender
// on the first, every receiver on the second.
func compareMesh(ctx context.Context, cl *cluster, cfg compareConfig, wait waiter) (compareRow, error) {
	row := compareRow{system: "mesh", transport: "Mesh distribution, TLS 1.3 (always on)", oneway1: -1, onewayN: -1, p50: -1, p99: -1, spawnPS: -1}
	err := cl.ctl.Run(context.Background(), func(p *node.Process) error {
		base := spec{payload: cfg.payload, duration: cfg.duration, fromFirst: true}
		for _, ph := range []struct {
			scenario string
			senders  int
			use      func(f figures)
		}{
			{"throughput", 1, func(f figures) { row.oneway1 = f.rate() }},
			{"throughput", cfg.senders, func(f figures) { row.onewayN = f.rate() }},
			{"latency", 1, func(f figures) { row.p50, row.p99 = f.quantileUS(50), f.quantileUS(99) }},
			{"spawn", 1, func(f figures) { row.spawnPS = f.rate() }},
		} {
			s := base
			s.scenario, s.senders = ph.scenario, ph.senders
			f, err := runScenario(ctx, p, cl, s, wait)
			if err != nil {
				return err
			}
			ph.use(f)
		}
		return nil
	})
	return row, err
}

// compareRaw runs the raw crypto/tls baselines between the same two
// processes: one stream through a queue, one frame in flight.
func compareRaw(ctx context.Context, cl *cluster, cfg compareConfig, wait waiter) (compareRow, error) {
	row := compareRow{system: "raw-tls", transport: "crypto/tls 1.3, one stream through a queue (no actors)", oneway1: -1, onewayN: -1, p50: -1, p99: -1, spawnPS: -1}
	err := cl.ctl.Run(context.Background(), func(p *node.Process) error {
		s := spec{scenario: "throughput", payload: cfg.payload, duration: cfg.duration, senders: 1}
		f, err := runBaseline(ctx, p, cl, s, wait)
		if err != nil {
			return err
		}
		row.oneway1 = f.rate()
		s.scenario = "latency"
		f, err = runBaseline(ctx, p, cl, s, wait)
		if err != nil {
			return err
		}
		row.p50, row.p99 = f.quantileUS(50), f.quantileUS(99)
		return nil
	})
	return row, err
}

// compareErlang runs the Erlang harness on two erl nodes (no epmd: both
// use one fixed distribution port, the driver does not listen), plain or
// over TLS 1.3 with a fresh self-signed certificate.
func compareErlang(ctx context.Context, sys string, cfg compareConfig, stderr io.Writer) (compareRow, error) {
	row := compareRow{system: sys, oneway1: -1, onewayN: -1, p50: -1, p99: -1, spawnPS: -1}
	row.transport = "Erlang distribution, inet_tcp"
	if sys == "erlang-tls" {
		row.transport = "Erlang distribution, inet_tls (TLS 1.3)"
	}
	erl, err := exec.LookPath("erl")
	if err != nil {
		row.skipped = "no erl on PATH (Debian: apt-get install erlang-base erlang-ssl erlang-public-key erlang-crypto; or make compare as root)"
		return row, nil
	}
	erlc, err := exec.LookPath("erlc")
	if err != nil {
		row.skipped = "no erlc on PATH"
		return row, nil
	}
	dir, err := os.MkdirTemp("", "meshbench-erl-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "meshbench_erl.erl")
	if err := os.WriteFile(src, erlangHarness, 0o600); err != nil {
		return row, err
	}
	if out, err := exec.CommandContext(ctx, erlc, "-o", dir, src).CombinedOutput(); err != nil {
		return row, fmt.Errorf("erlc: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return row, err
	}
	common := []string{"-noshell", "-setcookie", rand.Text(), "-start_epmd", "false",
		"-erl_epmd_port", strconv.Itoa(port), "-pa", dir}
	if sys == "erlang-tls" {
		if !erlangHasSSL(ctx, erl) {
			row.skipped = "erl has no ssl application (Debian: apt-get install erlang-ssl erlang-public-key erlang-crypto)"
			return row, nil
		}
		conf, err := erlangTLSConfig(dir)
		if err != nil {
			return row, err
		}
		common = append(common, "-proto_dist", "inet_tls", "-ssl_dist_optfile", conf)
	}
	peer := exec.Command(erl, append(common, "-name", "peer@127.0.0.1")...)
	peer.Stderr = stderr
	if err := peer.Start(); err != nil {
		return row, err
	}
	defer func() { _ = peer.Process.Kill(); _ = peer.Wait() }()

	runCtx, cancel := context.WithTimeout(ctx, 10*cfg.duration+2*time.Minute)
	defer cancel()
	drv := exec.CommandContext(runCtx, erl, append(common, "-name", "driver@127.0.0.1", "-dist_listen", "false",
		"-run", "meshbench_erl", "main", "peer@127.0.0.1", strconv.FormatInt(cfg.duration.Milliseconds(), 10),
		strconv.Itoa(cfg.payload), strconv.Itoa(cfg.senders))...)
	drv.Cancel = func() error { return drv.Process.Signal(syscall.SIGKILL) }
	drv.Stderr = stderr
	out, err := drv.StdoutPipe()
	if err != nil {
		return row, err
	}
	if err := drv.Start(); err != nil {
		return row, err
	}
	var result string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if r, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			result = r
		}
	}
	werr := drv.Wait()
	if ctx.Err() != nil {
		return row, errInterrupted
	}
	if werr != nil || result == "" {
		return row, fmt.Errorf("the Erlang driver failed: %v", werr)
	}
	var vals [5]float64
	fields := strings.Fields(result)
	if len(fields) != len(vals) {
		return row, fmt.Errorf("the Erlang driver printed %q", result)
	}
	for i, f := range fields {
		if vals[i], err = strconv.ParseFloat(f, 64); err != nil {
			return row, fmt.Errorf("the Erlang driver printed %q", result)
		}
	}
	row.oneway1, row.onewayN, row.p50, row.p99, row.spawnPS = vals[0], vals[1], vals[2], vals[3], vals[4]
	return row, nil
}

// erlangHasSSL reports whether erl can load the ssl application.
func erlangHasSSL(ctx context.Context, erl string) bool {
	out, err := exec.CommandContext(ctx, erl, "-noshell", "-eval",
		`io:format("~p", [code:which(ssl)]), halt().`).Output()
	return err == nil && !strings.Contains(string(out), "non_existing")
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// erlangTLSConfig writes a fresh self-signed P-256 certificate, its key and
// an ssl_dist option file (TLS 1.3 both ways, the client not verifying: the
// cookie authenticates, as in Mesh) into dir and returns the file's path.
func erlangTLSConfig(dir string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "ssl_dist.conf")
	body := fmt.Sprintf("[{server, [{certfile, %q}, {keyfile, %q}, {versions, ['tlsv1.3']}]},\n {client, [{verify, verify_none}, {versions, ['tlsv1.3']}]}].\n", cert, keyFile)
	return conf, os.WriteFile(conf, []byte(body), 0o600)
}
