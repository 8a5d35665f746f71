# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures for the engine's unit tests.

Everything is real crypto made with the engine itself. CAs are made once per
session; keys are ECDSA P-256 unless a test is about RSA, to keep the suite
fast. Helpers that tests need are reached through the ``mk`` fixture.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import shutil
import subprocess

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from ansible_collections.crdb.tls.plugins.module_utils import pki, rules
from ansible_collections.crdb.tls.plugins.plugin_utils import commands

# Signer commands are started by the controller's process runner, which the
# action plugins hand to module_utils/signer.py; the tests do the same.
commands.register()


def _ec():
    return pki.generate_key("ecdsa", 256)


def _make_root(common_name, lifetime=None, key=None):
    key = key or _ec()
    cert = pki.generate_ca(key, common_name=common_name, lifetime=lifetime)
    return pki.CertificateAuthority(cert, key)


def _make_intermediate(parent, common_name="Org Intermediate CA", lifetime_days=3000, key=None):
    """An intermediate CA signed by ``parent`` (the engine has no call for that: cryptography directly)."""
    key = key or _ec()
    now = pki.utcnow()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(parent.certificate.subject)
            .public_key(key.public_key()).serial_number(pki.new_serial())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=lifetime_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(parent.key, hashes.SHA256()))
    return pki.CertificateAuthority(cert, key, chain=[], roots=[parent.certificate])


@pytest.fixture(scope="session")
def ca():
    """The session's root CA (ECDSA P-256), made with the engine."""
    return _make_root("Cockroach CA")


@pytest.fixture(scope="session")
def other_ca():
    """An unrelated root CA."""
    return _make_root("Other CA")


@pytest.fixture(scope="session")
def client_ca():
    """A second root CA used as ca-client.crt in split-CA tests."""
    return _make_root("Cockroach Client CA")


@pytest.fixture(scope="session")
def org_root():
    return _make_root("Org Root CA")


@pytest.fixture(scope="session")
def intermediate(org_root):
    """An intermediate CA under ``org_root`` (leaf_chain == [intermediate])."""
    return _make_intermediate(org_root)


@pytest.fixture(scope="session")
def rsa_key():
    """One RSA 2048 key for the tests that are about RSA."""
    return pki.generate_key("rsa", 2048)


@pytest.fixture
def certs_dir(tmp_path):
    """An empty certs dir, mode 0700 as CockroachDB wants it."""
    path = tmp_path / "certs"
    path.mkdir(mode=0o700)
    return str(path)


@pytest.fixture
def pki_dir(tmp_path):
    path = tmp_path / "pki"
    path.mkdir(mode=0o700)
    return str(path)


def _write(path, data, mode):
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


class Helpers(object):
    """Small builders shared by the test files."""

    ec = staticmethod(_ec)
    make_root = staticmethod(_make_root)
    make_intermediate = staticmethod(_make_intermediate)
    write = staticmethod(_write)

    @staticmethod
    def leaf(ca, profile="node", key=None, now=None, hosts=None, **spec_kwargs):
        """``(cert, key, spec)`` of a leaf of ``profile`` signed by ``ca``."""
        if hosts is None and rules.PROFILES[profile]["sans"]:
            hosts = ["node1.example.com", "10.0.0.1"]
        if profile == "client" and "user" not in spec_kwargs:
            spec_kwargs["user"] = "root"
        spec = pki.build_spec(profile, hosts=hosts, **spec_kwargs)
        key = key or _ec()
        cert = pki.issue(spec, key.public_key(), ca, now=now)
        return cert, key, spec

    @staticmethod
    def install(certs_dir, name, cert, key=None, chain=(), key_mode=0o600):
        """Write ``name`` (cert + chain, 0644) and its key (``key_mode``) into a certs dir."""
        _write(os.path.join(certs_dir, name), pki.certificates_pem([cert] + list(chain)), 0o644)
        if key is not None:
            _write(os.path.join(certs_dir, rules.key_name(name)), pki.private_key_pem(key), key_mode)

    @staticmethod
    def install_ca(certs_dir, name, *cas):
        _write(os.path.join(certs_dir, name), pki.certificates_pem([c.certificate for c in cas]), 0o644)

    @staticmethod
    def openssl_ca(tmp_path, name, args):
        """A self-signed CA made by the openssl CLI (a third-party peer): ``(cert_pem, key_pem)``.

        cryptography refuses to sign with SHA-1, so weak CAs come from openssl.
        """
        if shutil.which("openssl") is None:  # pragma: no cover
            pytest.skip("openssl CLI not installed")
        cert, key = str(tmp_path / (name + ".crt")), str(tmp_path / (name + ".key"))
        subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "30", "-subj",
                        "/O=Cockroach/CN=%s" % name, "-keyout", key, "-out", cert] + list(args),
                       check=True, capture_output=True)
        with open(cert, "rb") as c, open(key, "rb") as k:
            return c.read(), k.read()


@pytest.fixture(scope="session")
def mk():
    return Helpers
