package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// testCA makes a CA and, for each name, a certificate it signed that
// names the node (DNS SAN), as replication's TLS expects.
func testCA(t *testing.T, names ...string) (*x509.CertPool, map[string]tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	certs := map[string]tls.Certificate{}
	for i, n := range names {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: n}, DNSNames: []string{n},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		certs[n] = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	return pool, certs
}

func tlsConfig(pool *x509.CertPool, cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
}

// TestTLS: with mutual TLS on both sides messages flow; a peer whose
// certificate another CA signed gets no session.
func TestTLS(t *testing.T) {
	pool, certs := testCA(t, "alpha", "beta")
	a, _, ra, rb := pair(t, 1, func(a, b *Config) {
		a.TLS = tlsConfig(pool, certs["alpha"])
		b.TLS = tlsConfig(pool, certs["beta"])
	})
	s := waitUp(t, ra)
	waitUp(t, rb)
	waitConns(t, a)
	for i := range uint64(500) {
		send(t, s, Data, i, 5000, nil)
	}
	waitGot(t, rb, Data, 500)

	other, otherCerts := testCA(t, "beta")
	_, b2, ra2, _ := pair(t, 1, func(a, b *Config) {
		a.TLS = tlsConfig(pool, certs["alpha"])
		b.TLS = tlsConfig(other, otherCerts["beta"])
	})
	select {
	case <-ra2.upCh:
		t.Fatal("a session came up with a certificate from another CA")
	case <-time.After(500 * time.Millisecond):
	}
	if b2.Session() != nil {
		t.Fatal("the acceptor has a session")
	}
}
