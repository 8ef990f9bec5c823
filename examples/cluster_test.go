package examples_test

import (
	"strings"
	"testing"
)

// TestClusterExampleRejoinsAKilledNode runs examples/cluster: a 3-node
// cluster formed by seeds, one node killed and restarted, rejoined with its
// group member, with no Connect.
func TestClusterExampleRejoinsAKilledNode(t *testing.T) {
	out := runExample(t, examplesBin(t, "cluster"))
	for _, want := range []string{
		"cluster formed by seeds",
		"workers: 3 members, on a b c",
		"a saw: NodeDown c (reason connection_closed)",
		"workers: 2 members, on a b",
		"a saw: NodeUp c",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "workers: 3 members, on a b c") {
		t.Fatalf("c's member did not come back:\n%s", out)
	}
}
