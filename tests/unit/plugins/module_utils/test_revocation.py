# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revocation in the OpenSSL index (ledger.revoke/status) and the OCSP responder profile."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import multiprocessing
import os
import shutil
import subprocess

import pytest

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ansible_collections.crdb.tls.plugins.module_utils import issuance, ledger, pki, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

NOW = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)


def _lines(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8").splitlines()


@pytest.fixture
def index(tmp_path, ca, mk):
    """An index with alice (twice), bob and a node cert; returns (path, {name: [certs]})."""
    path = str(tmp_path / "index.txt")
    certs = {
        "alice": [mk.leaf(ca, "client", user="alice")[0], mk.leaf(ca, "client", user="alice")[0]],
        "bob": [mk.leaf(ca, "client", user="bob")[0]],
        "node": [mk.leaf(ca, "node")[0]],
    }
    ledger.record(path, [c for group in certs.values() for c in group])
    return path, certs


def test_revoke_by_serial_writes_openssl_fields(index):
    path, certs = index
    before = _lines(path)
    serial = pki.serial_hex(certs["bob"][0])
    changed = ledger.revoke(path, serial=serial.lower(), reason="keyCompromise", now=NOW)
    assert [row["serial"] for row in changed] == [serial]
    assert changed[0]["status"] == "revoked"
    assert changed[0]["reason"] == "keyCompromise"
    assert changed[0]["revoked_on"] == "2026-03-04T05:06:07+00:00"
    assert changed[0]["subject"] == "/O=Cockroach/CN=bob"
    after = _lines(path)
    assert len(after) == len(before)
    for old, new in zip(before, after):
        if serial in old:
            fields = new.split("\t")
            assert fields[0] == "R"
            assert fields[2] == "260304050607Z,keyCompromise"
            assert fields[1:2] + fields[3:] == old.split("\t")[1:2] + old.split("\t")[3:]
        else:
            assert new == old


def test_revoke_unspecified_writes_only_the_date(index):
    path, certs = index
    serial = pki.serial_hex(certs["node"][0])
    ledger.revoke(path, serial=serial, now=NOW)
    row = [line.split("\t") for line in _lines(path) if serial in line][0]
    assert row[0] == "R" and row[2] == "260304050607Z"
    assert [r for r in ledger.status(path) if r["serial"] == serial][0]["reason"] == "unspecified"


def test_revoke_by_common_name_takes_every_valid_cert_and_is_idempotent(index):
    path, certs = index
    changed = ledger.revoke(path, subject_cn="alice", reason="superseded", now=NOW)
    assert sorted(r["serial"] for r in changed) == sorted(pki.serial_hex(c) for c in certs["alice"])
    after = _lines(path)
    assert ledger.revoke(path, subject_cn="alice", reason="keyCompromise", now=NOW) == []
    assert _lines(path) == after  # the first revocation date and reason stay
    states = dict((r["serial"], r["status"]) for r in ledger.status(path))
    assert states[pki.serial_hex(certs["bob"][0])] == "valid"


def test_revoke_serial_forms(index):
    path, certs = index
    serial = pki.serial_hex(certs["bob"][0])
    colons = ":".join(serial[i:i + 2] for i in range(0, len(serial), 2))
    assert len(ledger.revoke(path, serial="0x" + colons.lower(), now=NOW)) == 1
    assert ledger.revoke(path, serial=serial, now=NOW) == []


def test_check_mode_writes_nothing(index):
    path, certs = index
    before = _lines(path)
    changed = ledger.revoke(path, subject_cn="bob", now=NOW, check_mode=True)
    assert [r["serial"] for r in changed] == [pki.serial_hex(certs["bob"][0])]
    assert _lines(path) == before


@pytest.mark.parametrize("kwargs, message", [
    ({"serial": "0BADBAD0"}, r"no certificate with serial 0BADBAD0 in .*index\.txt \(4 certificates recorded\)"),
    ({"subject_cn": "carol"}, r"no certificate with common name 'carol' in .*index\.txt"),
    ({"serial": "xyz"}, r"serial 'xyz' is not a positive hexadecimal certificate serial number"),
    ({"serial": "00"}, r"serial '00' is not a positive hexadecimal"),
    ({}, r"revoke needs exactly one of serial or subject_cn"),
    ({"serial": "01", "subject_cn": "bob"}, r"revoke needs exactly one of serial or subject_cn"),
    ({"serial": "01", "reason": "lost"}, r"revocation reason 'lost' is not one OpenSSL knows \(use one of: "
                                         r"unspecified, keyCompromise, CACompromise"),
    ({"serial": "01", "reason": "removeFromCRL"}, r"revocation reason 'removeFromCRL' is not one"),
])
def test_revoke_refusals_name_the_value(index, kwargs, message):
    path, _certs = index
    before = _lines(path)
    with pytest.raises(CrdbTlsError, match=message):
        ledger.revoke(path, now=NOW, **kwargs)
    assert _lines(path) == before


def test_revoke_without_index(tmp_path):
    missing = str(tmp_path / "ca.index.txt")
    with pytest.raises(CrdbTlsError, match=r"ca\.index\.txt does not exist: this CA has not recorded any"):
        ledger.revoke(missing, serial="01")
    assert os.listdir(str(tmp_path)) == []
    assert ledger.status(missing) == []


def test_reason_names_case_insensitive():
    assert ledger.canonical_reason("KEYCOMPROMISE") == "keyCompromise"
    assert ledger.canonical_reason("cacompromise") == "CACompromise"


def test_status_reads_dates_and_subjects(index):
    path, certs = index
    rows = ledger.status(path)
    assert [r["common_name"] for r in rows] == ["alice", "alice", "bob", "node"]
    assert all(r["status"] == "valid" and r["reason"] is None and r["revoked_on"] is None for r in rows)
    assert rows[2]["not_after"] == pki.not_after(certs["bob"][0]).replace(microsecond=0).isoformat()


def test_status_of_foreign_rows():
    row = ledger.row_dict(["R", "20500102030405Z", "491231235958Z,CACompromise", "0A", "unknown",
                           "/O=A\\/B/CN=x\\/y"])
    assert row["not_after"] == "2050-01-02T03:04:05+00:00"
    assert row["revoked_on"] == "2049-12-31T23:59:58+00:00"
    assert row["reason"] == "CACompromise" and row["common_name"] == "x/y"
    assert ledger.row_dict(["E", "990101000000Z", "", "0B", "unknown", "/CN=old"])["not_after"] \
        == "1999-01-01T00:00:00+00:00"
    assert ledger.row_dict(["V", "junk", "", "0C", "unknown", "/O=x"])["common_name"] is None


def test_openssl_reads_revocations(tmp_path, index):
    """`openssl ca -status` (a third-party reader of index.txt) sees the revoked serials as revoked."""
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("openssl CLI not installed")
    path, certs = index
    ledger.revoke(path, subject_cn="alice", reason="keyCompromise", now=NOW)
    ledger.revoke(path, serial=pki.serial_hex(certs["node"][0]), now=NOW)
    config = tmp_path / "openssl.cnf"
    config.write_text("[ ca ]\ndefault_ca = d\n[ d ]\ndir = %s\ndatabase = %s\n" % (tmp_path, path))
    expected = [(c, "Revoked (R)") for c in certs["alice"] + certs["node"]] + [(certs["bob"][0], "Valid (V)")]
    for cert, word in expected:
        serial = pki.serial_hex(cert)
        out = subprocess.run(["openssl", "ca", "-config", str(config), "-status", serial],
                             capture_output=True, text=True, check=False)
        assert "%s=%s" % (serial, word) in out.stdout + out.stderr


def _revoke_worker(path, name, barrier):
    barrier.wait(timeout=60)
    ledger.revoke(path, subject_cn=name, reason="superseded")


def _record_worker(path, pems, barrier):
    certs = [pki.load_certificates(pem, "pem")[0] for pem in pems]
    barrier.wait(timeout=60)
    for cert in certs:
        ledger.record(path, [cert])


def test_concurrent_revokes_and_records_lose_nothing(tmp_path, ca, mk):
    path = str(tmp_path / "index.txt")
    names = ["u%d" % i for i in range(4)]
    ledger.record(path, [mk.leaf(ca, "client", user=n)[0] for n in names])
    fresh = [pki.certificates_pem([mk.leaf(ca, "client", user="late")[0]]) for _index in range(10)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(names) + 1)
    procs = [ctx.Process(target=_revoke_worker, args=(path, n, barrier)) for n in names]
    procs.append(ctx.Process(target=_record_worker, args=(path, fresh, barrier)))
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    rows = ledger.status(path)
    assert len(rows) == 14
    assert sorted(r["common_name"] for r in rows if r["status"] == "revoked") == names
    assert [r["status"] for r in rows if r["common_name"] == "late"] == ["valid"] * 10


# --------------------------------------------------------------------------
# The OCSP responder profile
# --------------------------------------------------------------------------

def test_ocsp_profile(ca):
    spec = pki.build_spec("ocsp", common_name="Cockroach OCSP Responder")
    assert spec.filename == "ocsp.crt" and rules.key_name(spec.filename) == "ocsp.key"
    cert = pki.issue(spec, pki.generate_key("ecdsa", 256).public_key(), ca)
    assert pki.ekus(cert) == ["OCSPSigning"]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
    assert cert.extensions.get_extension_for_class(x509.OCSPNoCheck).critical is False
    assert pki.san_strings(cert) == []
    assert pki.issued_by(cert, ca.certificate)
    assert pki.drift(cert, spec) == []
    with pytest.raises(CrdbTlsError, match=r"profile 'ocsp' needs common_name"):
        pki.build_spec("ocsp")


def test_ocsp_profile_through_issuance(tmp_path, ca):
    """issuance.plan/apply keep ocsp.crt like any other leaf: issued once, then left alone."""
    certs_dir = str(tmp_path / "ocsp")
    os.mkdir(certs_dir)
    index_path = str(tmp_path / "index.txt")
    spec = pki.build_spec("ocsp", common_name="Responder")
    first = issuance.apply(issuance.plan(certs_dir, spec, ca, key_type="ecdsa", index_path=index_path))
    assert sorted(f[0] for f in first.files) == ["ocsp.crt", "ocsp.key"]
    assert ledger.status(index_path)[0]["subject"] == "/O=Cockroach/CN=Responder"
    again = issuance.plan(certs_dir, spec, ca, key_type="ecdsa", index_path=index_path)
    assert not again.changed and again.reasons == []
    renamed = issuance.plan(certs_dir, pki.build_spec("ocsp", common_name="Other"), ca, key_type="ecdsa")
    assert renamed.reasons == ["ocsp.crt: common name is 'Responder', want 'Other'"]


def test_existing_profiles_unchanged():
    assert rules.LEAF_PROFILES == ("node", "node_server", "node_client", "client", "ui", "ocsp")
    assert rules.cert_file_for("ocsp") == "ocsp.crt"
    # CockroachDB does not read ocsp.crt: a certs dir scan reports it as skipped.
    assert rules.classify("ocsp.crt")[0] is None


def test_revoked_serials_are_the_revoked_rows(index, tmp_path):
    path, certs = index
    assert ledger.revoked_serials(path) == set()
    ledger.revoke(path, subject_cn="bob", now=NOW)
    revoked = ledger.revoked_serials(path)
    assert revoked == set([ledger.canonical_serial(pki.serial_hex(certs["bob"][0]))])
    assert ledger.is_revoked(certs["bob"][0], revoked)
    assert not ledger.is_revoked(certs["alice"][0], revoked)
    assert not ledger.is_revoked(certs["bob"][0], set())
    assert ledger.revoked_serials(str(tmp_path / "no-index.txt")) == set()


def test_a_revoked_certificate_is_reissued_with_a_new_key(tmp_path, ca):
    certs_dir = str(tmp_path / "certs")
    os.mkdir(certs_dir, 0o700)
    index_path = str(tmp_path / "index.txt")
    spec = pki.build_spec("client", user="alice")
    first = issuance.apply(issuance.plan(certs_dir, spec, ca, key_type="ecdsa", index_path=index_path))
    old = first.certificate
    ledger.revoke(index_path, serial=pki.serial_hex(old), reason="keyCompromise", now=NOW)
    # Without the revoked set the certificate is fine; with it, it is re-issued, key and all.
    assert not issuance.plan(certs_dir, spec, ca, key_type="ecdsa").changed
    again = issuance.plan(certs_dir, spec, ca, key_type="ecdsa", index_path=index_path,
                          revoked=ledger.revoked_serials(index_path))
    assert again.reasons == ["client.alice.crt: serial %s is revoked in the CA's index" % pki.serial_hex(old)]
    assert sorted(f[0] for f in again.files) == ["client.alice.crt", "client.alice.key"]
    issuance.apply(again)
    assert again.certificate.serial_number != old.serial_number
    assert pki.public_key_bytes(again.certificate.public_key()) != pki.public_key_bytes(old.public_key())
    statuses = dict((row["serial"], row["status"]) for row in ledger.status(index_path))
    assert statuses == {pki.serial_hex(old): "revoked", pki.serial_hex(again.certificate): "valid"}
    assert not issuance.plan(certs_dir, spec, ca, key_type="ecdsa", revoked=ledger.revoked_serials(index_path)).changed
