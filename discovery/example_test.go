package discovery_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/meshrt/mesh/discovery"
	"github.com/meshrt/mesh/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// A fixed list of peers, as a compose file would give them; pass it to
// node.WithDiscovery.
func ExampleStatic() {
	d := discovery.Static{"b@10.0.0.2:4369", "a@10.0.0.1:4369"}
	names, _ := d.Discover(context.Background())
	fmt.Println(names)
	// Output: [a@10.0.0.1:4369 b@10.0.0.2:4369]
}

// The pods of a Kubernetes headless service "mesh" in namespace "default",
// each running a node named mesh@<pod IP>:4369.
func ExampleDNS() {
	d, err := discovery.DNS("mesh.default.svc.cluster.local", "mesh@{host}:4369")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d)
	// Output: dns A/AAAA mesh.default.svc.cluster.local as mesh@{host}:4369
}

// The SRV records of a headless service's named port give each pod's stable
// host name and the port.
func ExampleSRV() {
	d, err := discovery.SRV("_mesh._tcp.mesh.default.svc.cluster.local", "mesh@{host}:{port}")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d)
	// Output: dns SRV _mesh._tcp.mesh.default.svc.cluster.local as mesh@{host}:{port}
}
