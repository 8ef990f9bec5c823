package node

import (
	"errors"
	"strings"
	"testing"
)

func TestParseNameAcceptsWellFormedNames(t *testing.T) {
	tests := []struct {
		in, canonical string
	}{
		{"a@127.0.0.1:4000", "a@127.0.0.1:4000"},
		{"worker_1@localhost:0", "worker_1@localhost:0"},
		{"n.x-y@host.example.com:65535", "n.x-y@host.example.com:65535"},
		{"v6@[::1]:4000", "v6@[::1]:4000"},
	}
	for _, tt := range tests {
		got, err := parseName(tt.in)
		if err != nil {
			t.Errorf("parseName(%q): %v", tt.in, err)
			continue
		}
		if got.String() != tt.canonical {
			t.Errorf("parseName(%q) = %q, want %q", tt.in, got.String(), tt.canonical)
		}
	}
}

func TestParseNameRejectsMalformedNames(t *testing.T) {
	for _, in := range []string{
		"",
		"nohost",
		"@127.0.0.1:1",
		"a@",
		"a@127.0.0.1",
		"a@127.0.0.1:",
		"a@127.0.0.1:65536",
		"a@127.0.0.1:-1",
		"a@127.0.0.1:+1",
		"a@:4000",
		"a b@127.0.0.1:1",
		"a@b@127.0.0.1:1",
		"a@-bad-.host:1",
		"a@::1:4000",
		strings.Repeat("x", 65) + "@h:1",
		"a@" + strings.Repeat("h", 300) + ":1",
	} {
		if _, err := parseName(in); !errors.Is(err, ErrBadName) {
			t.Errorf("parseName(%q) error = %v, want ErrBadName", in, err)
		}
	}
}

func TestStartRejectsBadNameWithErrBadName(t *testing.T) {
	if _, err := Start("not a name", "cookie"); !errors.Is(err, ErrBadName) {
		t.Fatalf("Start: %v, want ErrBadName", err)
	}
}

// A peer's name is taken only in the one form this node writes it, so one
// node cannot sit in the peer table under two names.
func TestPeerNamesMustBeCanonical(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"a@127.0.0.1:4000", true},
		{"a@[::1]:4000", true},
		{"a@127.0.0.1:04000", false},
		{"a@127.0.0.1", false},
	} {
		err := validPeerName(tt.name)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrBadName)) {
			t.Errorf("validPeerName(%q) = %v, want ok=%v (else ErrBadName)", tt.name, err, tt.ok)
		}
	}
}
