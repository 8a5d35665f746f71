// Copyright: crdb.tls contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

// crdb-peer is a TEST peer for the crdb.tls collection, not CockroachDB. It
// reads a certs dir as a CockroachDB node does (package certsdir) and makes
// real crypto/tls handshakes on 127.0.0.1 with the configs a node would
// build, then applies CockroachDB's principal rules to the verified chains.
//
//	crdb-peer verdict --certs-dir D [--host H]... [--ui-host H]...
//	          [--principal-map a:b,c:d] [--node-cert-dn DN] [--root-cert-dn DN]
//	          [--tenant-scope]
//
// prints one JSON object (see README.md). Exit status 0 whatever the verdict;
// 2 for bad arguments.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"crdbtls.invalid/gopeer/certsdir"
)

const handshakeTimeout = 5 * time.Second

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// Result is one verdict entry.
type Result struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// ClientResult adds the user the cert authenticates as.
type ClientResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	User  string `json:"user"`
}

// Verdict is the printed JSON.
type Verdict struct {
	Load    Result                  `json:"load"`
	Node    *Result                 `json:"node,omitempty"`
	UI      *Result                 `json:"ui,omitempty"`
	Clients map[string]ClientResult `json:"clients"`
	Tenants map[string]Result       `json:"tenants"`
}

func result(err error) Result {
	if err != nil {
		return Result{OK: false, Error: err.Error()}
	}
	return Result{OK: true}
}

func main() {
	if len(os.Args) < 2 || os.Args[1] != "verdict" {
		fmt.Fprintln(os.Stderr, "usage: crdb-peer verdict --certs-dir D [--host H]... [--ui-host H]... "+
			"[--principal-map a:b,c:d] [--node-cert-dn DN] [--root-cert-dn DN] [--tenant-scope]")
		os.Exit(2)
	}
	fset := flag.NewFlagSet("verdict", flag.ContinueOnError)
	certsDir := fset.String("certs-dir", "", "the certs dir")
	var hosts, uiHosts multi
	fset.Var(&hosts, "host", "a name or address peers dial this node by (repeatable)")
	fset.Var(&uiHosts, "ui-host", "a name or address the DB Console is reached by (repeatable)")
	principalMap := fset.String("principal-map", "", "--cert-principal-map")
	nodeDN := fset.String("node-cert-dn", "", "--node-cert-distinguished-name")
	rootDN := fset.String("root-cert-dn", "", "--root-cert-distinguished-name")
	// Client certs with tenant-scoped URI SANs are read by the same rule with
	// or without this flag: CockroachDB has no switch for it. Accepted so
	// that callers can pass the collection's setting through.
	fset.Bool("tenant-scope", false, "client certs carry crdb://tenant/<id>/user/<name> URI SANs (no effect on the rules)")
	if err := fset.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if *certsDir == "" {
		fmt.Fprintln(os.Stderr, "crdb-peer verdict: --certs-dir is required")
		os.Exit(2)
	}
	id := certsdir.Identity{}
	var err error
	if id.PrincipalMap, err = certsdir.ParsePrincipalMap(*principalMap); err != nil {
		fmt.Fprintln(os.Stderr, "crdb-peer verdict: --principal-map:", err)
		os.Exit(2)
	}
	for _, dn := range []struct {
		value string
		into  **certsdir.DN
		flag  string
	}{{*nodeDN, &id.NodeDN, "--node-cert-dn"}, {*rootDN, &id.RootDN, "--root-cert-dn"}} {
		if dn.value == "" {
			continue
		}
		if *dn.into, err = certsdir.ParseDN(dn.value); err != nil {
			fmt.Fprintf(os.Stderr, "crdb-peer verdict: %s: %v\n", dn.flag, err)
			os.Exit(2)
		}
	}
	v := verdict(*certsDir, hosts, uiHosts, id)
	var printed interface{} = v
	if !v.Load.OK {
		printed = map[string]Result{"load": v.Load} // nothing else when the dir does not load
	}
	out, _ := json.MarshalIndent(printed, "", "  ")
	fmt.Println(string(out))
}

func verdict(dir string, hosts, uiHosts []string, id certsdir.Identity) Verdict {
	set, err := certsdir.Manage(dir, certsdir.OptionsFromEnv(), nil, 0)
	if err != nil {
		return Verdict{Load: result(err)}
	}
	v := Verdict{Load: Result{OK: true}, Clients: map[string]ClientResult{}, Tenants: map[string]Result{}}
	if set.Node != nil {
		r := result(nodeToNode(set, hosts, id))
		v.Node = &r
	}
	if set.UI != nil || set.Node != nil {
		if len(uiHosts) == 0 {
			uiHosts = hosts
		}
		r := result(dbConsole(set, uiHosts))
		v.UI = &r
	}
	names := make([]string, 0, len(set.Clients))
	for name := range set.Clients {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		user, err := sqlClient(set, set.Clients[name], id)
		r := ClientResult{OK: err == nil, User: user}
		if err != nil {
			r.Error = err.Error()
		}
		v.Clients[name] = r
	}
	for name, ci := range set.Tenants {
		v.Tenants[name] = result(tenantClient(set, ci))
	}
	return v
}

// ------------------------------------------------------------------ handshakes

// handshake runs one TLS handshake over a fresh 127.0.0.1 listener and
// returns what the server side saw. Either side failing is an error.
func handshake(server, client *tls.Config) (tls.ConnectionState, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer ln.Close()
	type side struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan side, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- side{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
		tc := tls.Server(conn, server)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3: the client's cert is checked after the client has
			// finished; one byte each way makes both sides see the outcome.
			_, err = tc.Write([]byte{1})
		}
		done <- side{state: tc.ConnectionState(), err: err}
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), handshakeTimeout)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Client(conn, client)
	clientErr := tc.Handshake()
	if clientErr == nil {
		buf := make([]byte, 1)
		_, clientErr = tc.Read(buf)
	}
	srv := <-done
	switch {
	case srv.err != nil && clientErr != nil:
		return srv.state, fmt.Errorf("server: %v; client: %v", srv.err, clientErr)
	case srv.err != nil:
		return srv.state, fmt.Errorf("server: %v", srv.err)
	case clientErr != nil:
		return srv.state, fmt.Errorf("client: %v", clientErr)
	}
	return srv.state, nil
}

// withServerName: the client config for one expected host. Without hosts the
// chain is verified with no host name (what x509.Verify does for DNSName "").
func withServerName(cfg *tls.Config, host string) *tls.Config {
	c := cfg.Clone()
	if host != "" {
		c.ServerName = host
		return c
	}
	roots := c.RootCAs
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, cert := range cs.PeerCertificates[1:] {
			inter.AddCert(cert)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
	return c
}

func hostsOrNone(hosts []string) []string {
	if len(hosts) == 0 {
		return []string{""}
	}
	return hosts
}

// nodeToNode: this node's client config dials its server config, once per
// expected host; then the RPC rule on the client cert the server verified.
func nodeToNode(set *certsdir.Set, hosts []string, id certsdir.Identity) error {
	server, err := set.ServerConfig()
	if err != nil {
		return fmt.Errorf("server config: %v", err)
	}
	client, err := set.NodeClientConfig()
	if err != nil {
		return fmt.Errorf("node client config: %v", err)
	}
	for _, host := range hostsOrNone(hosts) {
		state, err := handshake(server, withServerName(client, host))
		if err != nil {
			return fmt.Errorf("handshake for host %q: %v", host, err)
		}
		if len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
			return fmt.Errorf("host %q: the server got no verified client certificate (%s does not chain to the client CA pool)",
				host, outgoingName(set))
		}
		if err := id.AuthorizeNodeRPC(state.PeerCertificates[0]); err != nil {
			return fmt.Errorf("%s: %v", outgoingName(set), err)
		}
	}
	return nil
}

func outgoingName(set *certsdir.Set) string {
	if set.NodeClient != nil {
		return set.NodeClient.Filename
	}
	return "node.crt"
}

// dbConsole: the DB Console's server config, dialled by a client trusting
// what CockroachDB's HTTP clients trust, once per expected UI host.
func dbConsole(set *certsdir.Set, hosts []string) error {
	server, err := set.UIServerConfig()
	if err != nil {
		return fmt.Errorf("DB Console server config: %v", err)
	}
	roots, err := set.UIClientRoots()
	if err != nil {
		return fmt.Errorf("DB Console client config: %v", err)
	}
	client := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	for _, host := range hostsOrNone(hosts) {
		if _, err := handshake(server, withServerName(client, host)); err != nil {
			return fmt.Errorf("handshake for host %q: %v", host, err)
		}
	}
	return nil
}

// probeServer is a server that verifies client certs against pool (required)
// and presents a throwaway certificate: the client's side of the handshake
// is judged, not this node's server cert.
func probeServer(clientCAs *x509.CertPool) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crdb-peer probe"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientCAs:    clientCAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

func presentAsClient(ci *certsdir.CertInfo, clientCAs *x509.CertPool) (tls.ConnectionState, error) {
	if err := certsdir.Valid(ci); err != nil {
		return tls.ConnectionState{}, err
	}
	pair, err := certsdir.KeyPair(ci)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	server, err := probeServer(clientCAs)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	client := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}}
	state, err := handshake(server, client)
	if err != nil {
		return state, fmt.Errorf("handshake: %v", err)
	}
	if len(state.VerifiedChains) == 0 {
		return state, errors.New("no verified client certificate")
	}
	return state, nil
}

// sqlClient: client.<name>.crt presented to this node's server (client CA
// pool), then authenticated as SQL user <name>.
func sqlClient(set *certsdir.Set, ci *certsdir.CertInfo, id certsdir.Identity) (string, error) {
	pool, err := set.ClientCAPool()
	if err != nil {
		return "", fmt.Errorf("server config: %v", err)
	}
	state, err := presentAsClient(ci, pool)
	if err != nil {
		return "", err
	}
	return id.AuthenticateSQLUser(state.PeerCertificates[0], ci.Name)
}

// tenantClient: client-tenant.<id>.crt verified against the tenant client CA
// (ca-client-tenant.crt, else ca-client.crt, else ca.crt).
func tenantClient(set *certsdir.Set, ci *certsdir.CertInfo) error {
	ca, err := set.TenantCACert()
	if err != nil {
		return err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(ca.Contents) {
		return fmt.Errorf("%s: failed to parse PEM data to pool", ca.Filename)
	}
	_, err = presentAsClient(ci, p)
	return err
}
