# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The OpenSSL index.txt record of issued certificates (ledger.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import multiprocessing
import os
import re
import shutil
import subprocess

import pytest

from cryptography import x509
from cryptography.x509.oid import NameOID

from ansible_collections.crdb.tls.plugins.module_utils import ledger, pki


def _lines(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8").splitlines()


def test_record_format_matches_openssl_index(tmp_path, ca, mk):
    index = str(tmp_path / "index.txt")
    cert, _key, _spec = mk.leaf(ca, "node")
    assert ledger.record(index, [cert]) == 1
    lines = _lines(index)
    assert len(lines) == 1
    fields = lines[0].split("\t")
    assert fields == ["V", pki.not_after(cert).strftime("%y%m%d%H%M%SZ"), "", pki.serial_hex(cert), "unknown",
                      "/O=Cockroach/CN=node"]
    assert re.fullmatch(r"\d{12}Z", fields[1])
    assert re.fullmatch(r"[0-9A-F]+", fields[3]) and len(fields[3]) % 2 == 0
    assert int(fields[3], 16) == cert.serial_number
    with open(index + ".attr", "rb") as handle:
        assert handle.read() == b"unique_subject = no\n"


def test_record_twice_is_one_line(tmp_path, ca, mk):
    index = str(tmp_path / "index.txt")
    cert, _key, _spec = mk.leaf(ca, "client", user="root")
    assert ledger.record(index, [cert]) == 1
    before = _lines(index)
    assert ledger.record(index, [cert]) == 0
    assert ledger.record(index, [cert, cert]) == 0
    assert _lines(index) == before
    other, _key, _spec = mk.leaf(ca, "client", user="maxroach")
    assert ledger.record(index, [other, cert]) == 1
    assert [line.split("\t")[5] for line in _lines(index)] == ["/O=Cockroach/CN=root", "/O=Cockroach/CN=maxroach"]


def test_subject_escaping_and_order():
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "A/B"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "node")])
    assert ledger.openssl_subject(name) == "/C=DE/O=A\\/B/CN=node"


def test_time_format_switches_in_2050():
    assert ledger._openssl_time(datetime.datetime(2049, 12, 31, 23, 59, 58)) == "491231235958Z"
    assert ledger._openssl_time(datetime.datetime(2050, 1, 2, 3, 4, 5)) == "20500102030405Z"


def test_openssl_reads_the_index(tmp_path, ca, mk):
    """`openssl ca -status` (a third-party reader of index.txt) finds each serial as valid."""
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("openssl CLI not installed")
    index = str(tmp_path / "index.txt")
    certs = [mk.leaf(ca, "client", user="u%d" % i)[0] for i in range(3)]
    ledger.record(index, certs)
    config = tmp_path / "openssl.cnf"
    config.write_text("[ ca ]\ndefault_ca = d\n[ d ]\ndir = %s\ndatabase = %s\n" % (tmp_path, index))
    for cert in certs:
        serial = pki.serial_hex(cert)
        out = subprocess.run(["openssl", "ca", "-config", str(config), "-status", serial],
                             capture_output=True, text=True, check=False)
        assert "%s=Valid (V)" % serial in out.stdout + out.stderr
    missing = subprocess.run(["openssl", "ca", "-config", str(config), "-status", "0BADBAD0"],
                             capture_output=True, text=True, check=False)
    assert "not present in db" in missing.stdout + missing.stderr


def _record_worker(index, pems, barrier):
    certs = [pki.load_certificates(pem, "pem")[0] for pem in pems]
    barrier.wait(timeout=60)
    for cert in certs:
        ledger.record(index, [cert])


def test_concurrent_records_lose_nothing(tmp_path, ca, mk):
    index = str(tmp_path / "index.txt")
    batches = []
    for _proc in range(4):
        batches.append([pki.certificates_pem([mk.leaf(ca, "client", user="root")[0]]) for _index in range(10)])
    ctx = multiprocessing.get_context("fork")  # own fds and locks; no re-import
    barrier = ctx.Barrier(len(batches))
    procs = [ctx.Process(target=_record_worker, args=(index, batch, barrier)) for batch in batches]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    rows = ledger.read_index(index)
    assert len(rows) == 40
    expected = set(pki.serial_hex(pki.load_certificates(pem, "pem")[0]) for batch in batches for pem in batch)
    assert set(r[3] for r in rows) == expected
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith(".crdb-tls.")]
