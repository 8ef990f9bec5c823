package global

import (
	"cmp"
	"strings"

	"github.com/meshrt/mesh/codec"
)

// Entry is one registration: a name bound to a process, stamped with the
// Lamport version and the node (Origin) that made the registration. The four
// fields together identify the registration: registering the same name again
// later gives a new Entry with a higher Version, so a late removal aimed at
// the old one cannot remove the new one.
type Entry struct {
	Name    string
	PID     codec.PID
	Version uint64 // Lamport time of the Register call on Origin
	Origin  string // node on which Register was called
}

// Wins reports whether registration a beats registration b for the same
// name. It is the conflict rule: every node applies it alike, so every node
// picks the same winner from the same candidates.
//
// The lower Version wins: the registration that was made first in Lamport
// order keeps the name (two registrations only conflict when neither node had
// seen the other's, so this favours the earlier of two concurrent claims and
// the older side of a healed partition). Ties are broken by the PID (node
// name, then incarnation, then serial), then by Origin; the lower wins.
//
// The order is total and strict: Wins(a, a) is false, and for two distinct
// entries exactly one of Wins(a, b) and Wins(b, a) is true. Wins is a pure
// function; it ignores Name.
func Wins(a, b Entry) bool {
	return compareEntries(a, b) < 0
}

func compareEntries(a, b Entry) int {
	if c := cmp.Compare(a.Version, b.Version); c != 0 {
		return c
	}
	if c := comparePIDs(a.PID, b.PID); c != 0 {
		return c
	}
	return strings.Compare(a.Origin, b.Origin)
}

func comparePIDs(a, b codec.PID) int {
	if c := strings.Compare(a.Node, b.Node); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Incarnation, b.Incarnation); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}
