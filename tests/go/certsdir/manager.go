// Copyright: crdb.tls contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

package certsdir

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
)

// Set is one loaded certs dir, as a node's certificate manager holds it.
type Set struct {
	Dir        string
	CA         *CertInfo
	ClientCA   *CertInfo
	UICA       *CertInfo
	TenantCA   *CertInfo
	Node       *CertInfo
	NodeClient *CertInfo // client.node.crt
	UI         *CertInfo
	// The tenant client cert of TenantID (a node of the system tenant has
	// id 0 here and selects none), as CockroachDB picks one.
	Tenant *CertInfo
	// Every client.<name>.crt, every client-tenant.<id>.crt and every
	// tenant-signing.<id>.crt, by name (the manager keeps only its own
	// tenant's; the verdict looks at all of them).
	Clients       map[string]*CertInfo
	Tenants       map[string]*CertInfo
	TenantSigning map[string]*CertInfo
	All           []*CertInfo
	Skipped       []Skipped
}

// errNotFound is what checkValid says about a missing file.
var errNotFound = errors.New("not found")

// Valid is nil for a present, loadable file.
func Valid(ci *CertInfo) error {
	if ci == nil {
		return errNotFound
	}
	return ci.Err
}

// Manage loads dir as CertificateManager.LoadCertificates does. previous is
// the set in use (nil at start): a reload is refused when a certificate that
// was valid in it is now missing or broken (the guarded kinds only), and the
// error says which. tenantID is the tenant whose client cert the process
// uses (0: none, a KV node).
func Manage(dir string, opts Options, previous *Set, tenantID uint64) (*Set, error) {
	infos, skipped, err := Load(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("problem loading certs directory %s: %v", dir, err)
	}
	s := &Set{Dir: dir, Clients: map[string]*CertInfo{}, Tenants: map[string]*CertInfo{},
		TenantSigning: map[string]*CertInfo{}, All: infos, Skipped: skipped}
	for _, ci := range infos {
		switch ci.Usage {
		case UsageCA:
			s.CA = ci
		case UsageClientCA:
			s.ClientCA = ci
		case UsageUICA:
			s.UICA = ci
		case UsageTenantCA:
			s.TenantCA = ci
		case UsageNode:
			s.Node = ci
		case UsageUI:
			s.UI = ci
		case UsageTenant, UsageTenantSigning:
			id, err := strconv.ParseUint(ci.Name, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("invalid tenant id %s", ci.Name)
			}
			if ci.Usage == UsageTenant {
				s.Tenants[ci.Name] = ci
				if id == tenantID {
					s.Tenant = ci
				}
			} else {
				s.TenantSigning[ci.Name] = ci
			}
		case UsageClient:
			s.Clients[ci.Name] = ci
			if ci.Name == "node" {
				s.NodeClient = ci
			}
		}
	}
	if previous != nil {
		guarded := []struct {
			what      string
			old, next *CertInfo
		}{
			{"CA cert", previous.CA, s.CA},
			{"node cert", previous.Node, s.Node},
			{"client cert for 'node'", previous.NodeClient, s.NodeClient},
			{"CA certificate for client verification", previous.ClientCA, s.ClientCA},
			{"CA certificate for UI", previous.UICA, s.UICA},
			{"UI certificate", previous.UI, s.UI},
			{"tenant client CA certificate", previous.TenantCA, s.TenantCA},
			{"tenant client certificate", previous.Tenant, s.Tenant},
		}
		for _, g := range guarded {
			if Valid(g.old) == nil && Valid(g.next) != nil {
				return nil, fmt.Errorf("reload would lose valid %s: %v", g.what, describe(g.next))
			}
		}
	}
	if tenantID != 0 && s.Tenant == nil {
		return nil, fmt.Errorf("tenant client cert not found for %d in %s", tenantID, dir)
	}
	if s.NodeClient == nil && s.Node != nil && s.Node.Err != nil {
		return nil, fmt.Errorf("validating node cert: %v", s.Node.Err)
	}
	return s, nil
}

func describe(ci *CertInfo) string {
	if ci == nil {
		return "file is gone"
	}
	return ci.Err.Error()
}

// pool is x509.CertPool.AppendCertsFromPEM over the blobs; an error when no
// certificate at all could be added (CockroachDB's "failed to parse PEM data
// to pool").
func pool(blobs ...[]byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	var all []byte
	for _, b := range blobs {
		all = append(all, b...)
		all = append(all, '\n')
	}
	if !p.AppendCertsFromPEM(all) {
		return nil, errors.New("failed to parse PEM data to pool")
	}
	return p, nil
}

func need(ci *CertInfo, what string) (*CertInfo, error) {
	if err := Valid(ci); err != nil {
		return nil, fmt.Errorf("problem with %s: %v", what, err)
	}
	return ci, nil
}

// CACert is ca.crt, if usable.
func (s *Set) CACert() (*CertInfo, error) { return need(s.CA, "CA certificate") }

// ClientCACert is ca-client.crt when present, else ca.crt.
func (s *Set) ClientCACert() (*CertInfo, error) {
	if s.ClientCA == nil {
		return s.CACert()
	}
	return need(s.ClientCA, "client CA certificate")
}

// TenantCACert is ca-client-tenant.crt when present, else the client CA.
func (s *Set) TenantCACert() (*CertInfo, error) {
	if s.TenantCA == nil {
		return s.ClientCACert()
	}
	return need(s.TenantCA, "tenant client CA certificate")
}

// UICACert is ca-ui.crt when present, else ca.crt.
func (s *Set) UICACert() (*CertInfo, error) {
	if s.UICA == nil {
		return s.CACert()
	}
	return need(s.UICA, "UI CA certificate")
}

// NodeCert is node.crt.
func (s *Set) NodeCert() (*CertInfo, error) { return need(s.Node, "node certificate") }

// NodeClientCert is client.node.crt when present, else node.crt.
func (s *Set) NodeClientCert() (*CertInfo, error) {
	if s.NodeClient == nil {
		return s.NodeCert()
	}
	return need(s.NodeClient, "node client certificate")
}

// UICert is ui.crt when present, else node.crt.
func (s *Set) UICert() (*CertInfo, error) {
	if s.UI == nil {
		return s.NodeCert()
	}
	return need(s.UI, "UI certificate")
}

// KeyPair is tls.X509KeyPair over the file's cert and key contents.
func KeyPair(ci *CertInfo) (tls.Certificate, error) {
	pair, err := tls.X509KeyPair(ci.Contents, ci.KeyContents)
	if err != nil {
		return pair, fmt.Errorf("%s with %s: %v", ci.Filename, ci.KeyFilename, err)
	}
	return pair, nil
}

func baseConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// ClientCAPool is what the node's server verifies client certs with: the
// client CA plus the tenant client CA.
func (s *Set) ClientCAPool() (*x509.CertPool, error) {
	clientCA, err := s.ClientCACert()
	if err != nil {
		return nil, err
	}
	tenantCA, err := s.TenantCACert()
	if err != nil {
		return nil, err
	}
	p, err := pool(clientCA.Contents, tenantCA.Contents)
	if err != nil {
		return nil, fmt.Errorf("client CA pool (%s, %s): %v", clientCA.Filename, tenantCA.Filename, err)
	}
	return p, nil
}

// ServerConfig is the node's server config (RPC and SQL): node.crt, RootCAs
// from ca.crt, client certs verified if given against the client CA pool.
func (s *Set) ServerConfig() (*tls.Config, error) {
	ca, err := s.CACert()
	if err != nil {
		return nil, err
	}
	node, err := s.NodeCert()
	if err != nil {
		return nil, err
	}
	clientCAs, err := s.ClientCAPool()
	if err != nil {
		return nil, err
	}
	pair, err := KeyPair(node)
	if err != nil {
		return nil, err
	}
	roots, err := pool(ca.Contents)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", ca.Filename, err)
	}
	cfg := baseConfig()
	cfg.Certificates = []tls.Certificate{pair}
	cfg.RootCAs = roots
	cfg.ClientCAs = clientCAs
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	return cfg, nil
}

// NodeClientConfig is what a node dials other nodes with: client.node.crt
// (else node.crt), peers verified against ca.crt.
func (s *Set) NodeClientConfig() (*tls.Config, error) {
	ca, err := s.CACert()
	if err != nil {
		return nil, err
	}
	client, err := s.NodeClientCert()
	if err != nil {
		return nil, err
	}
	pair, err := KeyPair(client)
	if err != nil {
		return nil, err
	}
	roots, err := pool(ca.Contents)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", ca.Filename, err)
	}
	cfg := baseConfig()
	cfg.Certificates = []tls.Certificate{pair}
	cfg.RootCAs = roots
	return cfg, nil
}

// UIServerConfig is the DB Console's: ui.crt (else node.crt), no client certs.
func (s *Set) UIServerConfig() (*tls.Config, error) {
	ui, err := s.UICert()
	if err != nil {
		return nil, err
	}
	pair, err := KeyPair(ui)
	if err != nil {
		return nil, err
	}
	cfg := baseConfig()
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}

// UIClientRoots is what CockroachDB's own HTTP clients trust for the DB
// Console: ca-ui.crt (else ca.crt), plus ca-client-tenant.crt when present.
func (s *Set) UIClientRoots() (*x509.CertPool, error) {
	uiCA, err := s.UICACert()
	if err != nil {
		return nil, err
	}
	blobs := [][]byte{uiCA.Contents}
	if s.TenantCA != nil {
		if tenantCA, err := s.TenantCACert(); err == nil {
			blobs = append(blobs, tenantCA.Contents)
		}
	}
	p, err := pool(blobs...)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", uiCA.Filename, err)
	}
	return p, nil
}
