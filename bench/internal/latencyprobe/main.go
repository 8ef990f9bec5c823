// Command latencyprobe measures where the round trip of a remote Mesh
// ping-pong goes (docs/latency.md). It runs itself twice: the client (this
// process) starts a copy of itself with -role peer, connects a node to it,
// and times n round trips to an echo process on the peer, against an
// in-run baseline (the same peer's net.Conn + crypto/tls echo).
//
//	go run ./bench/internal/latencyprobe -n 200000 [-trace c.out] [-cancel]
//
// Environment for the peer: LATENCYPROBE_TRACE=file writes a runtime/trace
// of the peer, LATENCYPROBE_CPUPROFILE=file a CPU profile. -cancel makes
// both sides receive with a cancellable context, so the mailbox parks on a
// channel instead of its sync.Mutex semaphore. Each side prints its CPU
// time (user+system) per round trip, and the user part of it (the
// kernel's estimate of the split: too coarse to compare builds with); the
// client also prints, after each run, the share of the machine's CPU time
// that the host stole from its vCPUs during it (/proc/stat; a run with steal over a few percent measures
// the host: docs/latency.md, "The ms-long round trips: the host's late
// vCPU"), and the share of round trips whose reply the client read on the
// CPU the echo wrote it from ("same-cpu": the pair's layout, which a run
// keeps once formed: docs/latency.md, "What keeps a pair on one vCPU";
// each echo tags its reply with its CPU, one getcpu(2) a side a round
// trip, both implementations alike). LATENCYPROBE_DUMP=prefix writes each
// run's round trips, in µs in the order they were made, to
// prefix.<k>.<impl>.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"time"

	"github.com/meshrt/mesh/bench/internal/hoststat"
	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

var payload = strings.Repeat("x", 64)

// tagged[c] is payload with its first byte set to c: the Mesh echo's
// reply from CPU c, made once so that the tag costs the echo no
// allocation.
var tagged = func() (t [256]string) {
	for c := range t {
		t[c] = string([]byte{byte(c)}) + payload[1:]
	}
	return t
}()

// tagOf is the reply the Mesh echo sends from CPU c (the untagged payload
// where c is not known).
func tagOf(c int) string {
	if c < 0 || c >= len(tagged) {
		return payload
	}
	return tagged[c]
}

// layout counts the round trips whose reply the client read on the CPU
// the echo wrote it from. The client's goroutine.
type layout struct{ same, known int }

// note counts one reply tagged with the echo's CPU, read on CPU here.
func (l *layout) note(tag byte, here int) {
	if here < 0 {
		return
	}
	l.known++
	if int(tag) == here {
		l.same++
	}
}

func main() {
	role := flag.String("role", "client", "client or peer")
	n := flag.Int("n", 100000, "round trips per implementation")
	traceFile := flag.String("trace", "", "client: write a runtime/trace here (mesh round trips only)")
	cancel := flag.Bool("cancel", false, "receive with a cancellable context on both sides (mailbox parks on a channel)")
	impls := flag.String("impl", "tls,mesh,tls,mesh", "comma-separated runs: tls, mesh")
	flag.Parse()
	if *role == "peer" {
		peer(*cancel)
		stopAll()
		return
	}
	client(*n, *traceFile, *cancel, strings.Split(*impls, ","))
	stopAll()
}

// receiveCtx is the context processes receive with: Background, or with
// cancel one that can end (never cancelled), which makes the mailbox park
// on a channel instead of its semaphore.
func receiveCtx(cancel bool) context.Context {
	if cancel {
		return cancelable
	}
	return context.Background()
}

var cancelable, stopAll = context.WithCancel(context.Background())

func peer(cancel bool) {
	if f := os.Getenv("LATENCYPROBE_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	n, err := node.Start("peer@127.0.0.1:0", "probe")
	if err != nil {
		log.Fatal(err)
	}
	rctx := receiveCtx(cancel)
	var traceOut *os.File
	n.Define("echo", func(p *node.Process, args []any) error {
		if f := os.Getenv("LATENCYPROBE_TRACE"); f != "" && traceOut == nil {
			traceOut, err = os.Create(f)
			if err != nil {
				return err
			}
			if err := trace.Start(traceOut); err != nil {
				return err
			}
		}
		for {
			m, err := p.Receive(rctx)
			if err != nil {
				return err
			}
			t := m.(codec.Tuple)
			if err := p.Send(t[0].(node.PID), tagOf(cpu())); err != nil {
				return err
			}
		}
	})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned()}})
	if err != nil {
		log.Fatal(err)
	}
	go tlsEcho(ln)
	fmt.Printf("NAME %s\nTLS %s\n", n.Self(), ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	if traceOut != nil {
		trace.Stop()
		_ = traceOut.Close()
	}
	cpu, user := hoststat.CPU()
	fmt.Fprintf(os.Stderr, "peer: cpu %v total (user %v)\n", cpu, user)
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = n.Stop(ctx)
}

// tlsEcho answers each 64-byte message with itself, one connection at a time.
func tlsEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.(*tls.Conn).NetConn().(*net.TCPConn).SetNoDelay(true)
			buf := make([]byte, 64)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if cc := cpu(); cc >= 0 {
					buf[0] = byte(cc)
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

func client(n int, traceFile string, cancel bool, impls []string) {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	args := []string{"-role", "peer"}
	if cancel {
		args = append(args, "-cancel")
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	line1, _ := r.ReadString('\n')
	line2, _ := r.ReadString('\n')
	peerName := strings.TrimPrefix(strings.TrimSpace(line1), "NAME ")
	tlsAddr := strings.TrimPrefix(strings.TrimSpace(line2), "TLS ")

	nd, err := node.Start("client@127.0.0.1:0", "probe")
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := nd.Connect(ctx, peerName); err != nil {
		log.Fatal(err)
	}
	var meshRuns int
	for _, impl := range impls {
		c0, u0 := hoststat.CPU()
		s0, ok0 := hoststat.Now()
		var lat []time.Duration
		var lay layout
		switch impl {
		case "tls":
			lat = pingpongTLS(tlsAddr, n, &lay)
		case "mesh":
			meshRuns++
			tf := ""
			if meshRuns == 1 {
				tf = traceFile
			}
			lat = pingpongMesh(nd, peerName, n, tf, receiveCtx(cancel), &lay)
		}
		c1, u1 := hoststat.CPU()
		s1, ok1 := hoststat.Now()
		dumpLat(impl, lat)
		steal := -1.0
		if share, ok := s1.StealSince(s0); ok0 && ok1 && ok {
			steal = share
		}
		report(impl, lat, c1-c0, u1-u0, steal, lay)
	}
	_ = stdin.Close()
	_ = cmd.Wait()
	_ = nd.Stop(context.Background())
}

func pingpongMesh(nd *node.Node, peer string, n int, traceFile string, rctx context.Context, lay *layout) []time.Duration {
	lat := make([]time.Duration, n)
	err := nd.Run(context.Background(), func(p *node.Process) error {
		echo, err := p.Spawn(peer, "echo")
		if err != nil {
			return err
		}
		var msg any = codec.Tuple{p.Self(), payload}
		for range 1000 { // warm up
			_ = p.Send(echo, msg)
			if _, err := p.Receive(rctx); err != nil {
				return err
			}
		}
		if traceFile != "" {
			f, err := os.Create(traceFile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := trace.Start(f); err != nil {
				return err
			}
			defer trace.Stop()
		}
		for i := range n {
			t0 := time.Now()
			if err := p.Send(echo, msg); err != nil {
				return err
			}
			m, err := p.Receive(rctx)
			if err != nil {
				return err
			}
			lat[i] = time.Since(t0)
			if s, ok := m.(string); ok && s != "" {
				lay.note(s[0], cpu())
			}
		}
		return p.Exit(echo, node.Kill)
	})
	if err != nil {
		log.Fatal(err)
	}
	return lat
}

func pingpongTLS(addr string, n int, lay *layout) []time.Duration {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback probe
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_ = c.NetConn().(*net.TCPConn).SetNoDelay(true)
	buf := []byte(payload)
	in := make([]byte, 64)
	lat := make([]time.Duration, n)
	for i := range n + 1000 {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			log.Fatal(err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			log.Fatal(err)
		}
		if i >= 1000 {
			lat[i-1000] = time.Since(t0)
			lay.note(in[0], cpu())
		}
	}
	return lat
}

// dumpN numbers the runs dumpLat writes.
var dumpN int

// dumpLat writes lat in order, one µs figure a line, to
// $LATENCYPROBE_DUMP.<k>.<impl> when that variable is set.
func dumpLat(impl string, lat []time.Duration) {
	f := os.Getenv("LATENCYPROBE_DUMP")
	if f == "" {
		return
	}
	dumpN++
	out, err := os.Create(fmt.Sprintf("%s.%d.%s", f, dumpN, impl))
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriter(out)
	for _, d := range lat {
		fmt.Fprintf(w, "%d\n", d.Microseconds())
	}
	_ = w.Flush()
	_ = out.Close()
}

// report prints one run's lines; steal < 0: not known.
func report(impl string, lat []time.Duration, cpu, user time.Duration, steal float64, lay layout) {
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	perRT := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(len(lat)) / 1e3 }
	fmt.Printf("%-5s n=%d mean=%.1fus p10=%.1f p50=%.1f p90=%.1f p99=%.1f p999=%.1f client-cpu/rt=%.1fus client-user/rt=%.2fus\n",
		impl, len(lat), float64(sum.Nanoseconds())/float64(len(lat))/1e3,
		pct(0.10), pct(0.50), pct(0.90), pct(0.99), pct(0.999), perRT(cpu), perRT(user))
	if steal >= 0 {
		fmt.Printf("%-5s host steal during the run: %.1f%%\n", impl, steal)
	}
	if lay.known > 0 {
		fmt.Printf("%-5s same-cpu: %.1f%% of the replies read on the CPU the echo wrote them from\n", impl, 100*float64(lay.same)/float64(lay.known))
	}
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "probe"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
