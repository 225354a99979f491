package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// testCert is a certificate and its key, signed by parent (self-signed when
// parent is nil).
type testCert struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newTestCert(t *testing.T, tmpl *x509.Certificate, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: cert, der: der, key: key}
}

func (c *testCert) tls() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.der}, PrivateKey: c.key}
}

// write writes the certificate and key as PEM files and returns their
// paths.
func (c *testCert) write(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLS runs a broker that requires mutual TLS: the sink connects with
// the CA file and its client certificate, and fails without them.
func TestTLS(t *testing.T) {
	ca := newTestCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil)
	srv := newTestCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "broker"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca)
	cli := newTestCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "trackd"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	c := newCluster(t, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{srv.tls()},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}), kfake.SeedTopics(1, DefaultTopic))
	brokers := c.ListenAddrs()

	dir := t.TempDir()
	caFile, _ := ca.write(t, dir, "ca")
	certFile, keyFile := cli.write(t, dir, "client")

	for name, o := range map[string]TLSOptions{
		"system roots":       {Enable: true},
		"no client cert":     {CAFile: caFile},
		"client cert, no CA": {CertFile: certFile, KeyFile: keyFile},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if s, err := New(ctx, Options{Brokers: brokers, TLS: o}); err == nil {
				s.Close()
				t.Fatal("connected")
			} else {
				t.Log(err)
			}
		})
	}
	s := newSink(t, brokers, Options{TLS: TLSOptions{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}})
	sendAll(t, s, testRecords(0, 5))
}
