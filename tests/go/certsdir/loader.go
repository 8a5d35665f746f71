// Copyright: crdb.tls contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

// Package certsdir reads a CockroachDB certs dir the way a CockroachDB node
// does (pkg/security/certificate_loader.go and certificate_manager.go, as
// described in the project's reference notes), with nothing but Go's standard
// library. It is TEST code for the crdb.tls collection: the judge the
// collection's own verdicts are compared against. It is not CockroachDB.
package certsdir

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Usage is what a file in the certs dir is for, decided by its name alone.
type Usage int

// The file usages a node recognises.
const (
	UsageCA Usage = iota + 1
	UsageClientCA
	UsageTenantCA
	UsageUICA
	UsageNode
	UsageUI
	UsageClient
	UsageTenant
	UsageTenantSigning
)

func (u Usage) String() string {
	switch u {
	case UsageCA:
		return "CA"
	case UsageClientCA:
		return "Client CA"
	case UsageTenantCA:
		return "Tenant Client CA"
	case UsageUICA:
		return "UI CA"
	case UsageNode:
		return "Node"
	case UsageUI:
		return "UI"
	case UsageClient:
		return "Client"
	case UsageTenant:
		return "Tenant Client"
	case UsageTenantSigning:
		return "Tenant Signing"
	}
	return "unknown"
}

// IsCA is true for the usages whose key is never looked for.
func (u Usage) IsCA() bool {
	return u == UsageCA || u == UsageClientCA || u == UsageTenantCA || u == UsageUICA
}

// CertInfo is one recognised *.crt file: its contents, its key's, and the
// error that makes it unusable (nil when the loader found nothing wrong).
type CertInfo struct {
	Usage       Usage
	Filename    string
	Name        string // the middle part: user name or tenant id
	Contents    []byte
	KeyFilename string
	KeyContents []byte
	Parsed      []*x509.Certificate
	Err         error
}

// Options are the parts of the process environment the loader depends on.
type Options struct {
	// SkipPermissionCheck is COCKROACH_SKIP_KEY_PERMISSION_CHECK.
	SkipPermissionCheck bool
	// ProcessGID is os.Getgid() of the process reading the dir.
	ProcessGID int
}

// OptionsFromEnv are the options of the running process.
func OptionsFromEnv() Options {
	return Options{SkipPermissionCheck: envBool("COCKROACH_SKIP_KEY_PERMISSION_CHECK"), ProcessGID: os.Getgid()}
}

// envBool reads a variable as Go's strconv.ParseBool does (unset or unparsable: false).
func envBool(name string) bool {
	v, ok := os.LookupEnv(name)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// Skipped is a *.crt file with a name the loader does not recognise.
type Skipped struct {
	Filename string
	Reason   string
}

// UsageFromFilename splits a certificate file name as CockroachDB does
// (parts separated by dots; the first part decides; "client" and
// "client-tenant" and "tenant-signing" take the middle parts as the name).
func UsageFromFilename(filename string) (Usage, string, error) {
	parts := strings.Split(filename, ".")
	if len(parts) < 2 {
		return 0, "", errors.New("not enough parts found")
	}
	single := map[string]Usage{
		"ca": UsageCA, "ca-client": UsageClientCA, "ca-client-tenant": UsageTenantCA,
		"ca-ui": UsageUICA, "node": UsageNode, "ui": UsageUI,
	}
	named := map[string]Usage{"client": UsageClient, "client-tenant": UsageTenant, "tenant-signing": UsageTenantSigning}
	if u, ok := single[parts[0]]; ok {
		if len(parts) != 2 {
			return 0, "", fmt.Errorf("%s certificate filename should match %s.crt", u, parts[0])
		}
		return u, "", nil
	}
	if u, ok := named[parts[0]]; ok {
		name := strings.Join(parts[1:len(parts)-1], ".")
		if name == "" {
			return 0, "", fmt.Errorf("%s certificate filename should match %s.<name>.crt", u, parts[0])
		}
		return u, name, nil
	}
	return 0, "", fmt.Errorf("unknown prefix %q", parts[0])
}

// Load reads every recognised *.crt of dir (a missing dir holds nothing).
// Problems with one file are kept in its CertInfo.Err; only an unreadable dir
// is an error.
func Load(dir string, opts Options) ([]*CertInfo, []Skipped, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var infos []*CertInfo
	var skipped []Skipped
	for _, entry := range entries {
		name := entry.Name()
		if entry.IsDir() || !strings.HasSuffix(name, ".crt") {
			continue
		}
		usage, middle, err := UsageFromFilename(name)
		if err != nil {
			skipped = append(skipped, Skipped{Filename: name, Reason: err.Error()})
			continue
		}
		ci := &CertInfo{Usage: usage, Filename: name, Name: middle}
		ci.Contents, _ = os.ReadFile(filepath.Join(dir, name))
		if err := parseCertificates(ci); err != nil {
			ci.Err = err
		} else if err := findKey(dir, ci, opts); err != nil {
			ci.Err = err
		}
		infos = append(infos, ci)
	}
	return infos, skipped, nil
}

// parseCertificates: at least one PEM block, every block CERTIFICATE, every
// certificate parsable by crypto/x509.
func parseCertificates(ci *CertInfo) error {
	if len(ci.Contents) == 0 {
		return fmt.Errorf("empty certificate file: %s", ci.Filename)
	}
	rest := ci.Contents
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("failed to parse certificate file %s as PEM: block #%d is of type %s, not CERTIFICATE",
				ci.Filename, len(certs), block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("failed to parse certificate %d in file %s: %v", len(certs), ci.Filename, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return fmt.Errorf("no certificates found in %s", ci.Filename)
	}
	ci.Parsed = certs
	return nil
}

// findKey: the key beside the cert (stat follows links), a regular file,
// the permission rule, readable.
func findKey(dir string, ci *CertInfo, opts Options) error {
	if ci.Usage.IsCA() {
		return nil
	}
	keyName := strings.TrimSuffix(ci.Filename, ".crt") + ".key"
	path := filepath.Join(dir, keyName)
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("could not stat key file %s: %v", path, err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("key file %s is not a regular file", path)
	}
	if !opts.SkipPermissionCheck {
		if err := checkKeyPermissions(path, info, opts.ProcessGID); err != nil {
			return err
		}
	}
	contents, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("could not read key file %s: %v", path, err)
	}
	ci.KeyFilename = keyName
	ci.KeyContents = contents
	return nil
}

// exceeds: any rwx bit outside allowed (only Perm() bits count: setuid,
// setgid and sticky are not rwx bits).
func exceeds(mode, allowed fs.FileMode) bool {
	return mode.Perm()&(0o777^allowed) != 0
}

// checkKeyPermissions: at most 0700; 0740 when the key is owned by uid 0 and
// its group is the gid of the process.
func checkKeyPermissions(path string, info fs.FileInfo, processGID int) error {
	allowed := fs.FileMode(0o700)
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == 0 && int(st.Gid) == processGID {
		allowed = 0o740
	}
	if exceeds(info.Mode(), allowed) {
		return fmt.Errorf("key file %s has permissions %s, exceeds %s", path, info.Mode().Perm(), allowed)
	}
	return nil
}
