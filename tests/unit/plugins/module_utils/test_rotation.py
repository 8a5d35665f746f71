# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resumable CA rotation steps of authority.ensure (``rotation=...``), with real crypto."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import authority, fileio, fleet, pki
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

EC = {"key_type": "ecdsa", "key_size": 256}


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _fps(path):
    return [pki.fingerprint(c) for c in pki.load_certificates(_read(path), path)]


def _snapshot(directory):
    return dict((name, _read(os.path.join(directory, name))) for name in sorted(os.listdir(directory))
                if os.path.isfile(os.path.join(directory, name)))


def _provide(tmp_path, name, certs, key):
    cert_src, key_src = str(tmp_path / (name + ".pem")), str(tmp_path / (name + ".key"))
    with open(cert_src, "wb") as handle:
        handle.write(pki.certificates_pem(certs))
    with open(key_src, "wb") as handle:
        handle.write(pki.private_key_pem(key))
    return cert_src, key_src


def test_start_makes_one_new_ca_and_a_rerun_resumes(pki_dir):
    old = authority.ensure(pki_dir, **EC)
    first = authority.ensure(pki_dir, rotation="start", **EC)
    assert first["rotated"] is True
    assert first["fingerprint_sha256"] != old["fingerprint_sha256"]
    assert _fps(first["bundle"]) == [first["fingerprint_sha256"], old["fingerprint_sha256"]]
    state = authority.rotation_state(pki_dir, "ca")
    assert state["state"] == "started" and state["new"] == first["fingerprint_sha256"]
    assert state["previous"] == [old["fingerprint_sha256"]]
    assert first["rotation"] == state
    assert "CA rotation of ca: started" in first["reasons"]
    before = _snapshot(pki_dir)
    again = authority.ensure(pki_dir, rotation="start", **EC)
    assert again["changed"] is False and again["rotated"] is False and again["reasons"] == []
    assert again["fingerprint_sha256"] == first["fingerprint_sha256"]
    assert _snapshot(pki_dir) == before


def test_start_interrupted_mid_commit_is_completed_not_repeated(pki_dir, monkeypatch):
    old = authority.ensure(pki_dir, **EC)
    real_rename = os.rename
    calls = []

    def rename_then_die(src, dst, **kwargs):
        # Let the journal and the first CA file land, then cut the run short.
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt("cut short")
        return real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        authority.ensure(pki_dir, rotation="start", **EC)
    monkeypatch.setattr(os, "rename", real_rename)
    assert fileio.pending_journal(pki_dir), "the cut-short commit left its journal"
    resumed = authority.ensure(pki_dir, rotation="start", **EC)
    # The interrupted commit was rolled forward: its CA is the new one, no third CA.
    state = authority.rotation_state(pki_dir, "ca")
    assert state["state"] == "started"
    assert resumed["rotated"] is False
    assert resumed["fingerprint_sha256"] == state["new"] != old["fingerprint_sha256"]
    assert _fps(resumed["bundle"]) == [state["new"], old["fingerprint_sha256"]]
    assert not fileio.pending_journal(pki_dir)
    key = pki.load_private_key(_read(resumed["key"]), resumed["key"])
    assert pki.keys_match(pki.load_certificates(_read(resumed["cert"]), resumed["cert"])[0], key)


def test_normal_use_and_load_refused_while_phase_1_is_open(pki_dir):
    authority.ensure(pki_dir, **EC)
    authority.ensure(pki_dir, rotation="start", **EC)
    with pytest.raises(CrdbTlsError, match=r"CA rotation of ca in .* is in phase 1: the new CA [0-9a-f]{16} is not "
                                           r"yet trusted by every host.*crdb_tls_rotate_phase=1"):
        authority.ensure(pki_dir, **EC)
    with pytest.raises(CrdbTlsError, match="is in phase 1"):
        authority.load(pki_dir, "ca")
    with pytest.raises(CrdbTlsError, match="is in phase 1"):
        fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": ["n1"]}}, users=["root"], **EC)
    marked = authority.ensure(pki_dir, rotation="trusted", **EC)
    assert marked["rotation"]["state"] == "trusted" and marked["rotated"] is False
    assert marked["reasons"] == ["CA rotation of ca: trusted"]
    assert authority.ensure(pki_dir, **EC)["changed"] is False
    assert authority.load(pki_dir, "ca") is not None


def test_full_rotation_reissues_and_finishes(pki_dir):
    old = authority.ensure(pki_dir, **EC)
    nodes = {"n1": {"sans": ["n1.example.test"]}, "n2": {"sans": ["n2.example.test"]}}
    fleet.issue(pki_dir, "standard", nodes=nodes, users=["root"], **EC)
    node_dir = fleet.issued_dir(pki_dir, "n1")
    old_leaf = _read(os.path.join(node_dir, "node.crt"))
    new = authority.ensure(pki_dir, rotation="start", **EC)
    authority.ensure(pki_dir, rotation="trusted", **EC)
    # Rerunning phase 1 after it completed keeps the progress and the CA.
    rerun = authority.ensure(pki_dir, rotation="start", **EC)
    assert rerun["changed"] is False and rerun["rotation"]["state"] == "trusted"
    with pytest.raises(CrdbTlsError, match="phase 2 of the CA rotation of ca is not recorded as done "
                                           r"\(state trusted\).*run phase 2 first, or pass force=true"):
        authority.ensure(pki_dir, rotation="finish", **EC)
    issued = fleet.issue(pki_dir, "standard", nodes=nodes, users=["root"], **EC)
    assert issued["issued_count"] == 3
    assert any("not signed by the current CA" in r for r in issued["hosts"]["n1"]["reasons"])
    new_leaf = pki.load_certificates(_read(os.path.join(node_dir, "node.crt")), "node.crt")[0]
    assert _read(os.path.join(node_dir, "node.crt")) != old_leaf
    assert _fps(os.path.join(node_dir, "ca.crt")) == [new["fingerprint_sha256"], old["fingerprint_sha256"]]
    assert pki.verify_chain(new_leaf, [], pki.load_certificates(_read(new["cert"]), new["cert"])) is None
    authority.ensure(pki_dir, rotation="reissued", **EC)
    done = authority.ensure(pki_dir, rotation="finish", **EC)
    assert done["rotation"]["state"] == "finished"
    assert _fps(done["bundle"]) == [new["fingerprint_sha256"]]
    assert any(r.startswith("CA rotation: removed the previous CA CN=Cockroach CA,O=Cockroach " +
                            old["fingerprint_sha256"][:16]) for r in done["reasons"])
    before = _snapshot(pki_dir)
    assert authority.ensure(pki_dir, rotation="finish", **EC)["changed"] is False
    assert _snapshot(pki_dir) == before
    # The next site.yml run puts the one-root bundle in every issued dir.
    fleet.issue(pki_dir, "standard", nodes=nodes, users=["root"], **EC)
    assert _fps(os.path.join(node_dir, "ca.crt")) == [new["fingerprint_sha256"]]
    with pytest.raises(CrdbTlsError, match="already finished; a new one starts with phase 1"):
        authority.ensure(pki_dir, rotation="trusted", **EC)
    # After phase 3 a phase 1 is the next rotation, which remembers the last one.
    nxt = authority.ensure(pki_dir, rotation="start", **EC)
    assert nxt["rotated"] is True
    assert nxt["rotation"]["previous"] == [new["fingerprint_sha256"]]
    assert nxt["rotation"]["history"][0]["new"] == new["fingerprint_sha256"]


def test_finish_with_force_before_phase_2(pki_dir):
    authority.ensure(pki_dir, **EC)
    new = authority.ensure(pki_dir, rotation="start", **EC)
    done = authority.ensure(pki_dir, rotation="finish", force=True, **EC)
    assert done["rotated"] is False and done["fingerprint_sha256"] == new["fingerprint_sha256"]
    assert done["rotation"]["finished_unconfirmed"] is True
    assert _fps(done["bundle"]) == [new["fingerprint_sha256"]]


def test_steps_need_a_started_rotation(pki_dir):
    with pytest.raises(CrdbTlsError, match="there is no CA of role ca in .* to rotate; create it first"):
        authority.ensure(pki_dir, rotation="start", **EC)
    authority.ensure(pki_dir, **EC)
    for step in ("trusted", "reissued", "finish"):
        with pytest.raises(CrdbTlsError, match=r"no CA rotation of ca was started in .*ca\.rotation\.json does not "
                                               r"exist\): run phase 1 first"):
            authority.ensure(pki_dir, rotation=step, **EC)
    with pytest.raises(CrdbTlsError, match="rotation 'phase2' is not known"):
        authority.ensure(pki_dir, rotation="phase2", **EC)


def test_split_ca_roles_rotate_separately(pki_dir):
    ca = authority.ensure(pki_dir, **EC)
    client = authority.ensure(pki_dir, role="client_ca", **EC)
    new_client = authority.ensure(pki_dir, role="client_ca", rotation="start", **EC)
    assert authority.rotation_state(pki_dir, "ca") is None
    assert os.path.basename(authority.paths(pki_dir, "client_ca")["rotation"]) == "ca-client.rotation.json"
    assert _fps(new_client["bundle"]) == [new_client["fingerprint_sha256"], client["fingerprint_sha256"]]
    assert authority.ensure(pki_dir, **EC)["fingerprint_sha256"] == ca["fingerprint_sha256"]
    with pytest.raises(CrdbTlsError, match="CA rotation of client_ca .* is in phase 1"):
        authority.ensure(pki_dir, role="client_ca", **EC)


def test_provided_org_ca_rotation(pki_dir, tmp_path, org_root, intermediate, other_ca):
    old_src = _provide(tmp_path, "old", [org_root.certificate], org_root.key)
    authority.ensure(pki_dir, cert_src=old_src[0], key_src=old_src[1])
    with pytest.raises(CrdbTlsError, match="the provided CA CN=Org Root CA,O=Cockroach is already the current CA "
                                           "of role ca: give the new CA to rotate to"):
        authority.ensure(pki_dir, cert_src=old_src[0], key_src=old_src[1], rotation="start")
    # The organisation's new CA: an intermediate under the same root.
    new_src = _provide(tmp_path, "new", [intermediate.certificate, org_root.certificate], intermediate.key)
    started = authority.ensure(pki_dir, cert_src=new_src[0], key_src=new_src[1], rotation="start")
    assert started["rotated"] is True and started["is_intermediate"] is True
    assert started["rotation"]["previous"] == []   # same root: nothing to drop in phase 3
    assert authority.ensure(pki_dir, cert_src=new_src[0], key_src=new_src[1], rotation="start")["changed"] is False
    authority.ensure(pki_dir, rotation="trusted")
    other_src = _provide(tmp_path, "other", [other_ca.certificate], other_ca.key)
    with pytest.raises(CrdbTlsError, match="a CA rotation of ca to [0-9a-f]{16} is in progress in .*: finish it "
                                           r"\(phase 3\) before rotating to the provided CA"):
        authority.ensure(pki_dir, cert_src=other_src[0], key_src=other_src[1], rotation="start")


def test_old_org_ca_left_in_the_inventory_is_refused(pki_dir, tmp_path, org_root, other_ca):
    old_src = _provide(tmp_path, "old", [org_root.certificate], org_root.key)
    new_src = _provide(tmp_path, "new", [other_ca.certificate], other_ca.key)
    authority.ensure(pki_dir, cert_src=old_src[0], key_src=old_src[1])
    started = authority.ensure(pki_dir, cert_src=new_src[0], key_src=new_src[1], rotation="start")
    assert started["rotation"]["previous"] == [pki.fingerprint(org_root.certificate)]
    authority.ensure(pki_dir, rotation="trusted")
    with pytest.raises(CrdbTlsError, match="the provided CA [0-9a-f]{16} is the one the CA rotation in progress "
                                           "replaces; set the provided CA to the new one"):
        authority.ensure(pki_dir, cert_src=old_src[0], key_src=old_src[1])
    assert authority.ensure(pki_dir, cert_src=new_src[0], key_src=new_src[1])["changed"] is False


def test_check_mode_start_writes_nothing(pki_dir):
    authority.ensure(pki_dir, **EC)
    before = _snapshot(pki_dir)
    result = authority.ensure(pki_dir, rotation="start", check_mode=True, **EC)
    assert result["changed"] is True and result["rotated"] is True
    assert _snapshot(pki_dir) == before


def test_unreadable_state_is_named(pki_dir):
    authority.ensure(pki_dir, **EC)
    path = authority.paths(pki_dir, "ca")["rotation"]
    with open(path, "w") as handle:
        json.dump({"state": "halfway"}, handle)
    with pytest.raises(CrdbTlsError, match="CA rotation state .*ca.rotation.json is unreadable"):
        authority.ensure(pki_dir, rotation="start", **EC)


def test_changed_ca_outside_the_rotation_is_refused(pki_dir, tmp_path):
    authority.ensure(pki_dir, **EC)
    authority.ensure(pki_dir, rotation="start", **EC)
    saved = str(tmp_path / "saved")
    shutil.copytree(pki_dir, saved)
    authority.ensure(pki_dir, rotation="trusted", **EC)
    authority.ensure(pki_dir, force=True, **EC)   # someone forces yet another CA by hand
    with pytest.raises(CrdbTlsError, match="names the new CA [0-9a-f]{16}, but the current CA is [0-9a-f]{16}"):
        authority.ensure(pki_dir, rotation="reissued", **EC)
