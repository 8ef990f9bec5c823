package main

// `meshbench node`: a long-running node process serving the actors of
// internal/nodeproc, which bench and run (and the multi-process tests) drive
// by remote spawns.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshrt/mesh/internal/nodeproc"
	"github.com/meshrt/mesh/node"
)

// cookieEnv names the environment variable a cookie may come from.
const cookieEnv = "MESH_COOKIE"

type nodeConfig struct {
	name, cookieFile, cookie, listen, metricsAddr string
	connect                                       []string
	tick                                          time.Duration
	stopAtEOF                                     bool
}

// listFlag is a comma-separated, repeatable string list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

func parseNode(args []string, stdout io.Writer) (nodeConfig, error) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	c := nodeConfig{}
	fs.StringVar(&c.name, "name", "node@127.0.0.1:0", "node name, name@host:port (port 0: a free port)")
	fs.StringVar(&c.cookieFile, "cookie-file", "", "file holding the cluster's secret cookie (else $"+cookieEnv+")")
	fs.StringVar(&c.cookie, "cookie", "", "the cookie itself, for tests only: visible to every user in ps")
	fs.StringVar(&c.listen, "listen", "", "address to bind if not the one the name advertises")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /debug/pprof/ on this address (e.g. 127.0.0.1:9100)")
	fs.Var((*listFlag)(&c.connect), "connect", "peer `node` to connect to at start (repeatable, or comma-separated)")
	fs.DurationVar(&c.tick, "tick", 15*time.Second, "tick timeout: how long a silent peer may stay quiet")
	fs.BoolVar(&c.stopAtEOF, "stop-at-eof", false, "also stop at the end of stdin (for a parent that starts node processes)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return c, err
	}
	if c.tick <= 0 {
		return c, usagef("node: --tick must be positive")
	}
	return c, nil
}

// resolveCookie returns the cookie from --cookie-file, $MESH_COOKIE or (with
// a warning) --cookie, in that order; there is no default.
func resolveCookie(file, flagValue string, stderr io.Writer) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usagef("--cookie-file: %v", err)
		}
		c := strings.TrimSpace(string(b))
		if c == "" {
			return "", usagef("--cookie-file %s is empty", file)
		}
		return c, nil
	case os.Getenv(cookieEnv) != "":
		return os.Getenv(cookieEnv), nil
	case flagValue != "":
		fmt.Fprintln(stderr, "meshbench: warning: --cookie puts the secret on the command line, where ps shows it; use --cookie-file or $"+cookieEnv)
		return flagValue, nil
	}
	return "", usagef("no cookie: give --cookie-file FILE or set $%s", cookieEnv)
}

// runNode serves a node until ctx ends (SIGINT, SIGTERM) or, with
// --stop-at-eof, stdin ends.
func runNode(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseNode(args, stdout)
	if err != nil {
		return err
	}
	cookie, err := resolveCookie(cfg.cookieFile, cfg.cookie, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := []node.Option{node.WithTickTimeout(cfg.tick), node.WithLogger(logger)}
	if cfg.listen != "" {
		opts = append(opts, node.WithListen(cfg.listen))
	}
	if cfg.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		opts = append(opts, node.WithMetrics(reg))
		ln, err := net.Listen("tcp", cfg.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		srv := &http.Server{Handler: metricsMux(reg), ReadHeaderTimeout: 10 * time.Second}
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics server", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			<-served
		}()
		fmt.Fprintf(stderr, "meshbench node: metrics on http://%s/metrics, profiles on http://%s/debug/pprof/\n", ln.Addr(), ln.Addr())
	}
	return nodeproc.Serve(ctx, nodeproc.Config{
		Name: cfg.name, Cookie: cookie, Opts: opts, StopAtEOF: cfg.stopAtEOF, Connect: cfg.connect,
	}, stdin, stdout)
}

// metricsMux serves reg's metrics on /metrics and the runtime's profiles on
// /debug/pprof/ (its own mux: nothing lands on http.DefaultServeMux).
func metricsMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
