// Package discovery holds sources of node names for node.WithDiscovery: a
// static list, and DNS (the A/AAAA records of a name, such as a Kubernetes
// headless service, or its SRV records).
//
// A source only answers "which nodes should exist now". The node polls it,
// connects to every name it returns that it is not connected to, and keeps
// redialling them while they keep being returned; a name that disappears
// from the answer is no longer dialled (a connected node stays connected
// until it goes). Every source here satisfies node.Discovery:
//
//	type Discovery interface {
//		Discover(ctx context.Context) ([]string, error)
//	}
//
// Names are node names, name@host:port. The DNS sources build them from a
// pattern in which {host} stands for an address or target host and {port}
// for an SRV record's port: "mesh@{host}:4369" for the A/AAAA source, or
// "mesh@{host}:{port}" for the SRV source.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// ErrPattern reports a name pattern without the placeholders its source
// needs.
var ErrPattern = errors.New("discovery: bad name pattern")

// Static is a fixed list of node names, as a compose file or a
// configuration file gives them. Its Discover returns a sorted copy without
// duplicates. Safe from any goroutine.
type Static []string

// Discover returns the list, sorted and deduplicated. It never fails.
func (s Static) Discover(context.Context) ([]string, error) {
	out := slices.Clone([]string(s))
	slices.Sort(out)
	return slices.Compact(out), nil
}

// DNSOption configures a DNS source.
type DNSOption func(*DNSSource)

// WithResolver makes the source ask r instead of net.DefaultResolver (for a
// resolver with its own Dial, pointed at a particular server).
func WithResolver(r *net.Resolver) DNSOption {
	return func(d *DNSSource) {
		if r != nil {
			d.resolver = r
		}
	}
}

// DNSSource discovers nodes through DNS; make one with [DNS] or [SRV]. Safe
// from any goroutine.
type DNSSource struct {
	name     string
	pattern  string
	srv      bool
	resolver *net.Resolver
}

// DNS returns a source that looks up the A and AAAA records of name (for
// instance a Kubernetes headless service, "mesh.default.svc.cluster.local",
// whose records are the ready pods' addresses) and makes one node name of
// each address with pattern, where {host} stands for the address (an IPv6
// address in brackets): "mesh@{host}:4369". A pattern without {host} is
// refused with [ErrPattern].
func DNS(name, pattern string, opts ...DNSOption) (*DNSSource, error) {
	if !strings.Contains(pattern, "{host}") || strings.Contains(pattern, "{port}") {
		return nil, fmt.Errorf("%w: %q: the A/AAAA source needs {host} and a fixed port", ErrPattern, pattern)
	}
	return newDNS(name, pattern, false, opts), nil
}

// SRV returns a source that looks up the SRV records of name (for instance
// "_mesh._tcp.mesh.default.svc.cluster.local") and makes one node name of
// each record with pattern, where {host} stands for the record's target
// (without the final dot) and {port} for its port: "mesh@{host}:{port}". A
// pattern without both is refused with [ErrPattern].
func SRV(name, pattern string, opts ...DNSOption) (*DNSSource, error) {
	if !strings.Contains(pattern, "{host}") || !strings.Contains(pattern, "{port}") {
		return nil, fmt.Errorf("%w: %q: the SRV source needs {host} and {port}", ErrPattern, pattern)
	}
	return newDNS(name, pattern, true, opts), nil
}

func newDNS(name, pattern string, srv bool, opts []DNSOption) *DNSSource {
	d := &DNSSource{name: name, pattern: pattern, srv: srv, resolver: net.DefaultResolver}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Discover looks the records up and returns the node names they give,
// sorted and deduplicated. A name with no records is an empty answer, not an
// error (a service with no ready pod yet); a failed lookup is an error.
func (d *DNSSource) Discover(ctx context.Context) ([]string, error) {
	var out []string
	if d.srv {
		_, recs, err := d.resolver.LookupSRV(ctx, "", "", d.name)
		if err != nil {
			if isNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("discovery: SRV %s: %w", d.name, err)
		}
		for _, r := range recs {
			host := strings.TrimSuffix(r.Target, ".")
			if host == "" {
				continue
			}
			out = append(out, d.expand(host, int(r.Port)))
		}
	} else {
		addrs, err := d.resolver.LookupIPAddr(ctx, d.name)
		if err != nil {
			if isNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("discovery: A/AAAA %s: %w", d.name, err)
		}
		for _, a := range addrs {
			if a.IP == nil {
				continue
			}
			out = append(out, d.expand(a.IP.String(), 0))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// expand fills the pattern in for one host (and port, for SRV).
func (d *DNSSource) expand(host string, port int) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	s := strings.ReplaceAll(d.pattern, "{host}", host)
	if d.srv {
		s = strings.ReplaceAll(s, "{port}", strconv.Itoa(port))
	}
	return s
}

// isNotFound reports a lookup that found no such name or no records of the
// type asked.
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// String describes the source for logs.
func (d *DNSSource) String() string {
	kind := "A/AAAA"
	if d.srv {
		kind = "SRV"
	}
	return "dns " + kind + " " + d.name + " as " + d.pattern
}
