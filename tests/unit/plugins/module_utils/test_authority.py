# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A CA kept in a PKI directory (authority.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import multiprocessing
import os
import re
import stat

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import authority, pki
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

EC = {"key_type": "ecdsa", "key_size": 256}


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _certs(path):
    return pki.load_certificates(_read(path), path)


def _fps(path):
    return [pki.fingerprint(c) for c in _certs(path)]


def _snapshot(directory):
    return dict((name, (_read(os.path.join(directory, name)), os.stat(os.path.join(directory, name)).st_mtime_ns))
                for name in sorted(os.listdir(directory)))


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generate_new_ca(pki_dir):
    result = authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    assert result["changed"] is True and result["rotated"] is True
    assert result["reasons"] == ["no CA yet in %s" % pki_dir]
    assert sorted(os.listdir(pki_dir)) == ["ca.crt", "ca.key", "ca.signer.pem"]
    assert (result["cert"], result["key"], result["bundle"]) == (p["signer"], p["key"], p["bundle"])
    assert _mode(p["key"]) == 0o600 and _mode(p["bundle"]) == 0o644
    signer = _certs(p["signer"])
    assert len(signer) == 1 and pki.fingerprint(signer[0]) == result["fingerprint_sha256"]
    assert _fps(p["bundle"]) == [result["fingerprint_sha256"]] == result["bundle_fingerprints"]
    assert result["subject"] == "CN=Cockroach CA,O=Cockroach"
    assert result["is_intermediate"] is False
    key = pki.load_private_key(_read(p["key"]), p["key"])
    assert pki.keys_match(signer[0], key) and pki.key_spec_of(key) == ("ecdsa", 256)
    loaded = authority.load(pki_dir, "ca")
    assert loaded.certificate == signer[0] and loaded.roots == signer and loaded.leaf_chain == []


def test_second_run_is_idempotent(pki_dir):
    first = authority.ensure(pki_dir, **EC)
    before = _snapshot(pki_dir)
    second = authority.ensure(pki_dir, **EC)
    assert second["changed"] is False and second["rotated"] is False
    assert second["reasons"] == []
    assert second["fingerprint_sha256"] == first["fingerprint_sha256"]
    assert _snapshot(pki_dir) == before


def test_generated_rsa_ca(pki_dir):
    result = authority.ensure(pki_dir, lifetime="30d")
    key = pki.load_private_key(_read(result["key"]), result["key"])
    assert pki.key_spec_of(key) == ("rsa", 2048)
    cert = _certs(result["cert"])[0]
    assert pki.signature_hash_name(cert) == "sha256"
    assert pki.not_after(cert) - pki.not_before(cert) == datetime.timedelta(days=31)


def test_force_rotation_keeps_old_root_second(pki_dir):
    old = authority.ensure(pki_dir, **EC)
    new = authority.ensure(pki_dir, force=True, **EC)
    assert new["rotated"] is True and new["reasons"] == ["forced"]
    assert new["fingerprint_sha256"] != old["fingerprint_sha256"]
    assert new["bundle_fingerprints"] == [new["fingerprint_sha256"], old["fingerprint_sha256"]]
    assert _fps(new["bundle"]) == new["bundle_fingerprints"]
    assert _fps(new["cert"]) == [new["fingerprint_sha256"]]
    loaded = authority.load(pki_dir, "ca")
    assert [pki.fingerprint(c) for c in loaded.roots] == new["bundle_fingerprints"]
    assert pki.fingerprint(loaded.certificate) == new["fingerprint_sha256"]
    # a third rotation keeps both earlier roots, newest first
    third = authority.ensure(pki_dir, force=True, **EC)
    assert third["bundle_fingerprints"] == [third["fingerprint_sha256"], new["fingerprint_sha256"],
                                            old["fingerprint_sha256"]]


def test_force_rotation_without_keep_previous(pki_dir):
    authority.ensure(pki_dir, **EC)
    new = authority.ensure(pki_dir, force=True, keep_previous=False, **EC)
    assert new["bundle_fingerprints"] == [new["fingerprint_sha256"]]
    assert _fps(new["bundle"]) == [new["fingerprint_sha256"]]


def test_renew_before_triggers_rotation(pki_dir):
    old = authority.ensure(pki_dir, lifetime="10d", **EC)
    end = datetime.datetime.fromisoformat(old["not_after"]).strftime("%Y-%m-%d %H:%M UTC")
    kept = authority.ensure(pki_dir, renew_before="5d", **EC)
    assert kept["rotated"] is False and kept["reasons"] == []
    new = authority.ensure(pki_dir, renew_before="30d", **EC)
    assert new["rotated"] is True
    assert new["reasons"] == ["CA expires on %s: 9d left of 11d, inside the 30d window" % end]
    assert new["bundle_fingerprints"] == [new["fingerprint_sha256"], old["fingerprint_sha256"]]


def test_expired_ca_is_replaced_and_dropped_from_bundle(pki_dir):
    past = pki.utcnow() - datetime.timedelta(days=10)
    old = authority.ensure(pki_dir, lifetime="2d", now=past, **EC)
    new = authority.ensure(pki_dir, **EC)
    assert new["rotated"] is True
    assert len(new["reasons"]) == 1
    assert re.match(r"^%s: CA CN=Cockroach CA,O=Cockroach expired on " % re.escape(new["cert"]), new["reasons"][0])
    # an expired root is no use in the trust bundle
    assert new["bundle_fingerprints"] == [new["fingerprint_sha256"]]
    assert old["fingerprint_sha256"] not in _fps(new["bundle"])


def test_broken_key_refused_without_force(pki_dir):
    old = authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    with open(p["key"], "wb") as handle:
        handle.write(b"garbage")
    with pytest.raises(CrdbTlsError, match=r"the CA in %s cannot be used and will not be replaced without force=true "
                                           r"\(replacing it invalidates every certificate it issued\): CA key "
                                           r"unreadable: %s: not a readable PEM private key"
                       % (re.escape(pki_dir), re.escape(p["key"]))):
        authority.ensure(pki_dir, **EC)
    assert _read(p["key"]) == b"garbage"
    new = authority.ensure(pki_dir, force=True, **EC)
    assert new["rotated"] is True
    assert new["reasons"][0].startswith("CA key unreadable: ") and new["reasons"][-1] == "forced"
    assert new["bundle_fingerprints"] == [new["fingerprint_sha256"], old["fingerprint_sha256"]]


def test_mismatched_key_refused_without_force(pki_dir, mk):
    authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    mk.write(p["key"], pki.private_key_pem(mk.ec()), 0o600)
    with pytest.raises(CrdbTlsError, match=r"without force=true .*: CA key %s does not match %s$"
                       % (re.escape(p["key"]), re.escape(p["signer"]))):
        authority.ensure(pki_dir, **EC)


def test_key_mode_drift_is_fixed(pki_dir):
    authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    os.chmod(p["key"], 0o644)
    result = authority.ensure(pki_dir, **EC)
    assert result["changed"] is True and result["rotated"] is False
    assert result["reasons"] == ["mode of %s is 0644, want 0600" % p["key"]]
    assert _mode(p["key"]) == 0o600


def test_a_linked_ca_key_is_never_chmodded_through(pki_dir, tmp_path):
    authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    outside = str(tmp_path / "elsewhere.key")
    os.rename(p["key"], outside)
    os.chmod(outside, 0o644)
    os.symlink(outside, p["key"])
    with pytest.raises(CrdbTlsError, match=r"^file %s is a symbolic link: refusing to use it" % re.escape(p["key"])):
        authority.ensure(pki_dir, **EC)
    assert _mode(outside) == 0o644


def test_bundle_not_starting_with_current_ca_is_repaired(pki_dir, other_ca):
    first = authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    current = _certs(p["signer"])[0]
    with open(p["bundle"], "wb") as handle:
        handle.write(pki.certificates_pem([other_ca.certificate, current]))
    result = authority.ensure(pki_dir, **EC)
    assert result["rotated"] is False
    assert result["reasons"] == ["trust bundle %s does not start with the current CA" % p["bundle"]]
    assert _fps(p["bundle"]) == [first["fingerprint_sha256"], pki.fingerprint(other_ca.certificate)]


def _provide(tmp_path, name, certs, key, passphrase=None):
    cert_src, key_src = str(tmp_path / (name + ".pem")), str(tmp_path / (name + ".key"))
    with open(cert_src, "wb") as handle:
        handle.write(pki.certificates_pem(certs))
    with open(key_src, "wb") as handle:
        handle.write(pki.private_key_pem(key, passphrase))
    return cert_src, key_src


def test_provided_root_import(pki_dir, tmp_path, org_root):
    cert_src, key_src = _provide(tmp_path, "root", [org_root.certificate], org_root.key)
    result = authority.ensure(pki_dir, cert_src=cert_src, key_src=key_src)
    assert result["rotated"] is True
    assert result["reasons"] == ["no CA yet in %s" % pki_dir,
                                 "provided CA CN=Org Root CA,O=Cockroach (%s) is not the current one" % cert_src]
    assert result["fingerprint_sha256"] == pki.fingerprint(org_root.certificate)
    assert _fps(result["bundle"]) == [pki.fingerprint(org_root.certificate)]
    assert _read(result["key"]) == _read(key_src)
    again = authority.ensure(pki_dir, cert_src=cert_src, key_src=key_src)
    assert again["changed"] is False and again["reasons"] == []


def test_provided_root_replaces_generated_one(pki_dir, tmp_path, org_root):
    generated = authority.ensure(pki_dir, **EC)
    cert_src, key_src = _provide(tmp_path, "root", [org_root.certificate], org_root.key)
    result = authority.ensure(pki_dir, cert_src=cert_src, key_src=key_src)
    assert result["bundle_fingerprints"] == [pki.fingerprint(org_root.certificate), generated["fingerprint_sha256"]]


def test_provided_intermediate(pki_dir, tmp_path, intermediate, org_root, mk):
    cert_src, key_src = _provide(tmp_path, "int", [intermediate.certificate, org_root.certificate],
                                 intermediate.key, passphrase="org-secret")
    result = authority.ensure(pki_dir, cert_src=cert_src, key_src=key_src, src_passphrase="org-secret")
    assert result["is_intermediate"] is True
    assert result["subject"] == "CN=Org Intermediate CA,O=Org"
    assert _fps(result["bundle"]) == [pki.fingerprint(org_root.certificate)]
    assert _fps(result["cert"]) == [pki.fingerprint(intermediate.certificate)]
    loaded = authority.load(pki_dir, "ca", passphrase="org-secret")
    assert loaded.leaf_chain == [intermediate.certificate]
    assert loaded.roots == [org_root.certificate]
    leaf = pki.issue(pki.build_spec("client", user="root"), mk.ec().public_key(), loaded)
    assert pki.verify_chain(leaf, loaded.leaf_chain, loaded.roots) is None
    again = authority.ensure(pki_dir, cert_src=cert_src, key_src=key_src, src_passphrase="org-secret")
    assert again["changed"] is False and again["reasons"] == []


def test_provided_leaf_refused(pki_dir, tmp_path, ca, mk):
    cert, key, _spec = mk.leaf(ca)
    cert_src, key_src = _provide(tmp_path, "leaf", [cert], key)
    with pytest.raises(CrdbTlsError, match=r"^%s: CN=node,O=Cockroach is not a CA certificate" % re.escape(cert_src)):
        authority.ensure(pki_dir, cert_src=cert_src, key_src=key_src)
    assert os.listdir(pki_dir) == []


def test_provided_needs_cert_and_key(pki_dir, tmp_path, org_root):
    cert_src, _key_src = _provide(tmp_path, "root", [org_root.certificate], org_root.key)
    with pytest.raises(CrdbTlsError, match=r"^cert_src and key_src go together"):
        authority.ensure(pki_dir, cert_src=cert_src)


def test_check_mode_writes_nothing(pki_dir):
    result = authority.ensure(pki_dir, check_mode=True, **EC)
    assert result["changed"] is True and result["reasons"] == ["no CA yet in %s" % pki_dir]
    assert os.listdir(pki_dir) == []
    authority.ensure(pki_dir, **EC)
    before = _snapshot(pki_dir)
    forced = authority.ensure(pki_dir, force=True, check_mode=True, **EC)
    assert forced["changed"] is True and forced["rotated"] is True
    assert _snapshot(pki_dir) == before


def test_passphrase_encrypted_key(pki_dir):
    result = authority.ensure(pki_dir, passphrase="hunter2", **EC)
    assert b"ENCRYPTED" in _read(result["key"])
    loaded = authority.load(pki_dir, "ca", passphrase="hunter2")
    assert pki.fingerprint(loaded.certificate) == result["fingerprint_sha256"]
    with pytest.raises(CrdbTlsError, match=r"^%s: the key is encrypted and no passphrase was given$"
                       % re.escape(result["key"])):
        authority.load(pki_dir, "ca")
    with pytest.raises(CrdbTlsError, match=r"wrong passphrase"):
        authority.load(pki_dir, "ca", passphrase="hunter3")
    assert authority.ensure(pki_dir, passphrase="hunter2", **EC)["changed"] is False


def test_client_ca_role_file_names(pki_dir):
    result = authority.ensure(pki_dir, role="client_ca", **EC)
    assert sorted(os.listdir(pki_dir)) == ["ca-client.crt", "ca-client.key", "ca-client.signer.pem"]
    assert result["bundle_name"] == "ca-client.crt"
    assert result["index"] == os.path.join(pki_dir, "ca-client.index.txt")
    assert result["subject"] == "CN=Cockroach Client CA,O=Cockroach"
    # the two roles live side by side
    authority.ensure(pki_dir, role="ca", **EC)
    assert pki.common_name(authority.load(pki_dir, "ca").certificate) == "Cockroach CA"
    assert pki.common_name(authority.load(pki_dir, "client_ca").certificate) == "Cockroach Client CA"


def test_missing_pki_dir_is_made_private_after_the_inputs_are_checked(tmp_path):
    pki_dir = str(tmp_path / "new" / "pki")   # its parent is made too, as mkdir -p would
    with pytest.raises(CrdbTlsError, match=r"^key_size 1024"):
        authority.ensure(pki_dir, key_type="rsa", key_size=1024)
    assert not os.path.exists(str(tmp_path / "new"))   # a bad input writes nothing, not even the directory
    checked = authority.ensure(pki_dir, check_mode=True, **EC)
    assert checked["changed"] and checked["rotated"]
    assert checked["reasons"][0] == "PKI directory %s created (mode 0700)" % pki_dir
    assert not os.path.exists(str(tmp_path / "new"))   # check mode makes nothing
    made = authority.ensure(pki_dir, **EC)
    assert made["reasons"][0] == "PKI directory %s created (mode 0700)" % pki_dir
    assert stat.S_IMODE(os.stat(pki_dir).st_mode) == 0o700
    assert authority.ensure(pki_dir, **EC)["changed"] is False


def test_open_pki_dir_is_tightened(tmp_path):
    pki_dir = str(tmp_path / "pki")
    authority.ensure(pki_dir, **EC)
    os.chmod(pki_dir, 0o755)
    checked = authority.ensure(pki_dir, check_mode=True, **EC)
    assert checked["changed"] and not checked["rotated"]
    assert checked["reasons"] == ["PKI directory %s was mode 0755, now 0700" % pki_dir]
    assert stat.S_IMODE(os.stat(pki_dir).st_mode) == 0o755
    assert authority.ensure(pki_dir, **EC)["reasons"] == ["PKI directory %s was mode 0755, now 0700" % pki_dir]
    assert stat.S_IMODE(os.stat(pki_dir).st_mode) == 0o700


def test_errors_name_the_path(tmp_path, pki_dir):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(CrdbTlsError, match=r"^PKI directory %s exists but is not a directory" % re.escape(str(a_file))):
        authority.ensure(str(a_file), **EC)
    below_a_file = os.path.join(str(a_file), "sub", "pki")
    with pytest.raises(CrdbTlsError, match=r"^PKI directory %s cannot be made: %s is not a directory"
                       % (re.escape(below_a_file), re.escape(str(a_file)))):
        authority.ensure(below_a_file, **EC)
    with pytest.raises(CrdbTlsError, match=r"^CA ca: %s does not exist; create the CA first"
                       % re.escape(os.path.join(pki_dir, "ca.signer.pem"))):
        authority.load(pki_dir, "ca")
    with pytest.raises(CrdbTlsError, match=r"^CA role 'ui_ca' is not known \(use one of: ca, client_ca\)"):
        authority.paths(pki_dir, "ui_ca")


# --------------------------------------------------------------------------
# Two runs at once
# --------------------------------------------------------------------------

def _ensure_worker(pki_dir, barrier, queue):
    barrier.wait(timeout=60)
    result = authority.ensure(pki_dir, key_type="ecdsa", key_size=256)
    queue.put((result["fingerprint_sha256"], result["rotated"]))


def test_concurrent_ensure_makes_one_ca(pki_dir):
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_ensure_worker, args=(pki_dir, barrier, queue)) for _index in range(2)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=60) for _proc in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    fingerprints = set(fp for fp, _rotated in results)
    assert len(fingerprints) == 1
    assert sorted(rotated for _fp, rotated in results) == [False, True]
    p = authority.paths(pki_dir, "ca")
    assert _fps(p["bundle"]) == list(fingerprints) == _fps(p["signer"])


# --- issue 14: the CA key is never lost ---------------------------------------------------------

def test_pki_dir_inside_installed_collection_refused(tmp_path):
    inside = str(tmp_path / "c" / "ansible_collections" / "crdb" / "tls" / "crdb-pki")
    with pytest.raises(CrdbTlsError) as err:
        authority.ensure(inside, **EC)
    assert str(err.value).startswith("PKI directory %s is inside the installed collections tree %s: "
                                     % (inside, str(tmp_path / "c" / "ansible_collections")))
    assert not (tmp_path / "c").exists()
    # A link from outside into such a tree is refused as well.
    (tmp_path / "c" / "ansible_collections").mkdir(parents=True)
    os.symlink(str(tmp_path / "c" / "ansible_collections"), str(tmp_path / "link"))
    with pytest.raises(CrdbTlsError, match="is inside the installed collections tree"):
        authority.ensure(str(tmp_path / "link" / "pki"), **EC)


def test_lost_ca_with_issued_sets_is_not_replaced(pki_dir):
    authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    os.makedirs(os.path.join(pki_dir, "issued", "n1"))
    os.unlink(p["key"])
    with pytest.raises(CrdbTlsError) as err:
        authority.ensure(pki_dir, **EC)
    assert str(err.value).startswith(
        "PKI directory %s lost its CA ca (%s missing) but holds what it issued (issued sets in %s): refusing to "
        "make a new CA" % (pki_dir, p["key"], os.path.join(pki_dir, "issued")))
    assert not os.path.exists(p["key"])
    # force starts a new CA on purpose.
    assert authority.ensure(pki_dir, force=True, **EC)["rotated"] is True


def test_lost_ca_with_only_an_index_is_not_replaced(pki_dir):
    authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    with open(p["index"], "w") as handle:
        handle.write("V\t300101000000Z\t\t01\tunknown\t/CN=node\n")
    os.unlink(p["signer"])
    with pytest.raises(CrdbTlsError, match=r"lost its CA ca \(%s missing\) but holds what it issued \(%s\)"
                       % (re.escape(p["signer"]), re.escape(p["index"]))):
        authority.ensure(pki_dir, **EC)


def test_replaced_key_is_kept_beside_it(pki_dir):
    authority.ensure(pki_dir, **EC)
    p = authority.paths(pki_dir, "ca")
    first = _read(p["key"])
    second = authority.ensure(pki_dir, force=True, **EC)
    assert _read(second["key_backup"]) == first
    assert stat.S_IMODE(os.lstat(second["key_backup"]).st_mode) == 0o600
    assert re.fullmatch(r"ca\.key\.\d{8}T\d{6}Z\.bak", os.path.basename(second["key_backup"]))
    # Two rotations in the same second keep both keys.
    second_key = _read(p["key"])
    third = authority.ensure(pki_dir, force=True, now=pki.utcnow(), **EC)
    assert third["key_backup"] != second["key_backup"]
    assert _read(third["key_backup"]) == second_key and _read(second["key_backup"]) == first
    assert authority.ensure(pki_dir, **EC)["key_backup"] is None


def test_provided_ca_checked_against_leaf_lifetime_before_any_file_changes(pki_dir, tmp_path, mk):
    authority.ensure(pki_dir, **EC)
    before = _snapshot(pki_dir)
    key = mk.ec()
    cert = pki.generate_ca(key, common_name="Short Org CA", organization="Org", lifetime="100d")
    cert_src, key_src = str(tmp_path / "org.crt"), str(tmp_path / "org.key")
    with open(cert_src, "wb") as handle:
        handle.write(pki.certificates_pem([cert]))
    with open(key_src, "wb") as handle:
        handle.write(pki.private_key_pem(key))
    with pytest.raises(CrdbTlsError) as err:
        authority.ensure(pki_dir, cert_src=cert_src, key_src=key_src, leaf_lifetime="43920h")
    assert re.match(r"a certificate of lifetime 1830d issued by the provided CA %s would be valid until .* after "
                    r"its CA expires" % re.escape(cert_src), str(err.value))
    assert _snapshot(pki_dir) == before
    imported = authority.ensure(pki_dir, cert_src=cert_src, key_src=key_src, leaf_lifetime="50d")
    assert imported["rotated"] is True and imported["key_backup"] is not None


def test_rotation_keeps_the_old_key_until_it_has_finished(pki_dir):
    authority.ensure(pki_dir, **EC)
    old_key = _read(authority.paths(pki_dir, "ca")["key"])
    started = authority.ensure(pki_dir, rotation="start", **EC)
    assert _read(started["key_backup"]) == old_key
    for step in ("trusted", "reissued"):
        assert not any("may now be removed" in r for r in authority.ensure(pki_dir, rotation=step, **EC)["reasons"])
    finished = authority.ensure(pki_dir, rotation="finish", **EC)
    assert ("the rotation that retires the previous CA is finished: its key backups (%s) may now be removed by hand"
            % started["key_backup"]) in finished["reasons"]
    assert _read(started["key_backup"]) == old_key
