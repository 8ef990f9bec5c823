package discovery

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsServer is a real DNS server on 127.0.0.1 (UDP and TCP, one port each)
// answering from a table the test changes as it goes.
type dnsServer struct {
	mu      sync.Mutex
	a       map[string][]net.IP  // guarded by mu; A and AAAA by FQDN
	srv     map[string][]dns.SRV // guarded by mu
	fail    bool                 // guarded by mu: answer SERVFAIL
	queries int                  // guarded by mu

	udp, tcp string
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	s := &dnsServer{a: make(map[string][]net.IP), srv: make(map[string][]dns.SRV)}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.udp, s.tcp = pc.LocalAddr().String(), ln.Addr().String()
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: s},
		{Listener: ln, Handler: s},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	}
	return s
}

// ServeDNS answers one query from the table.
func (s *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	s.mu.Lock()
	s.queries++
	if s.fail {
		s.mu.Unlock()
		m.Rcode = dns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	}
	known := false
	for _, q := range req.Question {
		name := dns.CanonicalName(q.Name)
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 1}
		ips, hasA := s.a[name]
		srvs, hasSRV := s.srv[name]
		known = known || hasA || hasSRV
		switch q.Qtype {
		case dns.TypeA:
			for _, ip := range ips {
				if v4 := ip.To4(); v4 != nil {
					h := hdr
					h.Rrtype = dns.TypeA
					m.Answer = append(m.Answer, &dns.A{Hdr: h, A: v4})
				}
			}
		case dns.TypeAAAA:
			for _, ip := range ips {
				if ip.To4() == nil {
					h := hdr
					h.Rrtype = dns.TypeAAAA
					m.Answer = append(m.Answer, &dns.AAAA{Hdr: h, AAAA: ip})
				}
			}
		case dns.TypeSRV:
			for _, r := range srvs {
				h := hdr
				h.Rrtype = dns.TypeSRV
				rr := r
				rr.Hdr = h
				m.Answer = append(m.Answer, &rr)
			}
		}
	}
	s.mu.Unlock()
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func (s *dnsServer) setA(name string, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []net.IP
	for _, ip := range ips {
		list = append(list, net.ParseIP(ip))
	}
	s.a[dns.Fqdn(name)] = list
}

func (s *dnsServer) setSRV(name string, recs ...dns.SRV) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv[dns.Fqdn(name)] = recs
}

func (s *dnsServer) setFail(on bool) {
	s.mu.Lock()
	s.fail = on
	s.mu.Unlock()
}

func (s *dnsServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// resolver is a pure-Go resolver that sends every query to s.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			if network == "tcp" || network == "tcp4" || network == "tcp6" {
				return d.DialContext(ctx, "tcp", s.tcp)
			}
			return d.DialContext(ctx, "udp", s.udp)
		},
	}
}

func discover(t *testing.T, d interface {
	Discover(context.Context) ([]string, error)
}) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return d.Discover(ctx)
}

func TestStatic(t *testing.T) {
	s := Static{"b@h:2", "a@h:1", "b@h:2"}
	got, err := discover(t, s)
	if err != nil || !slices.Equal(got, []string{"a@h:1", "b@h:2"}) {
		t.Fatalf("Discover = %v, %v", got, err)
	}
	if s[0] != "b@h:2" {
		t.Fatalf("Discover changed the list: %v", s)
	}
}

func TestDNSHeadlessService(t *testing.T) {
	srv := startDNS(t)
	const svc = "mesh.default.svc.cluster.local."
	srv.setA(svc, "10.0.0.2", "10.0.0.1", "fd00::7")
	d, err := DNS(svc, "mesh@{host}:4369", WithResolver(srv.resolver()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := discover(t, d)
	want := []string{"mesh@10.0.0.1:4369", "mesh@10.0.0.2:4369", "mesh@[fd00::7]:4369"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Discover = %v, %v; want %v", got, err, want)
	}
	if srv.count() == 0 {
		t.Fatal("the DNS server saw no query")
	}

	// A pod goes, another comes: the next poll says so.
	srv.setA(svc, "10.0.0.2", "10.0.0.3")
	got, err = discover(t, d)
	want = []string{"mesh@10.0.0.2:4369", "mesh@10.0.0.3:4369"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("after the change: Discover = %v, %v; want %v", got, err, want)
	}
}

func TestDNSSRV(t *testing.T) {
	srv := startDNS(t)
	const name = "_mesh._tcp.mesh.default.svc.cluster.local."
	srv.setSRV(name,
		dns.SRV{Target: "mesh-1.mesh.default.svc.cluster.local.", Port: 4370},
		dns.SRV{Target: "mesh-0.mesh.default.svc.cluster.local.", Port: 4369},
	)
	d, err := SRV(name, "mesh@{host}:{port}", WithResolver(srv.resolver()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := discover(t, d)
	want := []string{
		"mesh@mesh-0.mesh.default.svc.cluster.local:4369",
		"mesh@mesh-1.mesh.default.svc.cluster.local:4370",
	}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Discover = %v, %v; want %v", got, err, want)
	}
}

func TestDNSNoRecordsIsEmpty(t *testing.T) {
	srv := startDNS(t)
	d, err := DNS("nobody.example.test.", "mesh@{host}:4369", WithResolver(srv.resolver()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := discover(t, d)
	if err != nil || len(got) != 0 {
		t.Fatalf("Discover of an unknown name = %v, %v; want nothing, no error", got, err)
	}
}

func TestDNSServerFailureIsAnError(t *testing.T) {
	srv := startDNS(t)
	srv.setA("mesh.example.test.", "10.0.0.1")
	srv.setFail(true)
	d, err := DNS("mesh.example.test.", "mesh@{host}:4369", WithResolver(srv.resolver()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := discover(t, d)
	var de *net.DNSError
	if err == nil || !errors.As(err, &de) {
		t.Fatalf("Discover with a failing server = %v, %v; want a *net.DNSError", got, err)
	}
	srv.setFail(false)
	if got, err := discover(t, d); err != nil || len(got) != 1 {
		t.Fatalf("after the server recovered: %v, %v", got, err)
	}
}

func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		srv     bool
		pattern string
		ok      bool
	}{
		{false, "mesh@{host}:4369", true},
		{false, "mesh@host:4369", false},
		{false, "mesh@{host}:{port}", false},
		{true, "mesh@{host}:{port}", true},
		{true, "mesh@{host}:4369", false},
		{true, "mesh@x:{port}", false},
	} {
		var err error
		if tc.srv {
			_, err = SRV("x.", tc.pattern)
		} else {
			_, err = DNS("x.", tc.pattern)
		}
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrPattern)) {
			t.Errorf("srv=%v %q: err = %v, want ok=%v", tc.srv, tc.pattern, err, tc.ok)
		}
	}
}
