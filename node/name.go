package node

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Limits on a node name name@host:port.
const (
	maxNamePart = 64  // the part before '@'
	maxNameLen  = 255 // the whole name
)

// nodeName is a parsed, validated node name.
type nodeName struct {
	name string // before '@'
	host string // host name or IP; IPv6 without brackets
	port int
}

// String returns the canonical form name@host:port ([v6]:port for IPv6).
func (n nodeName) String() string {
	return n.name + "@" + net.JoinHostPort(n.host, strconv.Itoa(n.port))
}

// addr returns host:port, the address to dial.
func (n nodeName) addr() string { return net.JoinHostPort(n.host, strconv.Itoa(n.port)) }

// parseName validates s as name@host:port. The name part is 1-64 characters
// of letters, digits, '_', '-' and '.'; the host is a DNS name or an IP
// address (IPv6 in brackets); the port is 0-65535, where 0 asks Start to bind
// a free port.
func parseName(s string) (nodeName, error) {
	bad := func(why string) (nodeName, error) {
		return nodeName{}, fmt.Errorf("%w: %q: %s", ErrBadName, s, why)
	}
	if len(s) > maxNameLen {
		return bad("longer than 255 bytes")
	}
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return bad("missing '@'")
	}
	name, addr := s[:at], s[at+1:]
	if name == "" || len(name) > maxNamePart {
		return bad("name part must be 1-64 characters")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isNameByte(c) {
			return bad(fmt.Sprintf("name part has %q", c))
		}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return bad("want host:port after '@'")
	}
	if host == "" {
		return bad("empty host")
	}
	if !validHost(host) {
		return bad("host is neither an IP address nor a DNS name")
	}
	if portStr == "" || len(portStr) > 5 {
		return bad("bad port")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 || portStr[0] == '+' || portStr[0] == '-' {
		return bad("port must be 0-65535")
	}
	return nodeName{name: name, host: host, port: port}, nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// validHost accepts an IP address or a DNS name (labels of letters, digits
// and '-', not starting or ending with '-').
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
