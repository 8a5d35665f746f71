# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one judgement (verifier.py): Go's x509.Verify, tls.X509KeyPair, CockroachDB's loader and principal rules.

Every odd certificate is real, built with cryptography (or the openssl CLI where cryptography refuses:
SHA-1 signatures, X.509 v1).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import os
import shutil
import subprocess
import sys

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.crdb.tls.plugins.module_utils import pki, rules, verifier
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

NOW = pki.utcnow()
DAY = datetime.timedelta(days=1)
SERVER, CLIENT = rules.EKU_SERVER, rules.EKU_CLIENT
EKU = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH,
       "any": x509.ObjectIdentifier("2.5.29.37.0")}


def _key(kind="p256"):
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    raise ValueError(kind)


def _name(cn, o=None, ou=None):
    attrs = []
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class C(object):
    """A certificate and its key."""

    def __init__(self, cert, key):
        self.cert, self.key = cert, key


def make(cn, issuer=None, key=None, ca=False, path_len=None, ekus=("server", "client"), dns=(), ips=(), uris=(),
         nc=None, before=None, after=None, ku_sign=True, o="Cockroach", ou=None, subject=None, critical=()):
    """A certificate; ``issuer`` None: self-signed. ``ekus`` None: no EKU extension."""
    key = key or _key()
    name = subject or _name(cn, o, ou)
    signer = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.cert.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(before or NOW - DAY).not_valid_after(after or NOW + 30 * DAY))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, ku_sign, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                        critical=True)
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([EKU[e] for e in ekus]), critical=False)
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + \
        [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if nc is not None:
        builder = builder.add_extension(nc, critical=True)
    for oid in critical:
        builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), b"\x05\x00"),
                                        critical=True)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return C(builder.sign(signer, algorithm), key)


@pytest.fixture(scope="module")
def root():
    return make("Cockroach CA", ca=True, path_len=1, ekus=None)


def node_leaf(issuer, **kw):
    kw.setdefault("dns", ["n1.example.com"])
    kw.setdefault("ips", ["10.0.0.1"])
    return make(kw.pop("cn", "node"), issuer=issuer, **kw)


def ok(leaf, pool, roots, usage=SERVER, host=None, now=None):
    chain, why = verifier.verify(leaf.cert, [c.cert for c in pool], [r.cert for r in roots], usage, host=host,
                                 now=now)
    return why


# ---------------------------------------------------------------- chain building as Go does


def test_plain_chain_verifies_both_usages(root):
    leaf = node_leaf(root)
    assert ok(leaf, [], [root]) is None
    assert ok(leaf, [], [root], CLIENT) is None
    assert ok(leaf, [], [root], host="n1.example.com") is None
    assert ok(leaf, [], [root], host="10.0.0.1") is None


def test_hostname_is_matched_against_sans_only(root):
    leaf = node_leaf(root, cn="n9.example.com")
    assert "not valid for n9.example.com" in ok(leaf, [], [root], host="n9.example.com")
    wild = node_leaf(root, dns=["*.example.com"], ips=[])
    assert ok(wild, [], [root], host="a.example.com") is None
    assert "not valid for a.b.example.com" in ok(wild, [], [root], host="a.b.example.com")


def test_unordered_intermediates_pool(root):
    i1 = make("Int 1", issuer=root, ca=True, ekus=None)
    i2 = make("Int 2", issuer=i1, ca=True, ekus=None)
    leaf = node_leaf(i2)
    # root has pathLen 1 and there are 2 intermediates below it: Go refuses, whatever the pool's order
    # and whatever other root the bundle holds
    assert "pathLen" in ok(leaf, [i1, i2], [root])
    assert "pathLen" in ok(leaf, [i2, i1], [make("Root2", ca=True, ekus=None), root])
    free = make("Free Root", ca=True, ekus=None)
    j1 = make("J1", issuer=free, ca=True, ekus=None)
    j2 = make("J2", issuer=j1, ca=True, ekus=None)
    leaf = node_leaf(j2)
    assert ok(leaf, [j1, j2], [free]) is None        # leaf, int2, int1: the order after the leaf is irrelevant
    assert ok(leaf, [j2, j1], [free]) is None
    assert "signed by unknown authority" in ok(leaf, [j2], [free]) or "no chain" in ok(leaf, [j2], [free])


def test_path_len_of_an_intermediate():
    top = make("Top", ca=True, ekus=None)
    i1 = make("I1", issuer=top, ca=True, path_len=0, ekus=None)
    i2 = make("I2", issuer=i1, ca=True, ekus=None)
    leaf = node_leaf(i2)
    why = ok(leaf, [i1, i2], [top])
    assert "CN=I1" in why and "allows 0 intermediate(s)" in why
    assert ok(node_leaf(i1), [i1], [top]) is None


def test_eku_nests_through_intermediates():
    top = make("Top", ca=True, ekus=None)
    server_only = make("Server Int", issuer=top, ca=True, ekus=("server",))
    leaf = node_leaf(server_only)
    assert ok(leaf, [server_only], [top], SERVER) is None
    why = ok(leaf, [server_only], [top], CLIENT)
    assert why.startswith("incompatible key usage") and "CN=Server Int" in why and "clientAuth" in why


def test_any_eku_and_absent_eku():
    top = make("Top", ca=True, ekus=None)
    anyint = make("Any Int", issuer=top, ca=True, ekus=("any",))
    assert ok(node_leaf(anyint, ekus=("any",)), [anyint], [top], CLIENT) is None
    assert ok(node_leaf(anyint, ekus=None), [anyint], [top], SERVER) is None
    assert "incompatible key usage" in ok(node_leaf(top, ekus=("server",)), [], [top], CLIENT)


def test_name_constraints_dns_and_ip():
    top = make("Top", ca=True, ekus=None)
    nc = x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com"),
                                                  x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))],
                              excluded_subtrees=[x509.DNSName("bad.example.com")])
    inter = make("Constrained", issuer=top, ca=True, ekus=None, nc=nc)
    assert ok(node_leaf(inter), [inter], [top]) is None
    why = ok(node_leaf(inter, dns=["n1.bad.example.com"]), [inter], [top])
    assert "n1.bad.example.com is excluded" in why
    why = ok(node_leaf(inter, dns=["n1.example.org"]), [inter], [top])
    assert "n1.example.org is not permitted" in why
    why = ok(node_leaf(inter, ips=["192.168.1.1"]), [inter], [top])
    assert "192.168.1.1 is not permitted" in why


def test_validity_of_every_cert_in_the_chain():
    top = make("Top", ca=True, ekus=None)
    old = make("Old Int", issuer=top, ca=True, ekus=None, before=NOW - 10 * DAY, after=NOW - DAY)
    why = ok(node_leaf(old), [old], [top])
    assert "CN=Old Int" in why and "expired" in why
    expired_leaf = node_leaf(top, before=NOW - 10 * DAY, after=NOW - DAY)
    assert "expired" in ok(expired_leaf, [], [top])
    future = node_leaf(top, before=NOW + DAY, after=NOW + 10 * DAY)
    assert "not valid before" in ok(future, [], [top])


def test_bundle_with_expired_old_root_is_fine_and_warned():
    key = _key()
    old = make("Cockroach CA", key=key, ca=True, ekus=None, before=NOW - 100 * DAY, after=NOW - DAY)
    new = make("Cockroach CA", ca=True, ekus=None)
    leaf = node_leaf(new)
    assert ok(leaf, [], [old, new]) is None
    assert ok(leaf, [], [new, old]) is None
    warnings = verifier.ca_bundle_warnings("ca.crt", [new.cert, old.cert], NOW)
    assert [(w.effect, w.code) for w in warnings] == [("warning", "ca_unusable")]
    assert "expired" in warnings[0].message and "(certificate 2)" in warnings[0].message
    # leaf signed by the old (expired) root only: refused
    old_leaf = node_leaf(old)
    assert "expired" in ok(old_leaf, [], [new, old])


def test_unknown_critical_extension_refused(root):
    leaf = node_leaf(root, critical=("1.2.3.4.5",))
    assert "unhandled critical extension (1.2.3.4.5)" in ok(leaf, [], [root])


def test_issuer_must_be_a_ca_and_may_sign():
    top = make("Top", ca=True, ekus=None)
    not_ca = make("Not CA", issuer=top, ekus=None)
    assert "is not a CA" in ok(node_leaf(not_ca), [not_ca], [top])
    no_sign = make("No Sign", issuer=top, ca=True, ekus=None, ku_sign=False)
    assert "without keyCertSign" in ok(node_leaf(no_sign), [no_sign], [top])


def test_ed25519_and_p521_chains():
    top = make("Ed Root", key=_key("ed25519"), ca=True, ekus=None)
    leaf = node_leaf(top, key=_key("p521"))
    assert ok(leaf, [], [top]) is None
    leaf2 = node_leaf(top, key=_key("ed25519"))
    assert ok(leaf2, [], [top], CLIENT) is None


def _openssl(tmp_path, *args):
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("openssl CLI not installed")
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=str(tmp_path))


def test_sha1_self_signed_root_is_trusted_but_sha1_leaf_refused(tmp_path):
    _openssl(tmp_path, "req", "-x509", "-nodes", "-sha1", "-days", "30", "-subj", "/O=Org/CN=SHA1 Root",
             "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", "r.key", "-out", "r.crt",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    rcert = x509.load_pem_x509_certificate((tmp_path / "r.crt").read_bytes())
    rkey = serialization.load_pem_private_key((tmp_path / "r.key").read_bytes(), None)
    assert rcert.signature_hash_algorithm.name == "sha1"
    top = C(rcert, rkey)
    assert ok(node_leaf(top), [], [top]) is None
    warnings = verifier.ca_bundle_warnings("ca.crt", [rcert], pki.utcnow())
    assert [w.code for w in warnings] == ["ca_note"] and "SHA1 self-signature" in warnings[0].message
    # a SHA-1 signed leaf: Go refuses it
    leaf_key = _key()
    (tmp_path / "l.key").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    _openssl(tmp_path, "req", "-new", "-key", "l.key", "-subj", "/CN=node", "-out", "l.csr")
    _openssl(tmp_path, "x509", "-req", "-sha1", "-in", "l.csr", "-CA", "r.crt", "-CAkey", "r.key",
             "-CAcreateserial", "-days", "5", "-out", "l.crt")
    lcert = x509.load_pem_x509_certificate((tmp_path / "l.crt").read_bytes())
    assert "signed with SHA1, which Go refuses" in ok(C(lcert, leaf_key), [], [top])


def test_v1_root_is_trusted(tmp_path):
    _openssl(tmp_path, "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-keyout", "v1.key", "-subj", "/O=Org/CN=V1 Root", "-out", "v1.csr")
    _openssl(tmp_path, "x509", "-req", "-in", "v1.csr", "-signkey", "v1.key", "-days", "30", "-out", "v1.crt")
    cert = x509.load_pem_x509_certificate((tmp_path / "v1.crt").read_bytes())
    if cert.version != x509.Version.v1:  # pragma: no cover - openssl builds that always add extensions
        pytest.skip("this openssl makes v3 certificates with x509 -req")
    key = serialization.load_pem_private_key((tmp_path / "v1.key").read_bytes(), None)
    top = C(cert, key)
    assert ok(node_leaf(top), [], [top]) is None
    assert any("X.509 v1" in w.message for w in verifier.ca_bundle_warnings("ca.crt", [cert], pki.utcnow()))


# ---------------------------------------------------------------- keys as tls.X509KeyPair loads them


def _pem(key, fmt):
    formats = {"pkcs8": serialization.PrivateFormat.PKCS8, "trad": serialization.PrivateFormat.TraditionalOpenSSL}
    return key.private_bytes(serialization.Encoding.PEM, formats[fmt], serialization.NoEncryption())


@pytest.mark.parametrize("kind,fmt", [("rsa", "trad"), ("rsa", "pkcs8"), ("p256", "trad"), ("p256", "pkcs8"),
                                      ("p521", "trad"), ("ed25519", "pkcs8")])
def test_key_formats_go_loads(kind, fmt):
    key = _key(kind)
    loaded = verifier.load_private_key(_pem(key, fmt), "k.key")
    assert pki.public_key_bytes(loaded.public_key()) == pki.public_key_bytes(key.public_key())


def test_ec_parameters_block_skipped_and_encrypted_refused():
    key = _key("p256")
    params = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    assert verifier.load_private_key(params + _pem(key, "trad"), "k.key") is not None
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(CrdbTlsError, match=r"k\.key: the key is encrypted"):
        verifier.load_private_key(encrypted, "k.key")
    legacy = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(CrdbTlsError, match=r"k\.key: the key is encrypted"):
        verifier.load_private_key(legacy, "k.key")
    with pytest.raises(CrdbTlsError, match=r"k\.key: no PEM PRIVATE KEY block"):
        verifier.load_private_key(params, "k.key")


def test_unsupported_curve_refused():
    key = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(CrdbTlsError, match=r"curve secp256k1 is not one Go supports"):
        verifier.load_private_key(_pem(key, "pkcs8"), "k.key")


# ---------------------------------------------------------------- key permissions (permission_check.go)


def _key_file(tmp_path, mode, name="node.key"):
    path = tmp_path / name
    path.write_bytes(b"x")
    os.chmod(str(path), mode)
    return str(tmp_path)


@pytest.mark.parametrize("mode,refused", [(0o600, False), (0o700, False), (0o4600, False), (0o1600, False),
                                          (0o2700, False), (0o640, True), (0o604, True)])
def test_key_rwx_bits_only(tmp_path, mode, refused):
    problem = verifier.key_permission_problem(_key_file(tmp_path, mode), "node.key", gid=None)
    assert (problem is not None) == refused
    if refused:
        assert problem.effect == "load" and problem.code == "key_permissions"
        assert "mode %04o exceeds -rwx------" % (mode & 0o777) in problem.message


def test_key_skip_and_missing_and_not_regular(tmp_path):
    d = _key_file(tmp_path, 0o644)
    assert verifier.key_permission_problem(d, "node.key", skip=True) is None
    assert verifier.key_permission_problem(d, "nope.key").code == "key_missing"
    os.mkdir(os.path.join(d, "dir.key"))
    assert verifier.key_permission_problem(d, "dir.key").code == "key_not_regular"
    os.symlink("node.key", os.path.join(d, "link.key"))
    os.chmod(os.path.join(d, "node.key"), 0o600)
    assert verifier.key_permission_problem(d, "link.key") is None     # followed, as stat does


def test_root_owned_0740_uses_the_process_gid():
    assert rules.key_mode_problem(0o100640, 0, 123, 123) is None
    assert rules.key_mode_problem(0o100740, 0, 123, 123) is None
    why = rules.key_mode_problem(0o100640, 0, 123, 456)
    assert "key gid 123, process gid 456" in why
    assert rules.key_mode_problem(0o100640, 1000, 123, 123) is not None


def test_process_gid_reads_running_cockroach(tmp_path):
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "comm").write_text("cockroach\n")
    (proc / "4242" / "status").write_text("Name:\tcockroach\nUid:\t998\t998\t998\t998\nGid:\t777\t777\t777\t777\n")
    (proc / "4242" / "cmdline").write_bytes(b"cockroach\0start\0--certs-dir=/x\0")
    (proc / "4242" / "environ").write_bytes(b"COCKROACH_SKIP_KEY_PERMISSION_CHECK=true\0")
    (proc / "99").mkdir()
    (proc / "99" / "comm").write_text("bash\n")
    gid, source = verifier.process_gid("/x", group="0", proc=str(proc))
    assert gid == 777 and source == "running cockroach process 4242"
    assert verifier.skip_permission_check(False, "/x", proc=str(proc)) is True
    empty = tmp_path / "empty"
    empty.mkdir()
    assert verifier.process_gid(None, group="55", proc=str(empty)) == (55, "configured group 55")
    assert verifier.skip_permission_check(False, None, proc=str(empty)) is False


# ---------------------------------------------------------------- principals


def test_dns_san_principal_and_map(root):
    leaf = make("n1.corp.example", issuer=root, dns=["node"], ekus=("client",))
    assert verifier.principals(leaf.cert) == ["n1.corp.example", "node"]
    assert verifier.rpc_identity_problem(leaf.cert) is None
    mapped = make("n1.corp.example", issuer=root, ekus=("client",))
    assert "include neither 'node' nor 'root'" in verifier.rpc_identity_problem(mapped.cert)
    identity = {"principal_map": {"n1.corp.example": "node"}}
    assert verifier.rpc_identity_problem(mapped.cert, identity) is None


def test_tenant_uri_sans_take_precedence(root):
    leaf = make("alice", issuer=root, ekus=("client",), uris=["crdb://tenant/1/user/bob"])
    assert verifier.principals(leaf.cert) == ["bob"]
    assert verifier.sql_user(leaf.cert, "alice") == ("bob", verifier.sql_user(leaf.cert, "alice")[1])
    assert "do not include 'alice'" in verifier.sql_user(leaf.cert, "alice")[1]
    assert verifier.sql_user(leaf.cert, "bob") == ("bob", None)
    other = make("alice", issuer=root, ekus=("client",), uris=["crdb://tenant/5/user/alice"])
    assert verifier.principals(other.cert) == []
    assert verifier.principals(other.cert, tenant_id=5) == ["alice"]


def test_dn_match_replaces_the_cn_rule(root):
    leaf = make("n1.corp.example", issuer=root, o="Corp", ou="DB", ekus=("client",))
    # CockroachDB reads the subject in its encoding order (O, OU, CN here), not reversed
    identity = {"node_cert_dn": "O=Corp,OU=DB,CN=n1.corp.example"}
    assert verifier.dn_string(leaf.cert) == "O=Corp,OU=DB,CN=n1.corp.example"
    assert "does not match" in verifier.rpc_identity_problem(leaf.cert, {"node_cert_dn": "CN=n1.corp.example,OU=DB,O=Corp"})
    assert verifier.rpc_identity_problem(leaf.cert, identity) is None
    assert "does not match" in verifier.rpc_identity_problem(leaf.cert, {"node_cert_dn": "O=Corp,OU=DB,CN=x"})
    node = make("node", issuer=root, ekus=("client",))
    assert "does not match" in verifier.rpc_identity_problem(node.cert, identity)
    root_cert = make("admin", issuer=root, o="Corp", ekus=("client",))
    assert verifier.sql_user(root_cert.cert, "root", {"root_cert_dn": "o=Corp,cn=admin"}) == ("root", None)
    user, why = verifier.sql_user(root_cert.cert, "root", {"root_cert_dn": "O=Corp,CN=other"})
    assert user == "" and "does not match the configured root DN" in why


def test_identity_options_checked():
    assert verifier.identity_options(None) == verifier.IDENTITY_DEFAULTS
    with pytest.raises(CrdbTlsError, match="unknown key"):
        verifier.identity_options({"principal": {}})
    with pytest.raises(CrdbTlsError, match="cannot be given to --cert-principal-map"):
        verifier.identity_options({"principal_map": {"a:b": "c"}})
    with pytest.raises(CrdbTlsError, match="is not a distinguished name"):
        verifier.identity_options({"node_cert_dn": "just words"})
    assert verifier.principal_map_flag({"principal_map": {"b": "x", "a": "y"}}) == "a:y,b:x"


def test_tenant_ids():
    assert verifier.parse_tenant_id("18446744073709551615") == 2 ** 64 - 1
    assert verifier.parse_tenant_id("007") == 7
    for bad in ("", "-1", "+1", "1a", "18446744073709551616", "١"):
        with pytest.raises(CrdbTlsError, match="invalid tenant id"):
            verifier.parse_tenant_id(bad)


def test_usernames_bytes_and_dots():
    assert rules.validate_username("a..b") == "a..b"
    assert rules.validate_username("é" * 31) == "é" * 31          # 62 bytes
    with pytest.raises(CrdbTlsError, match=r"longer than 63 bytes \(64\)"):
        rules.validate_username("é" * 32)


# ---------------------------------------------------------------- vet_leaf


def test_vet_leaf_server_hosts_and_principal(root):
    leaf = node_leaf(root)
    assert verifier.vet_leaf([leaf.cert], "node.crt", [SERVER, CLIENT], [root.cert],
                             hosts=["n1.example.com", "10.0.0.1"], key=leaf.key, principal="node") == []
    problems = verifier.vet_leaf([leaf.cert], "node.crt", [SERVER], [root.cert], hosts=["n2.example.com"],
                                 key=_key(), principal="node")
    assert sorted(p.code for p in problems) == ["chain", "key_mismatch"]
    assert all(p.file == "node.crt" for p in problems)
    bare = make("Console", issuer=root, ekus=("server",))
    problems = verifier.vet_leaf([bare.cert], "ui.crt", [SERVER], [root.cert], at_least_one_san=True)
    assert [p.code for p in problems] == ["host"]


# ---------------------------------------------------------------- whole dirs: the verdict


def _write(d, name, certs, key=None, key_mode=0o600):
    with open(os.path.join(d, name), "wb") as f:
        f.write(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    if key is not None:
        kpath = os.path.join(d, rules.key_name(name))
        with open(kpath, "wb") as f:
            f.write(_pem(key, "pkcs8"))
        os.chmod(kpath, key_mode)


@pytest.fixture
def d(tmp_path):
    path = tmp_path / "certs"
    path.mkdir(mode=0o700)
    return str(path)


def judge(d, **kw):
    kw.setdefault("expected_hosts", ["n1.example.com"])
    return verifier.judge_dir(d, **kw)


def _standard_dir(d, root, client_users=("root",)):
    _write(d, "ca.crt", [root.cert])
    node = node_leaf(root)
    _write(d, "node.crt", [node.cert], node.key)
    for user in client_users:
        c = make(user, issuer=root, ekus=("client",))
        _write(d, "client.%s.crt" % user, [c.cert], c.key)
    return node


def test_clean_dir_verdict(d, root):
    _standard_dir(d, root)
    out = judge(d)
    assert [p for p in out["problems"] if p.blocking] == []
    assert out["verdict"] == {"load": {"ok": True, "error": ""}, "node": {"ok": True, "error": ""},
                              "ui": {"ok": True, "error": ""},
                              "clients": {"root": {"ok": True, "error": "", "user": "root"}}, "tenants": {}}


def test_split_ca_without_client_node_crt_is_refused(d, root):
    client_root = make("Client CA", ca=True, ekus=None)
    _standard_dir(d, root, client_users=())
    _write(d, "ca-client.crt", [client_root.cert])
    c = make("root", issuer=client_root, ekus=("client",))
    _write(d, "client.root.crt", [c.cert], c.key)
    out = judge(d)
    assert out["verdict"]["node"]["ok"] is False
    assert "node-to-node client side: does not verify against ca-client.crt" in out["verdict"]["node"]["error"]
    assert out["verdict"]["clients"]["root"]["ok"] is True
    assert [(p.file, p.code, p.effect) for p in out["problems"] if p.blocking] == [
        ("node.crt", "chain", "handshake")]


def test_eku_limited_intermediate_issuing_client_certs(d):
    top = make("Org Root", ca=True, ekus=None)
    server_int = make("Server Int", issuer=top, ca=True, ekus=("server",))
    _write(d, "ca.crt", [top.cert])
    node = node_leaf(server_int)
    _write(d, "node.crt", [node.cert, server_int.cert], node.key)
    alice = make("alice", issuer=server_int, ekus=("client",))
    _write(d, "client.alice.crt", [alice.cert, server_int.cert], alice.key)
    v = judge(d)["verdict"]
    assert v["node"]["ok"] is False and "incompatible key usage" in v["node"]["error"]
    assert v["ui"]["ok"] is True
    assert v["clients"]["alice"] == {"ok": False, "user": "", "error": v["clients"]["alice"]["error"]}  # no handshake


def test_uri_san_principal_in_a_dir(d, root):
    _standard_dir(d, root, client_users=())
    c = make("alice", issuer=root, ekus=("client",), uris=["crdb://tenant/1/user/bob"])
    _write(d, "client.alice.crt", [c.cert], c.key)
    _write(d, "client.bob.crt", [c.cert], c.key)
    v = judge(d)["verdict"]
    assert v["clients"]["alice"] == {"ok": False, "user": "bob", "error": v["clients"]["alice"]["error"]}
    assert v["clients"]["bob"] == {"ok": True, "user": "bob", "error": ""}


def test_dns_san_node_principal_and_imposed_subjects(d, root):
    _write(d, "ca.crt", [root.cert])
    node = node_leaf(root, cn="n1.example.com", dns=["n1.example.com", "node"])
    _write(d, "node.crt", [node.cert], node.key)
    assert judge(d)["verdict"]["node"] == {"ok": True, "error": ""}
    # a corporate CA's CN=<fqdn> with no node principal: refused, unless the map or the DN says so
    imposed = node_leaf(root, cn="n1.example.com", o="Corp")
    _write(d, "node.crt", [imposed.cert], imposed.key)
    assert judge(d)["verdict"]["node"]["ok"] is False
    assert judge(d, identity={"principal_map": {"n1.example.com": "node"}})["verdict"]["node"]["ok"] is True
    dn = {"node_cert_dn": "O=Corp,CN=n1.example.com"}
    assert judge(d, identity=dn)["verdict"]["node"]["ok"] is True


def test_tenant_client_ca_fallback_and_bad_tenant_id(d, root):
    _standard_dir(d, root)
    t = make("2", issuer=root, ou="Tenants", ekus=("client",))
    _write(d, "client-tenant.2.crt", [t.cert], t.key)
    v = judge(d)["verdict"]
    assert v["tenants"] == {"2": {"ok": True, "error": ""}}      # no ca-client-tenant.crt: ca.crt
    other = make("Tenant CA", ca=True, ekus=None)
    _write(d, "ca-client-tenant.crt", [other.cert])
    assert judge(d)["verdict"]["tenants"]["2"]["ok"] is False
    _write(d, "client-tenant.x.crt", [t.cert], t.key)
    out = judge(d)
    assert out["verdict"]["load"]["ok"] is False and set(out["verdict"]) == {"load"}
    bad = [p for p in out["problems"] if p.code == "bad_tenant_id"]
    assert [(p.file, p.effect) for p in bad] == [("client-tenant.x.crt", "load")]
    assert "CockroachDB fails the whole load" in bad[0].message


def _tenant_signing(cn="tenant-signing", key=None, ca=False, ku=True):
    key = key or _key("ed25519")
    name = _name(cn)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ku:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, ca, False, False, False),
                                        critical=True)
    return C(builder.sign(key, None), key)


def test_tenant_signing_pairs(d, root):
    _standard_dir(d, root)
    good = _tenant_signing()
    _write(d, "tenant-signing.5.crt", [good.cert], good.key)
    out = judge(d)
    assert [p for p in out["problems"] if p.blocking] == []     # never verified against a CA
    rsa_one = make("ts", key=_key("p256"), ekus=None)
    _write(d, "tenant-signing.5.crt", [rsa_one.cert], rsa_one.key)
    codes = [(p.code, p.message) for p in judge(d)["problems"] if p.file == "tenant-signing.5.crt"]
    assert ("tenant_signing", "tenant signing certificate: its key is not Ed25519") in codes
    as_ca = _tenant_signing(ca=True)
    _write(d, "tenant-signing.5.crt", [as_ca.cert], as_ca.key)
    assert ("tenant_signing", "tenant signing certificate: it is a CA certificate") in [
        (p.code, p.message) for p in judge(d)["problems"]]
    assert judge(d)["verdict"]["load"]["ok"] is True


def test_setuid_key_and_root_owned_gid(d, root):
    _standard_dir(d, root)
    os.chmod(os.path.join(d, "node.key"), 0o4600)
    assert judge(d)["verdict"]["load"]["ok"] is True
    os.chmod(os.path.join(d, "node.key"), 0o640)
    out = judge(d)
    assert out["verdict"]["load"]["ok"] is False
    assert judge(d, skip_permissions=True)["verdict"]["load"]["ok"] is True
    st = os.stat(os.path.join(d, "node.key"))
    if st.st_uid == 0:
        assert judge(d, gid=st.st_gid)["verdict"]["load"]["ok"] is True


def test_ui_crt_with_ca_ui(d, root):
    _standard_dir(d, root)
    public_root = make("Public Root", ca=True, ekus=None)
    public_int = make("Public Int", issuer=public_root, ca=True, ekus=None)
    ui = make("console.example.com", issuer=public_int, dns=["console.example.com"], ekus=("server",))
    _write(d, "ui.crt", [ui.cert, public_int.cert], ui.key)
    out = judge(d, expected_ui_hosts=["console.example.com"])
    assert out["verdict"]["ui"]["ok"] is False                   # against ca.crt
    assert [(p.code, p.effect) for p in out["problems"] if p.file == "ui.crt"] == [("ui_public", "warning")]
    _write(d, "ca-ui.crt", [public_root.cert])
    out = judge(d, expected_ui_hosts=["console.example.com"])
    assert out["verdict"]["ui"] == {"ok": True, "error": ""}
    assert [p for p in out["problems"] if p.blocking] == []
    out = judge(d, expected_ui_hosts=["admin.example.com"])
    assert out["verdict"]["ui"]["ok"] is False
    assert [(p.code, p.effect) for p in out["problems"] if p.file == "ui.crt"] == [("chain", "handshake")]


def test_a_dir_others_can_write_to_is_judged_without_following_its_links(d, root, tmp_path):
    _standard_dir(d, root)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rename(os.path.join(d, "client.root.crt"), str(outside / "client.root.crt"))
    os.rename(os.path.join(d, "client.root.key"), str(outside / "client.root.key"))
    os.symlink(str(outside / "client.root.crt"), os.path.join(d, "client.root.crt"))
    os.symlink(str(outside / "client.root.key"), os.path.join(d, "client.root.key"))
    os.mkfifo(os.path.join(d, "client.fifo.crt"))
    out = judge(d)   # our own 0700 dir: the links are followed, as CockroachDB follows them
    assert out["verdict"]["clients"]["root"]["ok"] is True
    os.chmod(d, 0o777)
    out = judge(d)
    codes = sorted((p.file, p.code) for p in out["problems"] if p.blocking)
    assert codes == [("client.fifo.crt", "unreadable"), ("client.root.crt", "unreadable")]
    messages = {p.file: p.message for p in out["problems"] if p.blocking}
    assert messages["client.root.crt"] == ("certificate %s is a symbolic link in a directory others can write to: "
                                           "refusing to follow it (put the file itself there)"
                                           % os.path.join(d, "client.root.crt"))
    assert messages["client.fifo.crt"].startswith("certificate %s is a FIFO" % os.path.join(d, "client.fifo.crt"))
    assert verifier.key_permission_problem(d, "client.root.key").code == "key_unreadable"


def test_names_only_without_cryptography(d, root):
    _standard_dir(d, root)
    os.chmod(os.path.join(d, "node.key"), 0o644)
    out = verifier.judge_dir(d, content=False)
    assert out["verdict"] is None
    assert [(p.file, p.code) for p in out["problems"]] == [("node.crt", "key_permissions")]
    code = ("import sys; from ansible_collections.crdb.tls.plugins.module_utils import verifier; "
            "out = verifier.judge_dir(sys.argv[1], content=False); "
            "print(sorted(p.code for p in out['problems']), 'cryptography' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True, check=True,
                         env=dict(os.environ))
    assert run.stdout.split() == ["['key_permissions']", "False"]


def test_non_sql_client_name_loads_and_maps(d, root):
    _standard_dir(d, root, client_users=())
    c = make("App.Service", issuer=root, ekus=("client",))
    _write(d, "client.App.Service.crt", [c.cert], c.key)
    out = judge(d)
    assert [(p.code, p.effect) for p in out["problems"] if p.file == "client.App.Service.crt"][0] == (
        "not_sql_user", "warning")
    assert out["verdict"]["clients"]["App.Service"] == {"ok": True, "error": "", "user": "App.Service"}


def test_a_cockroach_process_of_another_dir_is_ignored(tmp_path):
    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "comm").write_text("cockroach\n")
    (proc / "7" / "status").write_text("Gid:\t999\t999\t999\t999\n")
    (proc / "7" / "cmdline").write_bytes(b"cockroach\0start\0--certs-dir\0/other\0")
    assert verifier.process_gid("/x", group="12", proc=str(proc)) == (12, "configured group 12")
    assert verifier.process_gid("/other", group="12", proc=str(proc))[0] == 999


def test_tenant_cert_and_debuguser_are_not_user_certs(d, root):
    _standard_dir(d, root, client_users=())
    tenant_like = make("alice", issuer=root, ou="Tenants", ekus=("client",))
    _write(d, "client.alice.crt", [tenant_like.cert], tenant_like.key)
    debug = make("carol", issuer=root, dns=["debuguser"], ekus=("client",))
    _write(d, "client.carol.crt", [debug.cert], debug.key)
    clients = judge(d)["verdict"]["clients"]
    assert clients["alice"]["ok"] is False and "OU=Tenants" in clients["alice"]["error"]
    assert clients["carol"]["ok"] is False and "debuguser" in clients["carol"]["error"]


def test_load_fails_only_for_node_crt_without_client_node_and_bad_tenant_ids(d, root):
    node = _standard_dir(d, root)
    with open(os.path.join(d, "ca.crt"), "wb") as f:
        f.write(b"garbage")
    out = judge(d)
    assert out["verdict"]["load"]["ok"] is True and out["verdict"]["node"]["ok"] is False
    assert [(p.file, p.effect) for p in out["problems"] if p.code == "unreadable"] == [("ca.crt", "handshake")]
    _write(d, "ca.crt", [root.cert])
    os.chmod(os.path.join(d, "node.key"), 0o644)
    assert judge(d)["verdict"]["load"]["ok"] is False
    cnode = make("node", issuer=root, ekus=("client",))
    _write(d, "client.node.crt", [cnode.cert], cnode.key)
    out = judge(d)
    assert out["verdict"]["load"]["ok"] is True and out["verdict"]["node"]["ok"] is False
    del node
