# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certs dirs built to CockroachDB's rules, good and bad, for the differential test.

Each scenario is a function that writes one certs dir with ``cryptography``
(independently of the collection's own issuing code) and returns its
settings: the hosts peers dial the node by, the DB Console hosts, the
cluster's identity flags, the process environment. ``build_all(root)``
writes every scenario under ``root`` and returns a list of
:class:`Scenario`.

What each scenario expects is NOT written here: the Go peer (Go's crypto/tls)
and the collection each give their verdict, and the test compares them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
HOSTS = ["localhost", "127.0.0.1"]
# A group no file in a scenario normally has: group-readable key tests.
OTHER_GID = 4242

_KEYS = {}


def key(kind="ec256", slot=0):
    """A private key of this kind; the same (kind, slot) gives the same key within one run."""
    if (kind, slot) not in _KEYS:
        if kind == "rsa":
            _KEYS[kind, slot] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind == "ec256":
            _KEYS[kind, slot] = ec.generate_private_key(ec.SECP256R1())
        elif kind == "ec521":
            _KEYS[kind, slot] = ec.generate_private_key(ec.SECP521R1())
        elif kind == "ed25519":
            _KEYS[kind, slot] = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(kind)
    return _KEYS[kind, slot]


def _name(cn, org="Cockroach", ou=None, cn_first=False):
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    if cn is not None:
        cn_attr = x509.NameAttribute(NameOID.COMMON_NAME, cn)
        attrs = [cn_attr] + attrs if cn_first else attrs + [cn_attr]
    return x509.Name(attrs)


class Cert:
    """A certificate with its key (the issuer of other certs, or a leaf to write)."""

    def __init__(self, cert, private_key):
        self.cert = cert
        self.key = private_key

    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, fmt="pkcs8"):
        if fmt == "pkcs1":
            form = serialization.PrivateFormat.TraditionalOpenSSL
        else:
            form = serialization.PrivateFormat.PKCS8
        return self.key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def make(cn, issuer=None, private_key=None, ca=False, path_len=None, eku=(SERVER, CLIENT), dns=(), ips=(),
         uris=(), not_before=None, not_after=None, permitted_dns=None, org="Cockroach", ou=None,
         hash_alg=None, subject=None, key_usage=True):
    """One certificate. issuer None: self-signed. eku None: no EKU extension."""
    private_key = private_key or key()
    subject = subject or _name(cn, org=org, ou=ou)
    issuer_name = issuer.cert.subject if issuer else subject
    signer = issuer.key if issuer else private_key
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer_name)
               .public_key(private_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - DAY)
               .not_valid_after(not_after or NOW + 30 * DAY))
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None), critical=True)
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=not ca and isinstance(private_key, rsa.RSAPrivateKey),
            content_commitment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
    if eku is not None and not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if ca and eku is not None and eku != (SERVER, CLIENT):
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if permitted_dns is not None:
        builder = builder.add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.DNSName(d) for d in permitted_dns], excluded_subtrees=None), critical=True)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()), critical=False)
    if isinstance(signer, ed25519.Ed25519PrivateKey):
        alg = None
    else:
        alg = hash_alg or hashes.SHA256()
    return Cert(builder.sign(signer, alg), private_key)


def root(cn="Cockroach CA", slot=0, **kw):
    kw.setdefault("path_len", 1)
    return make(cn, private_key=kw.pop("private_key", None) or key("rsa", slot), ca=True, eku=kw.pop("eku", None), **kw)


def node_cert(issuer, cn="node", eku=(SERVER, CLIENT), dns=("localhost",), ips=("127.0.0.1",), **kw):
    return make(cn, issuer=issuer, eku=eku, dns=dns, ips=ips, **kw)


def client_cert(issuer, cn, eku=(CLIENT,), **kw):
    return make(cn, issuer=issuer, eku=eku, **kw)


# ---- DER surgery for an X.509 v1 root (cryptography only writes v3) --------------------------

def _tlv(data, pos):
    tag = data[pos]
    length = data[pos + 1]
    head = 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos + 2:pos + 2 + n], "big")
        head = 2 + n
    return tag, pos + head, pos + head + length


def _der(tag, body):
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")
SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")


def _resign(cert, private_key, v1=False, sha1=False):
    """Re-sign an RSA certificate's TBS: without version and extensions (X.509 v1), or with SHA-1."""
    der = cert.public_bytes(serialization.Encoding.DER)
    cstart = _tlv(der, 0)[1]
    tstart, tend = _tlv(der, cstart)[1:]
    fields, pos = [], tstart
    while pos < tend:
        tag, end = _tlv(der, pos)[0::2]
        fields.append((tag, der[pos:end]))
        pos = end
    sig_alg = SHA1_WITH_RSA if sha1 else SHA256_WITH_RSA
    body, seen_alg = [], False
    for tag, raw in fields:
        if v1 and tag in (0xA0, 0xA3):
            continue
        if tag == 0x30 and not seen_alg:        # the first SEQUENCE is the signature algorithm
            raw, seen_alg = sig_alg, True
        body.append(raw)
    tbs = _der(0x30, b"".join(body))
    signature = private_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1() if sha1 else hashes.SHA256())
    return x509.load_der_x509_certificate(_der(0x30, tbs + sig_alg + _der(0x03, b"\x00" + signature)))


def v1_root(cn="Org v1 Root"):
    """A self-signed X.509 v1 certificate (no version field, no extensions), RSA/SHA-256."""
    private_key = key("rsa", 7)
    cert = _resign(make(cn, private_key=private_key, ca=True, eku=None).cert, private_key, v1=True)
    assert cert.version == x509.Version.v1, cert.version
    return Cert(cert, private_key)


def sha1_root(cn="Org SHA-1 Root"):
    """A self-signed CA whose own signature is sha1WithRSAEncryption."""
    private_key = key("rsa", 8)
    cert = _resign(make(cn, private_key=private_key, ca=True, path_len=1, eku=None).cert, private_key, sha1=True)
    assert cert.signature_hash_algorithm.name == "sha1"
    return Cert(cert, private_key)


# ---- writing -------------------------------------------------------------------------------

class Scenario:
    """One certs dir and the settings it is judged with."""

    def __init__(self, name, path, hosts=None, ui_hosts=(), principal_map="", node_cert_dn="", root_cert_dn="",
                 tenant_scope=False, skip_key_permission_check=False, process_gid=None):
        self.name = name
        self.path = path
        self.hosts = list(HOSTS if hosts is None else hosts)
        self.ui_hosts = list(ui_hosts)
        self.principal_map = principal_map
        self.node_cert_dn = node_cert_dn
        self.root_cert_dn = root_cert_dn
        self.tenant_scope = tenant_scope
        self.skip_key_permission_check = skip_key_permission_check
        self.process_gid = process_gid

    def describe(self):
        keys = ("hosts", "ui_hosts", "principal_map", "node_cert_dn", "root_cert_dn", "tenant_scope",
                "skip_key_permission_check", "process_gid")
        return ", ".join("%s=%r" % (k, getattr(self, k)) for k in keys if getattr(self, k) not in ("", None, False))


class Dir:
    def __init__(self, path):
        self.path = path
        os.makedirs(path, mode=0o700)

    def write(self, name, data, mode=0o644, gid=None):
        full = os.path.join(self.path, name)
        with open(full, "wb") as handle:
            handle.write(data)
        os.chmod(full, mode)
        if gid is not None:
            os.chown(full, 0, gid)
        return full

    def ca(self, name, *certs):
        self.write(name, b"".join(c.pem() for c in certs))

    def leaf(self, base, leaf, chain=(), key_mode=0o600, key_fmt="pkcs8", key_gid=None, key_of=None):
        self.write(base + ".crt", leaf.pem() + b"".join(c.pem() for c in chain))
        self.write(base + ".key", (key_of or leaf).key_pem(key_fmt), mode=key_mode, gid=key_gid)


def standard(d, ca, node=None, users=("root", "alice"), **leaf_kw):
    d.ca("ca.crt", ca)
    d.leaf("node", node or node_cert(ca), **leaf_kw)
    for user in users:
        d.leaf("client." + user, client_cert(ca, user))


SCENARIOS = []


def scenario(**settings):
    def register(fn):
        SCENARIOS.append((fn.__name__, fn, settings))
        return fn
    return register


# ---- the scenarios: layouts -----------------------------------------------------------------

@scenario()
def standard_good(d):
    standard(d, root())


@scenario()
def standard_rsa_pkcs1_keys(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, private_key=key("rsa", 1)), key_fmt="pkcs1")


@scenario()
def split_node_good(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, eku=(SERVER,)))
    d.leaf("client.node", client_cert(ca, "node"))


@scenario()
def split_ca_good(d):
    ca, cca = root(), root("Client CA", slot=1)
    d.ca("ca.crt", ca)
    d.ca("ca-client.crt", cca)
    d.leaf("node", node_cert(ca, eku=(SERVER,)))
    d.leaf("client.node", client_cert(cca, "node"))
    d.leaf("client.root", client_cert(cca, "root"))


@scenario()
def split_ca_without_client_node(d):
    ca, cca = root(), root("Client CA", slot=1)
    d.ca("ca.crt", ca)
    d.ca("ca-client.crt", cca)
    d.leaf("node", node_cert(ca))
    d.leaf("client.root", client_cert(cca, "root"))


@scenario()
def split_ca_client_node_signed_by_ca(d):
    ca, cca = root(), root("Client CA", slot=1)
    d.ca("ca.crt", ca)
    d.ca("ca-client.crt", cca)
    d.leaf("node", node_cert(ca, eku=(SERVER,)))
    d.leaf("client.node", client_cert(ca, "node"))


@scenario()
def split_ca_user_signed_by_ca(d):
    ca, cca = root(), root("Client CA", slot=1)
    d.ca("ca.crt", ca)
    d.ca("ca-client.crt", cca)
    d.leaf("node", node_cert(ca, eku=(SERVER,)))
    d.leaf("client.node", client_cert(cca, "node"))
    d.leaf("client.alice", client_cert(ca, "alice"))


@scenario()
def ui_crt_good(d):
    ca = root()
    standard(d, ca)
    d.leaf("ui", node_cert(ca, cn="ui", eku=(SERVER,)))


@scenario(ui_hosts=["console.example.com"])
def ca_ui_public_ui(d):
    ca, public = root(), root("Public Root", slot=2)
    standard(d, ca)
    d.ca("ca-ui.crt", public)
    d.leaf("ui", node_cert(public, cn="console.example.com", eku=(SERVER,), dns=("console.example.com",), ips=()))


@scenario(ui_hosts=["console.example.com"])
def public_ui_without_ca_ui(d):
    ca, public = root(), root("Public Root", slot=2)
    standard(d, ca)
    d.leaf("ui", node_cert(public, cn="console.example.com", eku=(SERVER,), dns=("console.example.com",), ips=()))


@scenario()
def ca_ui_without_ui_crt(d):
    ca, public = root(), root("Public Root", slot=2)
    standard(d, ca)
    d.ca("ca-ui.crt", public)


@scenario(ui_hosts=["console.example.com"])
def ui_host_not_in_ui_crt(d):
    ca = root()
    standard(d, ca)
    d.leaf("ui", node_cert(ca, cn="ui", eku=(SERVER,)))


@scenario()
def ui_crt_wrong_key(d):
    ca = root()
    standard(d, ca)
    d.leaf("ui", node_cert(ca, cn="ui", eku=(SERVER,)), key_of=client_cert(ca, "x", private_key=key("ec256", 9)))


# ---- chains ---------------------------------------------------------------------------------

@scenario()
def intermediate_serverauth_only_issues_clients(d):
    ca = root()
    inter = make("Server-only Intermediate", issuer=ca, private_key=key("ec256", 3), ca=True, path_len=0,
                 eku=(SERVER,))
    d.ca("ca.crt", ca)
    d.leaf("node", node_cert(inter), chain=(inter,))
    d.leaf("client.root", client_cert(inter, "root"), chain=(inter,))


@scenario()
def intermediate_good(d):
    ca = root()
    inter = make("Intermediate", issuer=ca, private_key=key("ec256", 3), ca=True, path_len=0)
    d.ca("ca.crt", ca)
    d.leaf("node", node_cert(inter), chain=(inter,))
    d.leaf("client.root", client_cert(inter, "root"), chain=(inter,))


@scenario()
def chain_longer_than_pathlen(d):
    ca = root(path_len=0)
    inter = make("Intermediate", issuer=ca, private_key=key("ec256", 3), ca=True, path_len=0)
    d.ca("ca.crt", ca)
    d.leaf("node", node_cert(inter), chain=(inter,))
    d.leaf("client.root", client_cert(inter, "root"), chain=(inter,))


@scenario()
def name_constraints_exclude_san(d):
    ca = root()
    inter = make("Constrained Intermediate", issuer=ca, private_key=key("ec256", 3), ca=True, path_len=0,
                 permitted_dns=["other.example"])
    d.ca("ca.crt", ca)
    d.leaf("node", node_cert(inter), chain=(inter,))
    d.leaf("client.root", client_cert(inter, "root"), chain=(inter,))


@scenario()
def intermediates_in_another_order(d):
    ca = root(path_len=2)
    inter1 = make("Intermediate 1", issuer=ca, private_key=key("ec256", 3), ca=True, path_len=1)
    inter2 = make("Intermediate 2", issuer=inter1, private_key=key("ec256", 4), ca=True, path_len=0)
    d.ca("ca.crt", ca)
    d.leaf("node", node_cert(inter2), chain=(inter1, inter2))
    d.leaf("client.root", client_cert(inter2, "root"), chain=(ca, inter1, inter2))


@scenario()
def intermediate_only_in_ca_crt(d):
    ca = root()
    inter = make("Intermediate", issuer=ca, private_key=key("ec256", 3), ca=True, path_len=0)
    d.ca("ca.crt", ca, inter)
    d.leaf("node", node_cert(inter))
    d.leaf("client.root", client_cert(inter, "root"))


@scenario()
def bundle_with_expired_old_root(d):
    new = root("Cockroach CA 2", slot=1)
    old = root("Cockroach CA 1", not_before=NOW - 400 * DAY, not_after=NOW - 10 * DAY)
    d.ca("ca.crt", new, old)
    d.leaf("node", node_cert(new))
    d.leaf("client.root", client_cert(new, "root"))


@scenario()
def bundle_old_root_signed_leaf(d):
    new = root("Cockroach CA 2", slot=1)
    old = root("Cockroach CA 1", not_before=NOW - 400 * DAY, not_after=NOW - 10 * DAY)
    d.ca("ca.crt", new, old)
    d.leaf("node", node_cert(new))
    d.leaf("client.root", client_cert(old, "root", not_before=NOW - 100 * DAY, not_after=NOW - 11 * DAY))


@scenario()
def sha1_self_signed_org_root(d):
    standard(d, sha1_root())


@scenario()
def x509_v1_root(d):
    standard(d, v1_root())


@scenario()
def any_extended_key_usage(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, eku=(ANY_EKU,)))


@scenario()
def leaf_without_eku(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, eku=None))


@scenario()
def node_cert_serverauth_only(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, eku=(SERVER,)))


@scenario()
def client_cert_serverauth_only(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.bob", client_cert(ca, "bob", eku=(SERVER,)))


@scenario()
def client_from_unknown_ca(d):
    ca, other = root(), root("Other CA", slot=3)
    standard(d, ca)
    d.leaf("client.bob", client_cert(other, "bob"))


@scenario()
def expired_node_cert(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, not_before=NOW - 40 * DAY, not_after=NOW - DAY))


@scenario()
def expired_client_cert(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.bob", client_cert(ca, "bob", not_before=NOW - 40 * DAY, not_after=NOW - DAY))


@scenario()
def not_yet_valid_client_cert(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.bob", client_cert(ca, "bob", not_before=NOW + DAY, not_after=NOW + 30 * DAY))


@scenario(hosts=["db1.example.com"])
def host_not_in_node_sans(d):
    standard(d, root())


@scenario(hosts=[])
def no_expected_hosts(d):
    standard(d, root())


@scenario()
def missing_ca_crt(d):
    ca = root()
    d.leaf("node", node_cert(ca))
    d.leaf("client.root", client_cert(ca, "root"))


@scenario()
def node_cert_with_key_block_appended(d):
    ca = root()
    standard(d, ca)
    node = node_cert(ca, private_key=key("ec256", 5))
    d.write("node.crt", node.pem() + node.key_pem())
    d.write("node.key", node.key_pem(), mode=0o600)


@scenario()
def client_node_broken_node_crt_good(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.node", client_cert(ca, "node"))
    d.write("client.node.crt", b"not a certificate\n")


@scenario()
def bad_filename_skipped(d):
    ca = root()
    standard(d, ca)
    d.ca("ca.old.crt", root("Old CA", slot=3))
    d.write("ca.old.crt.bak", b"junk")


# ---- keys -----------------------------------------------------------------------------------

@scenario()
def ed25519_keys(d):
    ca = root()
    d.ca("ca.crt", ca)
    d.leaf("node", node_cert(ca, private_key=key("ed25519", 1)))
    d.leaf("client.root", client_cert(ca, "root", private_key=key("ed25519", 2)))


@scenario()
def p521_keys(d):
    ca = make("P-521 CA", private_key=key("ec521", 1), ca=True, path_len=1, eku=None)
    d.ca("ca.crt", ca)
    d.leaf("node", node_cert(ca, private_key=key("ec521", 2)))
    d.leaf("client.root", client_cert(ca, "root", private_key=key("ec521", 3)))


@scenario()
def wrong_node_key(d):
    ca = root()
    standard(d, ca, key_of=client_cert(ca, "x", private_key=key("ec256", 9)))


@scenario()
def wrong_client_key(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.bob", client_cert(ca, "bob"), key_of=client_cert(ca, "x", private_key=key("ec256", 9)))


@scenario()
def setuid_bit_on_key(d):
    standard(d, root(), key_mode=0o4600)


@scenario()
def key_mode_0644(d):
    standard(d, root(), key_mode=0o644)


@scenario(skip_key_permission_check=True)
def key_mode_0644_skip_check(d):
    standard(d, root(), key_mode=0o644)


@scenario()
def key_0640_root_process_group(d):
    standard(d, root(), key_mode=0o640, key_gid=os.getgid())


@scenario()
def key_0640_root_other_group(d):
    standard(d, root(), key_mode=0o640, key_gid=OTHER_GID)


@scenario(process_gid=OTHER_GID)
def key_0640_group_of_the_process(d):
    standard(d, root(), key_mode=0o640, key_gid=OTHER_GID)


@scenario()
def key_0750_root_process_group(d):
    standard(d, root(), key_mode=0o750, key_gid=os.getgid())


@scenario()
def client_key_0640_other_group(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.bob", client_cert(ca, "bob"), key_mode=0o640, key_gid=OTHER_GID)


# ---- principals -----------------------------------------------------------------------------

@scenario()
def client_node_principal_as_dns_san(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, eku=(SERVER,)))
    d.leaf("client.node", client_cert(ca, "svc-node-client", dns=("node",)))


@scenario()
def client_node_without_principal_node(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, eku=(SERVER,)))
    d.leaf("client.node", client_cert(ca, "svc-node-client"))


@scenario()
def client_with_tenant_uri_for_other_user(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.alice", client_cert(ca, "alice", uris=("crdb://tenant/1/user/bob",)))


@scenario()
def client_with_tenant_uri_other_tenant(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.carol", client_cert(ca, "carol", uris=("crdb://tenant/5/user/carol",)))


@scenario(tenant_scope=True)
def client_with_tenant_uri_good(d):
    ca = root()
    standard(d, ca, users=("root",))
    d.leaf("client.dave", client_cert(ca, "dave", uris=("crdb://tenant/1/user/dave",)))


@scenario()
def client_name_not_sql_identifier(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.John.Smith", client_cert(ca, "John.Smith"))


@scenario()
def client_cn_differs_from_name(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.erin", client_cert(ca, "frank"))


@scenario(principal_map="CN Erin Example:erin")
def client_cn_mapped_to_name(d):
    ca = root()
    standard(d, ca)
    d.leaf("client.erin", client_cert(ca, "CN Erin Example"))


@scenario(principal_map="db1.example.com:node")
def org_node_cn_with_principal_map(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, cn="db1.example.com", dns=("db1.example.com", "localhost")))


@scenario()
def org_node_cn_without_principal_map(d):
    ca = root()
    standard(d, ca, node=node_cert(ca, cn="db1.example.com", dns=("db1.example.com", "localhost")))


@scenario(node_cert_dn="CN=db1.example.com,O=Example Org,OU=Databases")
def node_dn_matches(d):
    ca = root()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db1.example.com"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Databases")])
    standard(d, ca, node=node_cert(ca, subject=subject))


@scenario(node_cert_dn="CN=db2.example.com,O=Example Org,OU=Databases")
def node_dn_does_not_match(d):
    ca = root()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db1.example.com"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Databases")])
    standard(d, ca, node=node_cert(ca, subject=subject))


@scenario(root_cert_dn="CN=dba-admin,O=Example Org")
def root_dn_matches(d):
    ca = root()
    d.ca("ca.crt", ca)
    d.leaf("node", node_cert(ca))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dba-admin"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org")])
    d.leaf("client.root", client_cert(ca, None, subject=subject))
    d.leaf("client.alice", client_cert(ca, "alice"))


@scenario(root_cert_dn="CN=dba-admin,O=Example Org")
def root_dn_configured_cn_root_cert(d):
    standard(d, root())


# ---- tenants --------------------------------------------------------------------------------

@scenario()
def tenant_client_without_ca_client_tenant(d):
    ca = root()
    standard(d, ca)
    d.leaf("client-tenant.5", client_cert(ca, "5", ou="Tenants", eku=(SERVER, CLIENT)))


@scenario()
def tenant_client_with_ca_client_tenant(d):
    ca, tca = root(), root("Tenant CA", slot=4)
    standard(d, ca)
    d.ca("ca-client-tenant.crt", tca)
    d.leaf("client-tenant.5", client_cert(tca, "5", ou="Tenants", eku=(SERVER, CLIENT)))


@scenario()
def tenant_client_signed_by_ca_with_ca_client(d):
    ca, cca = root(), root("Client CA", slot=1)
    d.ca("ca.crt", ca)
    d.ca("ca-client.crt", cca)
    d.leaf("node", node_cert(ca, eku=(SERVER,)))
    d.leaf("client.node", client_cert(cca, "node"))
    d.leaf("client-tenant.7", client_cert(ca, "7", ou="Tenants", eku=(SERVER, CLIENT)))


@scenario()
def tenant_signing_pair(d):
    ca = root()
    standard(d, ca)
    signing = make("tenant signing 5", private_key=key("ed25519", 5), ca=False, eku=None)
    d.leaf("tenant-signing.5", signing)


@scenario()
def bad_tenant_id(d):
    ca = root()
    standard(d, ca)
    d.leaf("client-tenant.five", client_cert(ca, "five", ou="Tenants"))


@scenario()
def bad_tenant_signing_id(d):
    ca = root()
    standard(d, ca)
    d.leaf("tenant-signing.x1", make("tenant signing", private_key=key("ed25519", 5), eku=None))


@scenario()
def broken_ca_client_tenant(d):
    ca = root()
    standard(d, ca)
    d.write("ca-client-tenant.crt", b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")


def build_all(root_dir):
    """Write every scenario under root_dir; returns the list of Scenario."""
    built = []
    for name, fn, settings in SCENARIOS:
        path = os.path.join(root_dir, name)
        fn(Dir(path))
        built.append(Scenario(name, path, **settings))
    return built
