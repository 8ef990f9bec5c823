package nodeproc

// A network lab for the fault tests: node processes each in their own network
// namespace, joined through veth pairs to bridges in a hub namespace; the
// test's in-process node takes part from the root namespace through one more
// veth. Links are cut by moving a port from the main bridge to the island
// bridge (the sockets stay open; frames just stop arriving) and delayed by
// tc netem, or, on a kernel without netem, by a relay in this process.
//
// Invariants:
//   - Every name the lab creates is its own: namespaces are
//     mesh-<pid>-<lab>-<name>, the root veth mesh<R>, the addresses
//     10.250.R.x/24 with R reserved by creating that root veth (creation
//     fails if another run holds it). Nothing is routed anywhere else.
//   - Cleanup (registered before anything is created) kills the node
//     processes first, then deletes the namespaces; deleting the hub
//     namespace destroys every veth and qdisc with it.
//   - A namespace of a run whose process is gone (killed before its cleanup)
//     is deleted by the next lab; those of live runs are left alone.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/node"
)

// The lab's bridges in the hub namespace.
const (
	mainBridge   = "br0" // every port at the start
	islandBridge = "br1" // ports moved here are cut off from the main bridge
	hostPort     = "host"
)

var labSeq atomic.Int64

// netLab is one run's namespaces, links and node processes. Its methods are
// for the test goroutine only.
type netLab struct {
	prefix   string // mesh-<pid>-<lab>
	subnet   int    // R of 10.250.R.0/24
	rootIf   string // the root namespace's end of the host link
	hub      string // the hub namespace
	netem    bool   // the kernel has the netem qdisc
	nextHost int
	nsOf     map[string]string // node name (a, b...) → namespace
	ipOf     map[string]string // node name → its address

	exe      string
	children []*Child
	stderr   LockedWriter
	buf      bytes.Buffer
}

// newNetLab builds an empty lab (hub namespace, its two bridges, the host
// link) or skips the test, saying why, when the machine cannot: not root, no
// ip or tc, no network namespaces, veths or bridges, or -short.
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests in network namespaces skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("fault tests need root for network namespaces (ip netns, veth, tc); skipped")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("fault tests need %s (package iproute2): %v; skipped", tool, err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l := &netLab{
		prefix: fmt.Sprintf("mesh-%d-%d", os.Getpid(), labSeq.Add(1)),
		nsOf:   map[string]string{},
		ipOf:   map[string]string{},
		exe:    exe,
	}
	l.stderr.W = &l.buf
	sweepStaleNamespaces(t)
	l.hub = l.prefix + "-hub"
	// The cleanup goes first, so that it runs last and whatever part of
	// the lab exists is removed on every path.
	t.Cleanup(func() { l.close(t) })
	if out, err := ipCmd("netns", "add", l.hub); err != nil {
		t.Skipf("fault tests need network namespaces; ip netns add: %v: %s; skipped", err, out)
	}
	for _, br := range []string{mainBridge, islandBridge} {
		if out, err := ipCmd("-n", l.hub, "link", "add", br, "type", "bridge"); err != nil {
			t.Skipf("fault tests need bridges; ip link add type bridge: %v: %s; skipped", err, out)
		}
		l.must(t, "ip", "-n", l.hub, "link", "set", br, "up")
	}
	l.must(t, "ip", "-n", l.hub, "link", "set", "lo", "up")
	l.reserveSubnet(t)
	l.must(t, "ip", "addr", "add", l.hostIP()+"/24", "dev", l.rootIf)
	l.must(t, "ip", "link", "set", l.rootIf, "up")
	l.must(t, "ip", "-n", l.hub, "link", "set", hostPort, "master", mainBridge, "up")
	// Probe netem on the host port: the delay tests fall back to a relay
	// without it.
	if _, err := tcCmd("-n", l.hub, "qdisc", "add", "dev", hostPort, "root", "netem", "delay", "1ms"); err == nil {
		l.netem = true
		l.must(t, "tc", "-n", l.hub, "qdisc", "del", "dev", hostPort, "root")
	}
	return l
}

// reserveSubnet picks R: the first free one from the process id on whose
// root veth this run could create, and which no route of the root
// namespace uses.
func (l *netLab) reserveSubnet(t *testing.T) {
	t.Helper()
	routes, _ := ipCmd("-4", "route", "show")
	start := os.Getpid() % 250
	for i := range 250 {
		r := 1 + (start+i)%250
		if strings.Contains(string(routes), fmt.Sprintf("10.250.%d.", r)) {
			continue
		}
		name := fmt.Sprintf("mesh%d", r)
		if _, err := ipCmd("link", "add", name, "type", "veth", "peer", "name", hostPort, "netns", l.hub); err != nil {
			continue // another run holds R, or veths are not supported
		}
		l.subnet, l.rootIf = r, name
		return
	}
	t.Skip("fault tests need a veth from the root namespace and a free 10.250.R.0/24; none could be made; skipped")
}

// hostIP is the root namespace's address in the lab.
func (l *netLab) hostIP() string { return fmt.Sprintf("10.250.%d.254", l.subnet) }

// addNamespace creates a namespace for node name, linked to the main
// bridge by port "p"+name, with the next address; it returns the address.
func (l *netLab) addNamespace(t *testing.T, name string) string {
	t.Helper()
	ns := l.prefix + "-" + name
	l.nextHost++
	ip := fmt.Sprintf("10.250.%d.%d", l.subnet, l.nextHost)
	l.must(t, "ip", "netns", "add", ns)
	l.nsOf[name], l.ipOf[name] = ns, ip
	port := "p" + name
	l.must(t, "ip", "-n", l.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.must(t, "ip", "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
	l.must(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	l.must(t, "ip", "-n", ns, "link", "set", "lo", "up")
	l.must(t, "ip", "-n", l.hub, "link", "set", port, "master", mainBridge, "up")
	return ip
}

// startNode starts `meshbench node` (this test binary) as node name in its
// own namespace, advertising advertise (host:port; "" for its own address
// and a free port) and binding listen ("" for the advertised address).
func (l *netLab) startNode(t *testing.T, cookie, name, advertise, listen string) *Child {
	t.Helper()
	ip := l.addNamespace(t, name)
	if advertise == "" {
		advertise = ip + ":0"
	}
	args := []string{"-name", name + "@" + advertise, "-cookie", cookie, "-tick", tick.String()}
	if listen != "" {
		args = append(args, "-listen", listen)
	}
	// StartChild runs `<exe> node args...`; this script makes that
	// `ip netns exec <ns> <test binary> node args...`, and both exec, so
	// the child's pid is the node process's.
	script := filepath.Join(t.TempDir(), "in-"+name)
	body := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", l.nsOf[name], l.exe)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	c, err := StartChild(ctx, script, args, nil, &l.stderr)
	if err != nil {
		t.Fatalf("starting node process %s in %s: %v", name, l.nsOf[name], err)
	}
	l.children = append(l.children, c)
	return c
}

// startTestNode starts the in-process node the test drives, on the host
// link, stopped when the test ends.
func (l *netLab) startTestNode(t *testing.T, cookie string) *node.Node {
	t.Helper()
	n, err := node.Start("test@"+l.hostIP()+":0", cookie, node.WithTickTimeout(tick))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return n
}

// move puts a port of the hub ("p"+node, or hostPort) on bridge: to the
// island it is a silent cut from every port left on the main bridge; back
// to the main bridge it heals.
func (l *netLab) move(t *testing.T, port, bridge string) {
	t.Helper()
	l.must(t, "ip", "-n", l.hub, "link", "set", port, "master", bridge)
}

// delay adds d of netem delay to node name's link, each way.
func (l *netLab) delay(t *testing.T, name string, d time.Duration) {
	t.Helper()
	ms := strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	l.must(t, "tc", "-n", l.hub, "qdisc", "add", "dev", "p"+name, "root", "netem", "delay", ms)
	l.must(t, "tc", "-n", l.nsOf[name], "qdisc", "add", "dev", "eth0", "root", "netem", "delay", ms)
}

// close kills the node processes, then removes the namespaces (their veths
// and qdiscs go with them) and the root veth if it is still there.
func (l *netLab) close(t *testing.T) {
	for _, c := range l.children {
		c.Kill()
	}
	if t.Failed() {
		l.stderr.Lock()
		t.Logf("node processes' stderr:\n%s", l.buf.String())
		l.stderr.Unlock()
	}
	for _, ns := range l.nsOf {
		if out, err := ipCmd("netns", "del", ns); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v: %s", ns, err, out)
		}
	}
	if _, err := os.Stat("/run/netns/" + l.hub); err == nil {
		if out, err := ipCmd("netns", "del", l.hub); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v: %s", l.hub, err, out)
		}
	}
	if l.rootIf != "" {
		if _, err := net.InterfaceByName(l.rootIf); err == nil {
			_, _ = ipCmd("link", "del", l.rootIf)
		}
	}
}

func (l *netLab) must(t *testing.T, tool string, args ...string) {
	t.Helper()
	if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", tool, strings.Join(args, " "), err, out)
	}
}

func ipCmd(args ...string) ([]byte, error) { return exec.Command("ip", args...).CombinedOutput() }
func tcCmd(args ...string) ([]byte, error) { return exec.Command("tc", args...).CombinedOutput() }

var staleNS = regexp.MustCompile(`^mesh-([0-9]+)-[0-9]+-`)

// sweepStaleNamespaces deletes the lab namespaces of runs that died before
// their cleanup (their process is gone).
func sweepStaleNamespaces(t *testing.T) {
	out, err := ipCmd("netns", "list")
	if err != nil {
		return
	}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		m := staleNS.FindStringSubmatch(fields[0])
		if m == nil || m[1] == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); errors.Is(err, os.ErrNotExist) {
			if out, err := ipCmd("netns", "del", fields[0]); err == nil {
				t.Logf("deleted namespace %s of a dead run", fields[0])
			} else {
				t.Logf("stale namespace %s: %v: %s", fields[0], err, out)
			}
		}
	}
}

// delayRelay forwards every TCP connection accepted on host:0 to target,
// holding each chunk d in each direction: a link delay for kernels without
// netem. It returns the address it listens on and stops when the test ends.
func delayRelay(t *testing.T, host, target string, d time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c ...net.Conn) {
		mu.Lock()
		conns = append(conns, c...)
		mu.Unlock()
	}
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", target, bound)
			if err != nil {
				_ = down.Close()
				continue
			}
			track(down, up)
			wg.Go(func() { pumpDelayed(up, down, d) })
			wg.Go(func() { pumpDelayed(down, up, d) })
		}
	})
	return ln.Addr().String()
}

// pumpDelayed copies src to dst, writing each chunk d after it was read,
// in order; at the end of either side it closes both.
func pumpDelayed(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 256)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at)) // the emulated link delay
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	for range ch { // until the reader sees the close
	}
}
