// Copyright: crdb.tls contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

package certsdir

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// SystemTenantID is the tenant a KV node's own SQL layer serves.
const SystemTenantID = 1

// SystemTenantName is its name.
const SystemTenantName = "system"

// Identity is how the cluster is configured to read certificates:
// --cert-principal-map, --node-cert-distinguished-name,
// --root-cert-distinguished-name.
type Identity struct {
	PrincipalMap map[string]string
	NodeDN       *DN
	RootDN       *DN
}

// ParsePrincipalMap reads "a:b,c:d" as --cert-principal-map does (each
// entry split on its last colon; empty entries ignored).
func ParsePrincipalMap(value string) (map[string]string, error) {
	m := map[string]string{}
	if value == "" {
		return m, nil
	}
	for _, entry := range strings.Split(value, ",") {
		if entry == "" {
			continue
		}
		idx := strings.LastIndexByte(entry, ':')
		if idx == -1 {
			return nil, fmt.Errorf("invalid <cert-principal>:<db-principal> mapping: %q", entry)
		}
		m[entry[:idx]] = entry[idx+1:]
	}
	return m, nil
}

func (id Identity) transform(name string) string {
	if mapped, ok := id.PrincipalMap[name]; ok {
		return mapped
	}
	return name
}

// Scope is one (user, tenant) a certificate may authenticate as.
type Scope struct {
	User       string
	TenantID   uint64
	TenantName string
	Global     bool
}

// ValidOnSystemTenant: a global scope, or one naming the system tenant.
func (s Scope) ValidOnSystemTenant() bool {
	return s.Global || s.TenantID == SystemTenantID || (s.TenantName != "" && s.TenantName == SystemTenantName)
}

func isCRDBURI(u *url.URL) bool {
	return u.Scheme == "crdb" && (u.Host == "tenant" || u.Host == "tenant-name")
}

// parseScopeURI reads crdb://tenant/<id>/user/<name> and
// crdb://tenant-name/<name>/user/<name>.
func parseScopeURI(u *url.URL) (Scope, error) {
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 3 || parts[1] != "user" || parts[0] == "" || parts[2] == "" {
		return Scope{}, fmt.Errorf("invalid tenant URI SAN %q", u.String())
	}
	if u.Host == "tenant-name" {
		return Scope{User: parts[2], TenantName: parts[0]}, nil
	}
	id, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil {
		return Scope{}, fmt.Errorf("invalid tenant ID %q in URI SAN %q", parts[0], u.String())
	}
	return Scope{User: parts[2], TenantID: id}, nil
}

// Scopes are a certificate's principals: its crdb:// URI SANs when it has
// any (not mapped), otherwise its CN and every DNS SAN, each through the
// principal map, valid on every tenant.
func (id Identity) Scopes(cert *x509.Certificate) ([]Scope, error) {
	var scopes []Scope
	for _, u := range cert.URIs {
		if !isCRDBURI(u) {
			continue
		}
		scope, err := parseScopeURI(u)
		if err != nil {
			return nil, err
		}
		scopes = append(scopes, scope)
	}
	if len(scopes) > 0 {
		return scopes, nil
	}
	scopes = append(scopes, Scope{User: id.transform(cert.Subject.CommonName), Global: true})
	for _, name := range cert.DNSNames {
		scopes = append(scopes, Scope{User: id.transform(name), Global: true})
	}
	return scopes, nil
}

// IsTenantCertificate: a tenant client cert (OU=Tenants) is never a user cert.
func IsTenantCertificate(cert *x509.Certificate) bool {
	for _, ou := range cert.Subject.OrganizationalUnit {
		if ou == "Tenants" {
			return true
		}
	}
	return false
}

// AuthenticateSQLUser is the SQL client-cert check of a node of the system
// tenant for `user` (the name in client.<user>.crt): the subject DN when one
// is configured for that user (root, node), else a scope naming the user
// that is valid on this tenant. It returns the user the cert authenticates
// as ("" when none) and why it does not authenticate `user`.
func (id Identity) AuthenticateSQLUser(cert *x509.Certificate, user string) (string, error) {
	if IsTenantCertificate(cert) {
		return "", errors.New("using tenant client certificate as user certificate is not allowed")
	}
	var wantDN *DN
	switch user {
	case "root":
		wantDN = id.RootDN
	case "node":
		wantDN = id.NodeDN
	}
	if wantDN != nil {
		got, err := CertificateDN(cert)
		if err != nil {
			return "", fmt.Errorf("could not parse certificate subject DN: %v", err)
		}
		if got.Equal(wantDN) {
			return user, nil
		}
		return "", fmt.Errorf("certificate DN %s does not match the configured DN %s for %q", got, wantDN, user)
	}
	scopes, err := id.Scopes(cert)
	if err != nil {
		return "", err
	}
	first := ""
	for _, s := range scopes {
		if s.User == "debuguser" {
			return "", errors.New("certificate has principal debuguser, which may not log in")
		}
		if !s.ValidOnSystemTenant() {
			continue
		}
		if s.User == user {
			return user, nil
		}
		if first == "" {
			first = s.User
		}
	}
	return first, fmt.Errorf("certificate authentication failed for user %q: the certificate is valid for %s",
		user, formatScopes(scopes))
}

func formatScopes(scopes []Scope) string {
	var out []string
	for _, s := range scopes {
		where := "all tenants"
		if !s.Global {
			if s.TenantName != "" {
				where = "tenant " + s.TenantName
			} else {
				where = fmt.Sprintf("tenant %d", s.TenantID)
			}
		}
		out = append(out, fmt.Sprintf("%q on %s", s.User, where))
	}
	if len(out) == 0 {
		return "nobody"
	}
	return strings.Join(out, ", ")
}

// AuthorizeNodeRPC is the node-to-node RPC rule on the peer's verified leaf:
// with a node or root DN configured, the subject DN must equal one of them;
// otherwise a principal node or root valid on this tenant.
func (id Identity) AuthorizeNodeRPC(cert *x509.Certificate) error {
	if id.NodeDN != nil || id.RootDN != nil {
		got, err := CertificateDN(cert)
		if err != nil {
			return fmt.Errorf("could not parse certificate subject DN: %v", err)
		}
		if (id.NodeDN != nil && got.Equal(id.NodeDN)) || (id.RootDN != nil && got.Equal(id.RootDN)) {
			return nil
		}
		return fmt.Errorf("need root or node client cert to perform RPCs on this server: cert dn %s did not match set root or node dn", got)
	}
	scopes, err := id.Scopes(cert)
	if err != nil {
		return err
	}
	for _, s := range scopes {
		if (s.User == "node" || s.User == "root") && s.ValidOnSystemTenant() {
			return nil
		}
	}
	return fmt.Errorf("need root or node client cert to perform RPCs on this server (cert is valid for %s)", formatScopes(scopes))
}

// ---------------------------------------------------------------- distinguished names

// Attr is one type=value of a relative distinguished name.
type Attr struct{ Type, Value string }

// DN is a distinguished name as a list of RDNs, in the order written (for a
// certificate: the order of its subject's encoding).
type DN struct{ RDNs [][]Attr }

func (d *DN) String() string {
	var rdns []string
	for _, rdn := range d.RDNs {
		var attrs []string
		for _, a := range rdn {
			attrs = append(attrs, a.Type+"="+escapeDNValue(a.Value))
		}
		rdns = append(rdns, strings.Join(attrs, "+"))
	}
	return strings.Join(rdns, ",")
}

func escapeDNValue(v string) string {
	var b strings.Builder
	for i, r := range v {
		switch {
		case strings.ContainsRune(",+\"\\<>;=", r),
			(i == 0 && (r == ' ' || r == '#')), (i == len(v)-1 && r == ' '):
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Equal: the same RDNs in the same order; within an RDN the same attributes
// in any order; types compared case-insensitively, values exactly.
func (d *DN) Equal(o *DN) bool {
	if d == nil || o == nil || len(d.RDNs) != len(o.RDNs) {
		return false
	}
	for i := range d.RDNs {
		a, b := d.RDNs[i], o.RDNs[i]
		if len(a) != len(b) {
			return false
		}
		for _, x := range a {
			found := false
			for _, y := range b {
				if strings.EqualFold(x.Type, y.Type) && x.Value == y.Value {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

// ParseDN reads an RFC 4514 string ("CN=node,O=Example"): RDNs separated by
// unescaped commas, multi-valued RDNs by '+', backslash escapes (\, or \2C).
func ParseDN(s string) (*DN, error) {
	dn := &DN{}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty distinguished name")
	}
	var rdn []Attr
	var typ, val strings.Builder
	inValue := false
	finishAttr := func() error {
		t := strings.TrimSpace(typ.String())
		v := strings.TrimSpace(val.String())
		if t == "" || !inValue {
			return fmt.Errorf("invalid distinguished name %q", s)
		}
		rdn = append(rdn, Attr{Type: t, Value: v})
		typ.Reset()
		val.Reset()
		inValue = false
		return nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inValue:
			if i+1 >= len(s) {
				return nil, fmt.Errorf("invalid escape at the end of %q", s)
			}
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				b, _ := hex.DecodeString(s[i+1 : i+3])
				val.Write(b)
				i += 2
			} else {
				val.WriteByte(s[i+1])
				i++
			}
		case c == '=' && !inValue:
			inValue = true
		case (c == ',' || c == ';') && inValue:
			if err := finishAttr(); err != nil {
				return nil, err
			}
			dn.RDNs = append(dn.RDNs, rdn)
			rdn = nil
		case c == '+' && inValue:
			if err := finishAttr(); err != nil {
				return nil, err
			}
		case inValue:
			val.WriteByte(c)
		default:
			typ.WriteByte(c)
		}
	}
	if err := finishAttr(); err != nil {
		return nil, err
	}
	dn.RDNs = append(dn.RDNs, rdn)
	return dn, nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

var attrNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.5": "SERIALNUMBER", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
	"2.5.4.9": "STREET", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.17": "POSTALCODE",
	"0.9.2342.19200300.100.1.1": "UID", "0.9.2342.19200300.100.1.25": "DC",
}

// CertificateDN is the certificate's subject in the order it is encoded.
func CertificateDN(cert *x509.Certificate) (*DN, error) {
	var seq pkix.RDNSequence
	if _, err := asn1.Unmarshal(cert.RawSubject, &seq); err != nil {
		return nil, err
	}
	dn := &DN{}
	for _, set := range seq {
		var rdn []Attr
		for _, atv := range set {
			typ, ok := attrNames[atv.Type.String()]
			if !ok {
				typ = atv.Type.String()
			}
			value, ok := atv.Value.(string)
			if !ok {
				value = fmt.Sprint(atv.Value)
			}
			rdn = append(rdn, Attr{Type: typ, Value: value})
		}
		dn.RDNs = append(dn.RDNs, rdn)
	}
	return dn, nil
}
