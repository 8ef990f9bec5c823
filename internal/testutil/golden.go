package testutil

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// ReadGolden reads a golden file of named byte strings, one "name: hex"
// line each ("#" lines are comments), as WriteGolden writes it.
func ReadGolden(t testing.TB, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	defer f.Close()
	m := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("%s: bad golden line %q", path, line)
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		m[name] = b
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// WriteGolden writes names[i] with bs[i] to the golden file at path.
func WriteGolden(t testing.TB, path string, names []string, bs [][]byte) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("# Wire format pinned by golden_test.go; regenerate with go test -run Golden -update.\n")
	for i, n := range names {
		fmt.Fprintf(&sb, "%s: %x\n", n, bs[i])
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
