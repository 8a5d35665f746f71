# -*- coding: utf-8 -*-
"""PEM framing without cryptography (pem.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import subprocess

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import pem, pki
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError


def test_fingerprint_matches_the_engine_and_openssl(tmp_path):
    key = pki.generate_key("ecdsa", 256)
    cert = pki.generate_ca(key, "pem test CA")
    data = pki.certificates_pem([cert])
    path = tmp_path / "ca.crt"
    path.write_bytes(data)
    out = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    from_openssl = out.strip().split("=", 1)[1].replace(":", "").lower()
    assert pem.certificate_fingerprint(data, "ca.crt") == pki.fingerprint(cert) == from_openssl


def test_fingerprint_is_of_the_first_certificate():
    first = pki.generate_ca(pki.generate_key("ecdsa", 256), "first")
    second = pki.generate_ca(pki.generate_key("ecdsa", 256), "second")
    assert pem.certificate_fingerprint(pki.certificates_pem([first, second]), "x") == pki.fingerprint(first)


@pytest.mark.parametrize("data", [
    b"",
    b"garbage",
    b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
])
def test_not_a_certificate_names_the_source(data):
    with pytest.raises(CrdbTlsError, match=r"^node\.crt: not a PEM certificate file"):
        pem.certificate_fingerprint(data, "node.crt")


def test_blocks_lists_labels_in_order():
    data = (b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
            b"-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n")
    assert [label for label, _block in pem.blocks(data)] == ["CERTIFICATE", "EC PRIVATE KEY"]
