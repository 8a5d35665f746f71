# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys, names, profiles, CA vetting and signing (pki.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import re

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from ansible_collections.crdb.tls.plugins.module_utils import pki
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

HOSTS = ["node1.example.com", "10.0.0.1", "*.nodes.example.com", "::1"]


def _ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def _now():
    return pki.utcnow().replace(microsecond=0)


# --------------------------------------------------------------------------
# Profiles: build_spec + issue
# --------------------------------------------------------------------------

PROFILE_CASES = [
    # profile, kwargs, expected CN, expected EKUs, file
    ("node", {"hosts": HOSTS}, "node", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], "node.crt"),
    ("node_server", {"hosts": HOSTS}, "node1.example.com", [ExtendedKeyUsageOID.SERVER_AUTH], "node.crt"),
    ("node_client", {}, "node", [ExtendedKeyUsageOID.CLIENT_AUTH], "client.node.crt"),
    ("client", {"user": "maxroach"}, "maxroach", [ExtendedKeyUsageOID.CLIENT_AUTH], "client.maxroach.crt"),
    ("ui", {"hosts": ["ui.example.com"]}, "ui.example.com", [ExtendedKeyUsageOID.SERVER_AUTH], "ui.crt"),
]


@pytest.mark.parametrize("profile, kwargs, cn, eku_oids, filename", PROFILE_CASES)
def test_issue_every_profile(ca, mk, profile, kwargs, cn, eku_oids, filename):
    now = _now()
    spec = pki.build_spec(profile, **kwargs)
    assert spec.filename == filename
    key = mk.ec()
    cert = pki.issue(spec, key.public_key(), ca, now=now)

    assert pki.common_name(cert) == cn
    assert pki.organization(cert) == "Cockroach"
    assert cert.issuer == ca.certificate.subject
    assert pki.issued_by(cert, ca.certificate)
    assert pki.keys_match(cert, key)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == eku_oids
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not ku.value.key_encipherment  # ECDSA: no key encipherment
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    # lifetime and back-dating as `cockroach cert`
    assert pki.not_after(cert) - now == datetime.timedelta(hours=43920)
    assert now - pki.not_before(cert) == datetime.timedelta(hours=24)
    assert 0 < cert.serial_number < 2 ** 128
    assert pki.ocsp_urls(cert) == []
    if kwargs.get("hosts"):
        assert pki.certificate_san_keys(cert) == pki.san_keys(pki.parse_hosts(kwargs["hosts"]))
    else:
        with pytest.raises(x509.ExtensionNotFound):
            _ext(cert, x509.SubjectAlternativeName)


def test_sans_ip_versus_dns_and_wildcard(ca, mk):
    spec = pki.build_spec("node", hosts=HOSTS + ["[fe80::2]", "NODE1.example.com"])
    cert = pki.issue(spec, mk.ec().public_key(), ca)
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1.example.com", "*.nodes.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("::1"), ipaddress.ip_address("fe80::2")]
    assert pki.host_covered(cert, "n7.nodes.example.com")
    assert not pki.host_covered(cert, "a.b.nodes.example.com")
    assert pki.host_covered(cert, "10.0.0.1")
    assert not pki.host_covered(cert, "10.0.0.2")


def test_rsa_leaf_has_key_encipherment_and_sha256(ca, rsa_key):
    cert = pki.issue(pki.build_spec("client", user="root"), rsa_key.public_key(), ca)
    assert _ext(cert, x509.KeyUsage).value.key_encipherment
    assert pki.key_spec_of(cert.public_key()) == ("rsa", 2048)


def test_organization_configurable_and_optional(ca, mk):
    key = mk.ec()
    acme = pki.issue(pki.build_spec("client", user="root", organization="Acme"), key.public_key(), ca)
    assert pki.organization(acme) == "Acme"
    assert acme.subject.rfc4514_string() == "CN=root,O=Acme"
    bare = pki.issue(pki.build_spec("client", user="root", organization=None), key.public_key(), ca)
    assert pki.organization(bare) is None
    assert bare.subject.rfc4514_string() == "CN=root"


def test_lifetime_and_ocsp_url(ca, mk):
    now = _now()
    spec = pki.build_spec("node", hosts=["n1"], lifetime="30d", ocsp_url="http://ocsp.example.com:8080/")
    cert = pki.issue(spec, mk.ec().public_key(), ca, now=now)
    assert pki.not_after(cert) == now + datetime.timedelta(days=30)
    aia = _ext(cert, x509.AuthorityInformationAccess).value
    assert [(d.access_method, d.access_location.value) for d in aia] == [
        (AuthorityInformationAccessOID.OCSP, "http://ocsp.example.com:8080/")]
    with pytest.raises(CrdbTlsError, match=r"ocsp_url 'ldap://x' is not an http\(s\) URL"):
        pki.build_spec("node", hosts=["n1"], ocsp_url="ldap://x")


def test_serials_random_positive_below_2_128():
    serials = [pki.new_serial() for _unused in range(500)]
    assert all(0 < s < 2 ** 128 for s in serials)
    assert len(set(serials)) == 500
    # random, so most of them use the upper bits
    assert max(serials).bit_length() >= 120


def test_node_server_cn_defaults():
    assert pki.build_spec("node_server", hosts=["10.0.0.5", "db.example.com", "db2"]).common_name == "db.example.com"
    assert pki.build_spec("node_server", hosts=["10.0.0.5", "10.0.0.6"]).common_name == "10.0.0.5"
    assert pki.build_spec("node_server", hosts=["::1"]).common_name == "::1"
    assert pki.build_spec("node_server", hosts=["db"], common_name="custom").common_name == "custom"


@pytest.mark.parametrize("profile, kwargs, cn, fixed", [
    ("node", {"hosts": ["n1"]}, "n1", "node"),
    ("node_client", {}, "crdb-node", "node"),
    ("client", {"user": "root"}, "admin", "root"),
])
def test_fixed_cn_refused_when_different(profile, kwargs, cn, fixed):
    with pytest.raises(CrdbTlsError, match=r"common_name %r is not allowed for profile %r: CockroachDB requires CN=%s$"
                       % (cn, profile, fixed)):
        pki.build_spec(profile, common_name=cn, **kwargs)
    # the fixed name itself is accepted
    assert pki.build_spec(profile, common_name=fixed, **kwargs).common_name == fixed


def test_build_spec_errors():
    with pytest.raises(CrdbTlsError, match=r"profile 'ca' is not a leaf profile"):
        pki.build_spec("ca")
    with pytest.raises(CrdbTlsError, match=r"profile 'client' needs user"):
        pki.build_spec("client")
    with pytest.raises(CrdbTlsError, match=r"user 'Root'.*upper case"):
        pki.build_spec("client", user="Root")
    with pytest.raises(CrdbTlsError, match=r"user is only used with profile 'client', not 'node'"):
        pki.build_spec("node", user="root", hosts=["n1"])
    for profile in ("node", "node_server", "ui"):
        with pytest.raises(CrdbTlsError, match=r"profile %r needs at least one host" % profile):
            pki.build_spec(profile)
    with pytest.raises(CrdbTlsError, match=r"lifetime 'ten days' is not a duration"):
        pki.build_spec("client", user="root", lifetime="ten days")
    with pytest.raises(CrdbTlsError, match=r"lifetime .* must be positive"):
        pki.build_spec("client", user="root", lifetime="0h")


@pytest.mark.parametrize("value, expected", [
    ("43920h", datetime.timedelta(hours=43920)), ("365d", datetime.timedelta(days=365)),
    ("2w", datetime.timedelta(weeks=2)), ("90m", datetime.timedelta(minutes=90)),
    (12, datetime.timedelta(hours=12)), ("7", datetime.timedelta(hours=7)),
    ("1y", datetime.timedelta(days=366)), (None, None),
])
def test_parse_duration(value, expected):
    assert pki.parse_duration(value, "lifetime") == expected


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------

@pytest.mark.parametrize("key_type, key_size", [
    ("rsa", 2048), ("rsa", 3072), ("rsa", 4096), ("ecdsa", 256), ("ecdsa", 384)])
def test_key_types(ca, key_type, key_size):
    key = pki.generate_key(key_type, key_size)
    assert pki.key_spec_of(key) == (key_type, key_size)
    # the PEM the engine writes reads back as the same key
    again = pki.load_private_key(pki.private_key_pem(key), "k")
    assert pki.public_key_bytes(again.public_key()) == pki.public_key_bytes(key.public_key())
    pem = pki.private_key_pem(key)
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----" if key_type == "rsa" else b"-----BEGIN EC PRIVATE KEY-----")
    cert = pki.issue(pki.build_spec("client", user="root"), key.public_key(), ca)
    assert pki.describe(cert)["key"] == ("RSA %d" % key_size if key_type == "rsa" else "ECDSA P-%d" % key_size)


def test_default_key_spec():
    assert pki.check_key_spec("rsa", None) == ("rsa", 2048)
    assert pki.check_key_spec("ecdsa", None) == ("ecdsa", 256)
    assert pki.check_key_spec("rsa", "3072") == ("rsa", 3072)


@pytest.mark.parametrize("key_type, key_size, pattern", [
    ("rsa", 1024, r"key_size 1024: RSA keys below 2048 bits are refused"),
    ("rsa", 2047, r"key_size 2047: RSA keys below 2048 bits are refused"),
    ("rsa", 8192, r"key_size 8192 is not supported for rsa keys \(use one of: 2048, 3072, 4096\)"),
    ("ecdsa", 521, r"key_size 521 is not supported for ecdsa keys \(use one of: 256, 384\)"),
    ("dsa", 2048, r"key_type 'dsa' is not supported \(use one of: ecdsa, rsa\)"),
    ("rsa", "big", r"key_size 'big' is not a number"),
])
def test_key_spec_refused(key_type, key_size, pattern):
    with pytest.raises(CrdbTlsError, match=pattern):
        pki.generate_key(key_type, key_size)


def test_p384_ca_signs_with_sha384(mk):
    root = mk.make_root("P384 CA", key=pki.generate_key("ecdsa", 384))
    assert pki.signature_hash_name(root.certificate) == "sha384"
    leaf = pki.issue(pki.build_spec("client", user="root"), mk.ec().public_key(), root)
    assert pki.signature_hash_name(leaf) == "sha384"


# --------------------------------------------------------------------------
# Host names
# --------------------------------------------------------------------------

@pytest.mark.parametrize("host, problem", [
    ("under_score", r"has an invalid label 'under_score'"),
    ("a..b", r"has an invalid label ''"),
    ("node1.example.com.", r"ends with a dot"),
    ("a.*.example.com", r"has an invalid label '\*'"),
    ("*", r"has an invalid label '\*'"),
    ("-lead.example.com", r"has an invalid label '-lead'"),
    ("n\u00f6de.example.com", r"has non-ASCII characters \(use its IDNA/punycode form\)"),
    ("a" * 60 + "." + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + "." + "e" * 59, r"is longer than 253 characters"),
    ("x" * 64 + ".example.com", r"has an invalid label 'x{64}'"),
])
def test_bad_hosts_refused_naming_the_value(host, problem):
    with pytest.raises(CrdbTlsError) as info:
        pki.build_spec("node", hosts=["good.example.com", host])
    message = str(info.value)
    assert message.startswith("hosts entry %r is neither an IP address nor a valid DNS name: it " % host)
    assert re.search(problem, message), message


def test_300_char_host_refused():
    host = ".".join(["a" * 59] * 5)
    assert len(host) == 299
    with pytest.raises(CrdbTlsError, match=r"hosts entry 'a{59}\..*' is neither .*: it is longer than 253 characters"):
        pki.parse_hosts([host])


@pytest.mark.parametrize("host", ["", "   ", None])
def test_empty_host_refused(host):
    with pytest.raises(CrdbTlsError, match=r"hosts entry %s is empty or not a string" % re.escape(repr(host))):
        pki.parse_hosts([host])


def test_duplicate_hosts_removed():
    names = pki.parse_hosts(["a.example.com", "A.example.com", "10.0.0.1", "10.0.0.1"])
    assert [str(n.value) for n in names] == ["a.example.com", "10.0.0.1"]


# --------------------------------------------------------------------------
# Lifetimes against the CA
# --------------------------------------------------------------------------

def test_leaf_outliving_ca_refused_naming_both_dates(mk):
    short = mk.make_root("Short CA", lifetime="30d")
    ca_end = pki.not_after(short.certificate)
    now = _now()
    spec = pki.build_spec("node", hosts=["n1"], lifetime="31d")
    leaf_end = now + datetime.timedelta(days=31)
    with pytest.raises(CrdbTlsError) as info:
        pki.issue(spec, mk.ec().public_key(), short, now=now)
    assert str(info.value) == (
        "the node certificate 'node' would be valid until %s, after its CA expires (%s): shorten lifetime "
        "or renew the CA" % (leaf_end.strftime("%Y-%m-%d %H:%M UTC"), ca_end.strftime("%Y-%m-%d %H:%M UTC")))
    # inside the CA's life it is fine
    pki.issue(pki.build_spec("node", hosts=["n1"], lifetime="29d"), mk.ec().public_key(), short, now=now)


def test_leaf_outliving_intermediate_refused(org_root, mk):
    inter = mk.make_intermediate(org_root, "Short Intermediate", lifetime_days=10)
    with pytest.raises(CrdbTlsError, match=r"after its CA expires \(%s\)"
                       % re.escape(pki.not_after(inter.certificate).strftime("%Y-%m-%d %H:%M UTC"))):
        pki.issue(pki.build_spec("client", user="root", lifetime="11d"), mk.ec().public_key(), inter)


# --------------------------------------------------------------------------
# Reading PEM
# --------------------------------------------------------------------------

def test_load_certificates_round_trip(ca, intermediate, org_root):
    data = pki.certificates_pem([intermediate.certificate, org_root.certificate])
    certs = pki.load_certificates(data, "/x/chain.pem")
    assert [pki.fingerprint(c) for c in certs] == [pki.fingerprint(intermediate.certificate),
                                                   pki.fingerprint(org_root.certificate)]


def test_load_certificates_garbage():
    with pytest.raises(CrdbTlsError, match=r"^/x/node\.crt: no PEM block found \(is this a certificate file\?\)$"):
        pki.load_certificates(b"hello world\n", "/x/node.crt")


def test_load_certificates_empty():
    for data in (b"", b"\n  \n", None):
        with pytest.raises(CrdbTlsError, match=r"^/x/node\.crt: the file is empty, expected PEM certificates$"):
            pki.load_certificates(data, "/x/node.crt")


def test_load_certificates_key_block(ca, mk):
    cert, key, _spec = mk.leaf(ca)
    data = pki.certificates_pem([cert]) + pki.private_key_pem(key)
    with pytest.raises(CrdbTlsError, match=r"^/x/node\.crt: PEM block 2 is 'EC PRIVATE KEY'; CockroachDB accepts "
                                           r"only CERTIFICATE blocks"):
        pki.load_certificates(data, "/x/node.crt")


def test_load_certificates_corrupt_block():
    data = b"-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n"
    with pytest.raises(CrdbTlsError, match=r"^c\.crt: PEM block 1 is not a valid certificate"):
        pki.load_certificates(data, "c.crt")


def test_load_private_key_garbage():
    with pytest.raises(CrdbTlsError, match=r"^/x/node\.key: not a readable PEM private key") as info:
        pki.load_private_key(b"not a key at all", "/x/node.key")
    assert "not a key at all" not in str(info.value)
    with pytest.raises(CrdbTlsError, match=r"^/x/node\.key: the file is empty, expected a PEM private key$"):
        pki.load_private_key(b"", "/x/node.key")


def test_load_private_key_encrypted(mk):
    key = mk.ec()
    pem = pki.private_key_pem(key, passphrase="s3cret")
    assert b"ENCRYPTED" in pem
    with pytest.raises(CrdbTlsError, match=r"^ca\.key: the key is encrypted and no passphrase was given$"):
        pki.load_private_key(pem, "ca.key")
    with pytest.raises(CrdbTlsError, match=r"^ca\.key: cannot decrypt the private key: wrong passphrase\?$"):
        pki.load_private_key(pem, "ca.key", passphrase="wrong")
    again = pki.load_private_key(pem, "ca.key", passphrase="s3cret")
    assert pki.public_key_bytes(again.public_key()) == pki.public_key_bytes(key.public_key())
    # a passphrase for a plain key is a mistake worth naming
    with pytest.raises(CrdbTlsError, match=r"^ca\.key: the key is not encrypted but a passphrase was given$"):
        pki.load_private_key(pki.private_key_pem(key), "ca.key", passphrase="s3cret")


def test_load_private_key_weak_rsa_refused():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = weak.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    with pytest.raises(CrdbTlsError, match=r"^old\.key: RSA 1024-bit key is too weak \(at least 2048 bits\)$"):
        pki.load_private_key(pem, "old.key")


def test_load_private_key_unsupported_type():
    from cryptography.hazmat.primitives.asymmetric import ed25519
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(CrdbTlsError, match=r"^ed\.key: Ed25519PrivateKey keys are not supported"):
        pki.load_private_key(pem, "ed.key")


# --------------------------------------------------------------------------
# CA vetting
# --------------------------------------------------------------------------

def _pems(*certs):
    return pki.certificates_pem(list(certs))


def test_load_ca_root(ca):
    loaded = pki.load_ca(_pems(ca.certificate), pki.private_key_pem(ca.key), "ca.crt", "ca.key")
    assert loaded.certificate == ca.certificate
    assert loaded.roots == [ca.certificate]
    assert loaded.chain == [] and loaded.leaf_chain == []


def test_generated_ca_matches_cockroach_cert(ca):
    cert = ca.certificate
    assert pki.common_name(cert) == "Cockroach CA" and pki.organization(cert) == "Cockroach"
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    assert _ext(cert, x509.KeyUsage).value.key_cert_sign
    assert pki.not_after(cert) - pki.not_before(cert) == datetime.timedelta(hours=87840 + 24)
    assert pki.ca_certificate_problems(cert, "ca.crt") == []


def test_load_ca_leaf_refused(ca, mk):
    cert, key, _spec = mk.leaf(ca)
    with pytest.raises(CrdbTlsError, match=r"^leaf\.crt: CN=node,O=Cockroach is not a CA certificate "
                                           r"\(basicConstraints CA:TRUE missing\); it looks like a leaf; "
                                           r"leaf\.crt: CN=node,O=Cockroach has keyUsage without keyCertSign$"):
        pki.load_ca(_pems(cert), pki.private_key_pem(key), "leaf.crt", "leaf.key")


def test_load_ca_key_mismatch(ca, other_ca):
    with pytest.raises(CrdbTlsError, match=r"^other\.key does not match the CA certificate in ca\.crt "
                                           r"\(CN=Cockroach CA,O=Cockroach\): the public keys differ$"):
        pki.load_ca(_pems(ca.certificate), pki.private_key_pem(other_ca.key), "ca.crt", "other.key")


def test_load_ca_expired(mk):
    key = mk.ec()
    past = pki.utcnow() - datetime.timedelta(days=10)
    cert = pki.generate_ca(key, "Old CA", lifetime="2d", now=past)
    with pytest.raises(CrdbTlsError, match=r"^old\.crt: CA CN=Old CA,O=Cockroach expired on %s$"
                       % re.escape(pki.not_after(cert).isoformat())):
        pki.load_ca(_pems(cert), pki.private_key_pem(key), "old.crt", "old.key")


def test_load_ca_not_yet_valid(mk):
    key = mk.ec()
    cert = pki.generate_ca(key, "Future CA", now=pki.utcnow() + datetime.timedelta(days=5))
    with pytest.raises(CrdbTlsError, match=r"CA CN=Future CA,O=Cockroach is not valid before"):
        pki.load_ca(_pems(cert), pki.private_key_pem(key), "f.crt", "f.key")


def test_load_ca_sha1_refused(tmp_path, mk):
    cert_pem, key_pem = mk.openssl_ca(tmp_path, "SHA1 CA", [
        "-sha1", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    assert pki.signature_hash_name(pki.load_certificates(cert_pem, "x")[0]) == "sha1"
    with pytest.raises(CrdbTlsError, match=r"^sha1\.crt: CA CN=SHA1 CA,O=Cockroach is signed with SHA1, which is "
                                           r"refused \(use SHA-256 or better\)$"):
        pki.load_ca(cert_pem, key_pem, "sha1.crt", "sha1.key")


def test_load_ca_rsa_1024_refused(tmp_path, mk):
    cert_pem, key_pem = mk.openssl_ca(tmp_path, "Weak CA", ["-sha256", "-newkey", "rsa:1024"])
    with pytest.raises(CrdbTlsError, match=r"^weak\.crt: CA CN=Weak CA,O=Cockroach: RSA 1024-bit key is too weak "
                                           r"\(at least 2048 bits\)$"):
        pki.load_ca(cert_pem, key_pem, "weak.crt", "weak.key")


def test_load_ca_intermediate_with_root(intermediate, org_root):
    loaded = pki.load_ca(_pems(intermediate.certificate, org_root.certificate),
                         pki.private_key_pem(intermediate.key), "chain.pem", "int.key")
    assert loaded.certificate == intermediate.certificate
    assert loaded.leaf_chain == [intermediate.certificate]
    assert loaded.roots == [org_root.certificate]
    assert loaded.chain == []


def test_load_ca_two_intermediates(org_root, mk):
    upper = mk.make_intermediate(org_root, "Upper CA")
    lower = mk.make_intermediate(upper, "Lower CA", lifetime_days=2000)
    loaded = pki.load_ca(_pems(lower.certificate, upper.certificate, org_root.certificate),
                         pki.private_key_pem(lower.key), "chain.pem", "lower.key")
    assert loaded.leaf_chain == [lower.certificate, upper.certificate]
    assert loaded.roots == [org_root.certificate]
    leaf = pki.issue(pki.build_spec("client", user="root"), mk.ec().public_key(), loaded)
    assert pki.verify_chain(leaf, loaded.leaf_chain, loaded.roots) is None


def test_load_ca_intermediate_without_root(intermediate, org_root):
    with pytest.raises(CrdbTlsError, match=r"^int\.pem: CN=Org Intermediate CA,O=Org is an intermediate CA but no "
                                           r"root was given"):
        pki.load_ca(_pems(intermediate.certificate), pki.private_key_pem(intermediate.key), "int.pem", "int.key")
    loaded = pki.load_ca(_pems(intermediate.certificate), pki.private_key_pem(intermediate.key), "int.pem",
                         "int.key", roots_data=_pems(org_root.certificate), roots_source="root.pem")
    assert loaded.roots == [org_root.certificate]


def test_load_ca_intermediate_wrong_root(intermediate, other_ca):
    with pytest.raises(CrdbTlsError, match=r"^int\.pem: the CA chain does not verify: the certificate is not signed "
                                           r"by any trusted CA \(issuer CN=Org Root CA,O=Cockroach\)$"):
        pki.load_ca(_pems(intermediate.certificate), pki.private_key_pem(intermediate.key), "int.pem",
                    "int.key", roots_data=_pems(other_ca.certificate))


def test_load_ca_chain_out_of_order(intermediate, org_root, mk):
    upper = mk.make_intermediate(org_root, "Upper CA")
    lower = mk.make_intermediate(upper, "Lower CA", lifetime_days=2000)
    data = _pems(lower.certificate, org_root.certificate, upper.certificate)
    with pytest.raises(CrdbTlsError, match=r"^chain\.pem: certificate 2 \(CN=Org Root CA,O=Cockroach\) did not issue "
                                           r"certificate 1 \(CN=Lower CA,O=Org\): intermediates must follow"):
        pki.load_ca(data, pki.private_key_pem(lower.key), "chain.pem", "lower.key")


def test_chain_order_problem(intermediate, org_root, ca, mk):
    leaf, _key, _spec = mk.leaf(intermediate)
    assert pki.chain_order_problem([leaf, intermediate.certificate, org_root.certificate]) is None
    assert pki.chain_order_problem([leaf]) is None
    problem = pki.chain_order_problem([leaf, org_root.certificate, intermediate.certificate])
    assert problem.startswith("certificate 2 (CN=Org Root CA,O=Cockroach) did not issue certificate 1 "
                              "(CN=node,O=Cockroach)")


def test_verify_chain(intermediate, org_root, ca, other_ca, mk):
    leaf, _key, _spec = mk.leaf(intermediate)
    assert pki.verify_chain(leaf, [intermediate.certificate], [org_root.certificate]) is None
    assert pki.verify_chain(leaf, [intermediate.certificate], [other_ca.certificate, org_root.certificate]) is None
    assert pki.verify_chain(leaf, [], [org_root.certificate]) == (
        "the certificate is not signed by any trusted CA (issuer CN=Org Intermediate CA,O=Org)")
    assert pki.verify_chain(leaf, [intermediate.certificate], [ca.certificate]) == (
        "intermediate CN=Org Intermediate CA,O=Org is not signed by any trusted CA (issuer CN=Org Root CA,O=Cockroach)")
    direct, _key, _spec = mk.leaf(ca)
    assert pki.verify_chain(direct, [], [ca.certificate]) is None
    assert "not signed by any trusted CA" in pki.verify_chain(direct, [], [other_ca.certificate])


def test_verify_chain_dates(ca, mk):
    past = pki.utcnow() - datetime.timedelta(days=5)
    old, _key, _spec = mk.leaf(ca, now=past, lifetime="1d")
    assert pki.verify_chain(old, [], [ca.certificate]) == (
        "CN=node,O=Cockroach expired on %s" % pki.not_after(old).isoformat())


def test_verify_chain_leaf_as_issuer_refused(ca, mk):
    """A leaf that signed something is not a CA, even when the signature checks out."""
    leaf_cert, leaf_key, _spec = mk.leaf(ca, "client", user="root")
    fake = pki.CertificateAuthority(leaf_cert, leaf_key)
    child = pki.issue(pki.build_spec("client", user="eve", lifetime="1d"), mk.ec().public_key(), fake)
    assert pki.verify_chain(child, [], [leaf_cert]) == "CN=root,O=Cockroach signed the certificate but is not a CA"


# --------------------------------------------------------------------------
# CSRs
# --------------------------------------------------------------------------

def test_make_csr_round_trip(ca, mk):
    spec = pki.build_spec("node", hosts=["n1.example.com", "10.1.1.1"])
    key = mk.ec()
    pem = pki.make_csr(spec, key)
    csr = x509.load_pem_x509_csr(pem)
    assert csr.subject == spec.subject()
    assert pki.san_keys(list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)) == \
        {("dns", "n1.example.com"), ("ip", "10.1.1.1")}
    assert list(csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    public_key = pki.csr_public_key(pem, "node.csr")
    assert pki.public_key_bytes(public_key) == pki.public_key_bytes(key.public_key())
    cert = pki.issue(spec, public_key, ca)
    assert pki.keys_match(cert, key)


def test_csr_tampered(mk):
    spec = pki.build_spec("client", user="alice")
    pem = pki.make_csr(spec, mk.ec())
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert der.count(b"alice") == 1
    forged = x509.load_der_x509_csr(der.replace(b"alice", b"admin")).public_bytes(serialization.Encoding.PEM)
    assert pki.common_name(x509.load_pem_x509_csr(forged).subject) == "admin"
    with pytest.raises(CrdbTlsError, match=r"^alice\.csr: the CSR's signature does not verify$"):
        pki.csr_public_key(forged, "alice.csr")


def test_csr_garbage_and_weak_key():
    with pytest.raises(CrdbTlsError, match=r"^x\.csr: not a valid PEM certificate signing request"):
        pki.csr_public_key(b"garbage", "x.csr")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = pki.make_csr(pki.build_spec("client", user="root"), weak)
    with pytest.raises(CrdbTlsError, match=r"^weak\.csr: RSA 1024-bit key is too weak"):
        pki.csr_public_key(pem, "weak.csr")


# --------------------------------------------------------------------------
# Drift and renewal
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_cert(ca):
    spec = pki.build_spec("node", hosts=["n1.example.com", "10.0.0.1"], ocsp_url="http://ocsp.example.com")
    return pki.issue(spec, pki.generate_key("ecdsa", 256).public_key(), ca)


def test_no_drift(node_cert):
    assert pki.drift(node_cert, pki.build_spec("node", hosts=["10.0.0.1", "N1.example.com"],
                                               ocsp_url="http://ocsp.example.com")) == []


@pytest.mark.parametrize("kwargs, reasons", [
    ({"hosts": ["n1.example.com", "10.0.0.1", "n2.example.com"]}, ["SANs differ (missing n2.example.com)"]),
    ({"hosts": ["n1.example.com"]}, ["SANs differ (extra 10.0.0.1)"]),
    ({"hosts": ["n1.example.com", "10.0.0.2"]}, ["SANs differ (missing 10.0.0.2; extra 10.0.0.1)"]),
    ({"organization": "Acme"}, ["organization is 'Cockroach', want 'Acme'"]),
    ({"ocsp_url": None}, ["OCSP URL is ['http://ocsp.example.com'], want absent"]),
    ({"ocsp_url": "http://new.example.com"},
     ["OCSP URL is ['http://ocsp.example.com'], want ['http://new.example.com']"]),
    ({"profile": "node_server"}, ["common name is 'node', want 'n1.example.com'",
                                  "extended key usage is serverAuth,clientAuth, want serverAuth (profile node_server)"]),
])
def test_drift_reasons(node_cert, kwargs, reasons):
    args = {"hosts": ["n1.example.com", "10.0.0.1"], "ocsp_url": "http://ocsp.example.com"}
    args.update(kwargs)
    profile = args.pop("profile", "node")
    assert pki.drift(node_cert, pki.build_spec(profile, **args)) == reasons


def test_drift_ca_and_missing_eku(ca):
    reasons = pki.drift(ca.certificate, pki.build_spec("client", user="root"))
    assert reasons == ["common name is 'Cockroach CA', want 'root'",
                       "extended key usage is absent, want clientAuth (profile client)",
                       "the certificate is a CA, want a client leaf"]


def test_renewal_reason(ca, mk):
    now = _now()
    cert, _key, _spec = mk.leaf(ca, now=now, lifetime="10d")
    end = pki.not_after(cert).strftime("%Y-%m-%d %H:%M UTC")
    assert pki.renewal_reason(cert, None, now) is None
    assert pki.renewal_reason(cert, datetime.timedelta(days=9), now) is None
    assert pki.renewal_reason(cert, datetime.timedelta(days=10), now) == \
        "expires on %s: 10d left of 11d, inside the 10d window" % end
    assert pki.renewal_reason(cert, pki.parse_window("250h", "w"), now) == \
        "expires on %s: 10d left of 11d, inside the 250h window" % end
    # 10 days back-dated 24h: 11 days of validity, 33% of which is 3d15h.
    assert pki.renewal_reason(cert, pki.parse_window("33%", "w"), now) is None
    assert pki.renewal_reason(cert, pki.parse_window("33%", "w"), now + datetime.timedelta(days=6, hours=9)) == \
        "expires on %s: 3d left of 11d, inside the 33%% (3d) window" % end
    assert pki.renewal_reason(cert, pki.parse_window("33%", "w"), now + datetime.timedelta(days=6, hours=7)) is None
    assert pki.renewal_reason(cert, None, now + datetime.timedelta(days=11)) == "expired on %s" % end
    assert pki.renewal_reason(cert, None, now - datetime.timedelta(days=2)) == \
        "not valid before %s" % pki.not_before(cert).isoformat()


def test_describe(ca, mk):
    cert, _key, _spec = mk.leaf(ca, hosts=["n1", "10.0.0.9"])
    info = pki.describe(cert)
    assert info["common_name"] == "node"
    assert info["sans"] == ["n1", "10.0.0.9"]
    assert info["ekus"] == ["serverAuth", "clientAuth"]
    assert info["is_ca"] is False and info["key"] == "ECDSA P-256"
    assert int(info["serial"], 16) == cert.serial_number and len(info["serial"]) % 2 == 0
    assert info["issuer"] == "CN=Cockroach CA,O=Cockroach"


def test_ec_curve_of_key_types():
    assert isinstance(pki.generate_key("ecdsa", 384).curve, ec.SECP384R1)


def test_zero_lifetime_refused_not_defaulted(mk):
    # "0h" parses to a zero timedelta, which must not fall back to the default lifetime
    with pytest.raises(CrdbTlsError, match=r"lifetime .* must be positive"):
        pki.build_spec("client", user="root", lifetime="0d")
    with pytest.raises(CrdbTlsError, match=r"lifetime .* must be positive"):
        pki.generate_ca(mk.ec(), lifetime="0h")
