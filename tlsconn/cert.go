package tlsconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// DefaultValidity is how long a certificate made by [NewCertificate] claims
// to be valid when no validity is given. Nobody verifies it (see the package
// documentation); it is short so that a leaked key is worth little.
const DefaultValidity = 48 * time.Hour

// ErrCertificate reports that an ephemeral certificate could not be made.
var ErrCertificate = errors.New("tlsconn: cannot make certificate")

// NewCertificate makes a fresh self-signed ECDSA P-256 certificate valid for
// validity (DefaultValidity when zero or negative) from one minute ago. The
// certificate gives TLS its key exchange; it does not authenticate the node.
// Safe from any goroutine.
func NewCertificate(validity time.Duration) (tls.Certificate, error) {
	if validity <= 0 {
		validity = DefaultValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mesh ephemeral"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerConfig returns the configuration for the accepting side of a peer
// link: TLS 1.3 only, the given certificate, no session tickets (every link
// is a full handshake bound to its own exporter value) and fixed-size
// records. Safe from any goroutine; the result may be shared.
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		MaxVersion:                  tls.VersionTLS13,
		Certificates:                []tls.Certificate{cert},
		ClientAuth:                  tls.NoClientCert,
		SessionTicketsDisabled:      true,
		DynamicRecordSizingDisabled: true,
	}
}

// ClientConfig returns the configuration for the dialling side of a peer
// link: TLS 1.3 only, fixed-size records, no session resumption, and
// InsecureSkipVerify. Skipping verification is deliberate: the peer's
// certificate is ephemeral and self-signed, so there is nothing to verify it
// against; the peer is authenticated by the cookie proof bound to this
// connection's TLS exporter value, which a man in the middle cannot forge.
// Never use this configuration for anything but Mesh peer links.
// Safe from any goroutine; the result may be shared.
func ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		MaxVersion:                  tls.VersionTLS13,
		InsecureSkipVerify:          true, // the cookie proof authenticates; see above
		SessionTicketsDisabled:      true,
		DynamicRecordSizingDisabled: true,
	}
}
