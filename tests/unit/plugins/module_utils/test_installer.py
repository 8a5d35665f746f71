# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""installer.install: one validated, journaled install of a host's files (real crypto, ECDSA)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import fileio, installer, pki
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

HOSTS = ["node1.example.com", "127.0.0.1"]
IS_ROOT = os.geteuid() == 0


def node_set(ca, mk, users=("root",), client_ca=None, hosts=None):
    """``(certificates, keys)`` of a standard node's certs dir, signed by ``ca``."""
    node, node_key, _spec = mk.leaf(ca, "node", hosts=hosts or HOSTS)
    certificates = {"ca.crt": pki.certificates_pem([ca.certificate]), "node.crt": pki.certificates_pem([node])}
    keys = {"node.key": pki.private_key_pem(node_key)}
    for user in users:
        cert, key, _spec = mk.leaf(client_ca or ca, "client", user=user)
        certificates["client.%s.crt" % user] = pki.certificates_pem([cert])
        keys["client.%s.key" % user] = pki.private_key_pem(key)
    return certificates, keys


def snapshot(directory):
    """Everything observable about a dir: each entry's bytes, mode and owner (hidden files included)."""
    out = {"": fileio.file_state(directory)}
    for base, dirs, names in os.walk(directory):
        for name in dirs + names:
            path = os.path.join(base, name)
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    content = handle.read()
            out[os.path.relpath(path, directory)] = (content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def me():
    return os.geteuid(), os.getegid()


@pytest.fixture
def dest(tmp_path):
    return str(tmp_path / "var" / "lib" / "cockroach" / "certs")


@pytest.fixture
def good(ca, mk):
    return node_set(ca, mk)


# --------------------------------------------------------------------------- a fresh install

def test_creates_dir_and_writes_modes(dest, good):
    certificates, keys = good
    result = installer.install(dest, certificates, keys, layout="standard", expected_hosts=HOSTS)
    assert result["changed"] is True and result["content_changed"] is True
    assert "certs dir %s created" % dest in result["reasons"]
    assert sorted(result["changed_files"]) == sorted(list(certificates) + list(keys))
    assert result["problems"] == []
    assert fileio.file_state(dest) == (0o700,) + me()
    assert sorted(os.listdir(dest)) == sorted(list(certificates) + list(keys))
    for name, data in list(certificates.items()) + list(keys.items()):
        path = os.path.join(dest, name)
        with open(path, "rb") as handle:
            assert handle.read() == data
        assert fileio.file_state(path) == ((0o600 if name in keys else 0o644),) + me()
    assert result["fingerprints"]["node.crt"] == pki.fingerprint(pki.load_certificates(certificates["node.crt"],
                                                                                       "node.crt")[0])


def test_dir_mode_and_owner(dest, good):
    certificates, keys = good
    if IS_ROOT:
        nobody = pwd.getpwnam("nobody")
        owner, group, uid, gid = "nobody", nobody.pw_gid, nobody.pw_uid, nobody.pw_gid
    else:
        owner, group, uid, gid = None, None, os.geteuid(), os.getegid()
    result = installer.install(dest, certificates, keys, owner=owner, group=group, dir_mode=0o750,
                               layout="standard")
    assert result["problems"] == []
    assert fileio.file_state(dest) == (0o750, uid, gid)
    for name in certificates:
        assert fileio.file_state(os.path.join(dest, name)) == (0o644, uid, gid)
    for name in keys:
        assert fileio.file_state(os.path.join(dest, name)) == (0o600, uid, gid)
    again = installer.install(dest, certificates, keys, owner=owner, group=group, dir_mode=0o750,
                              layout="standard")
    assert again["changed"] is False


def test_second_call_changes_nothing(dest, good):
    certificates, keys = good
    installer.install(dest, certificates, keys, layout="standard", expected_hosts=HOSTS)
    before = snapshot(dest)
    again = installer.install(dest, certificates, keys, layout="standard", expected_hosts=HOSTS)
    assert again["changed"] is False
    assert again["content_changed"] is False
    assert again["reasons"] == [] and again["changed_files"] == [] and again["problems"] == []
    assert snapshot(dest) == before


def test_content_changed_only_for_new_content(dest, good, ca, mk):
    certificates, keys = good
    installer.install(dest, certificates, keys)
    node, node_key, _spec = mk.leaf(ca, "node", hosts=HOSTS + ["lb.example.com"])
    certificates = dict(certificates, **{"node.crt": pki.certificates_pem([node])})
    keys = dict(keys, **{"node.key": pki.private_key_pem(node_key)})
    result = installer.install(dest, certificates, keys, layout="standard", expected_hosts=["lb.example.com"])
    assert result["changed"] is True and result["content_changed"] is True
    assert sorted(result["changed_files"]) == ["node.crt", "node.key"]
    assert "node.crt content differs" in result["reasons"] and "node.key content differs" in result["reasons"]
    with open(os.path.join(dest, "node.crt"), "rb") as handle:
        assert handle.read() == certificates["node.crt"]


def test_attribute_drift_is_fixed_with_reasons(dest, good):
    certificates, keys = good
    installer.install(dest, certificates, keys)
    os.chmod(os.path.join(dest, "node.key"), 0o644)
    os.chmod(os.path.join(dest, "ca.crt"), 0o600)
    os.chmod(dest, 0o755)
    if IS_ROOT:
        os.chown(os.path.join(dest, "client.root.crt"), 65534, 65534)
    result = installer.install(dest, certificates, keys)
    assert result["changed"] is True
    assert result["content_changed"] is False
    assert "node.key: mode is 0644, want 0600" in result["reasons"]
    assert "ca.crt: mode is 0600, want 0644" in result["reasons"]
    assert "certs dir %s: mode is 0755, want 0700" % dest in result["reasons"]
    assert fileio.file_state(os.path.join(dest, "node.key"))[0] == 0o600
    assert fileio.file_state(os.path.join(dest, "ca.crt"))[0] == 0o644
    assert fileio.file_state(dest)[0] == 0o700
    if IS_ROOT:
        # Without an owner given, ownership is left alone.
        assert fileio.file_state(os.path.join(dest, "client.root.crt"))[1] == 65534
        result = installer.install(dest, certificates, keys, owner=0, group=0)
        assert any(r.startswith("client.root.crt: owner uid is 65534, want 0") for r in result["reasons"])
        assert fileio.file_state(os.path.join(dest, "client.root.crt")) == (0o644, 0, 0)
    assert set(result["changed_files"]) <= set(certificates) | set(keys)
    assert installer.install(dest, certificates, keys)["changed"] is False


@pytest.fixture
def cockroach_account():
    """A fresh group and a user whose primary group it is (root only); removed afterwards."""
    if not IS_ROOT:
        pytest.skip("creating a group and a user (groupadd/useradd) needs root")
    if not (shutil.which("groupadd") and shutil.which("useradd")):
        pytest.skip("groupadd/useradd not installed")
    name = "crdbt%s" % secrets.token_hex(4)
    subprocess.run(["groupadd", name], check=True, capture_output=True, timeout=30)
    try:
        subprocess.run(["useradd", "-M", "-N", "-g", name, "-s", "/usr/sbin/nologin", "-d", "/nonexistent", name],
                       check=True, capture_output=True, timeout=30)
        try:
            entry = pwd.getpwnam(name)
            yield name, entry.pw_uid, entry.pw_gid
        finally:
            subprocess.run(["userdel", name], capture_output=True, timeout=30, check=False)
    finally:
        subprocess.run(["groupdel", name], capture_output=True, timeout=30, check=False)


def test_root_owned_keys_are_0640_for_the_process_group(dest, good, cockroach_account):
    certificates, keys = good
    user, uid, gid = cockroach_account
    result = installer.install(dest, certificates, keys, owner=user, group=user, key_owner=0, key_group=gid,
                               process_user=user, layout="standard")
    assert result["problems"] == []
    assert fileio.file_state(dest) == (0o700, uid, gid)
    for name in keys:
        assert fileio.file_state(os.path.join(dest, name)) == (0o640, 0, gid), name
    for name in certificates:
        assert fileio.file_state(os.path.join(dest, name)) == (0o644, uid, gid), name
    again = installer.install(dest, certificates, keys, owner=user, group=user, key_owner=0, key_group=gid,
                              process_user=user, layout="standard")
    assert again["changed"] is False
    # For another process user, whose primary group is not the key's, 0640 is refused before any change.
    before = snapshot(dest)
    with pytest.raises(CrdbTlsError) as exc:
        installer.install(dest, certificates, dict(keys, **{"node.key": keys["node.key"] + b"\n"}), owner=user,
                          group=user, key_owner=0, key_group=gid, process_user="nobody", layout="standard")
    assert "node.key" in str(exc.value) and "0740 is allowed only" in str(exc.value)
    assert snapshot(dest) == before


def test_an_owner_or_mode_fix_is_validated_too(dest, good, cockroach_account):
    """Same content, only the key's group changes to one the process cannot read: refused, nothing changes."""
    certificates, keys = good
    user, _uid, gid = cockroach_account
    installer.install(dest, certificates, keys, owner=user, group=user, key_owner=0, key_group=gid,
                      process_user=user, layout="standard")
    before = snapshot(dest)
    nogroup = 65534 if gid != 65534 else 1
    with pytest.raises(CrdbTlsError) as exc:
        installer.install(dest, certificates, keys, owner=user, group=user, key_owner=0, key_group=nogroup,
                          process_user=user, layout="standard")
    assert "node.key" in str(exc.value) and "0740 is allowed only" in str(exc.value)
    assert snapshot(dest) == before


# --------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("name, where", [("ca.old.crt", "certificates"), ("ca.key", "keys"),
                                         ("ca-client.key", "keys"), ("node.pem", "keys")])
def test_refuses_names_cockroachdb_does_not_read(dest, good, name, where):
    certificates, keys = (dict(good[0]), dict(good[1]))
    (certificates if where == "certificates" else keys)[name] = good[0]["ca.crt"]
    with pytest.raises(CrdbTlsError) as exc:
        installer.install(dest, certificates, keys)
    assert repr(name) in str(exc.value)
    assert not os.path.exists(dest)


def _bad_key(ca, mk, certificates, keys):
    return certificates, dict(keys, **{"node.key": pki.private_key_pem(mk.ec())}), {}, "node.key does not match"


def _other_ca(ca, mk, certificates, keys, other_ca=None):
    node, key, _spec = mk.leaf(other_ca, "node", hosts=HOSTS)
    return (dict(certificates, **{"node.crt": pki.certificates_pem([node])}),
            dict(keys, **{"node.key": pki.private_key_pem(key)}), {}, "node.crt: server side: does not verify against ca.crt")


def _missing_host(ca, mk, certificates, keys):
    node, key, _spec = mk.leaf(ca, "node", hosts=HOSTS)
    return (dict(certificates, **{"node.crt": pki.certificates_pem([node])}),
            dict(keys, **{"node.key": pki.private_key_pem(key)}), {"expected_hosts": ["db9.example.com"]},
            "node.crt: server side: does not verify against ca.crt as serverAuth for db9.example.com: certificate is "
            "not valid for db9.example.com")


@pytest.mark.parametrize("breaker", [_bad_key, _other_ca, _missing_host], ids=["key", "ca", "host"])
def test_refuses_a_set_that_would_not_work_and_changes_nothing(dest, good, ca, other_ca, mk, breaker):
    certificates, keys = good
    installer.install(dest, certificates, keys, layout="standard")
    with open(os.path.join(dest, "notes.txt"), "wb") as handle:
        handle.write(b"operator notes\n")
    os.chmod(dest, 0o750)   # drift a valid install would fix; a refused one must not
    before = snapshot(dest)
    kwargs = {"other_ca": other_ca} if breaker is _other_ca else {}
    bad_certs, bad_keys, extra, expect = breaker(ca, mk, certificates, keys, **kwargs)
    with pytest.raises(CrdbTlsError) as exc:
        installer.install(dest, bad_certs, bad_keys, layout="standard", **extra)
    message = str(exc.value)
    assert message.startswith("refusing to install into %s, the new set would not work" % dest)
    assert expect in message
    assert installer.STAGING_PREFIX not in message
    assert snapshot(dest) == before


def test_refuses_a_bad_first_install_and_leaves_no_trace(tmp_path, dest, good, mk):
    certificates, keys = good
    bad_keys = dict(keys, **{"node.key": pki.private_key_pem(mk.ec())})
    empty = str(tmp_path / "certs")
    os.mkdir(empty, 0o700)
    with pytest.raises(CrdbTlsError, match="node.key does not match"):
        installer.install(empty, certificates, bad_keys)
    assert os.listdir(empty) == []
    # A dir (and parents) the refused install created are removed again.
    with pytest.raises(CrdbTlsError, match="node.key does not match"):
        installer.install(dest, certificates, bad_keys)
    assert sorted(os.listdir(str(tmp_path))) == ["certs"]


def test_refuses_a_cert_that_does_not_parse_and_a_relative_dest(dest, good):
    certificates, keys = good
    with pytest.raises(CrdbTlsError, match="certificate node.crt to install is not valid"):
        installer.install(dest, dict(certificates, **{"node.crt": b"garbage"}), keys)
    with pytest.raises(CrdbTlsError, match="must be an absolute path"):
        installer.install("relative/certs", certificates, keys)
    assert not os.path.exists(dest)


def test_missing_layout_file_is_refused(dest, good):
    certificates, keys = good
    with pytest.raises(CrdbTlsError, match="client.node.crt: missing"):
        installer.install(dest, certificates, keys, layout="split_node")


# --------------------------------------------------------------------------- what it does not manage

def test_leaves_unmanaged_files_untouched(dest, good, ca, mk):
    certificates, keys = good
    os.makedirs(dest, 0o700)
    unmanaged = {"ca.old.crt": certificates["ca.crt"], "notes.txt": b"keep me\n",
                 "backup/node.crt": certificates["node.crt"], "client.alice.crt": b"not a cert\n"}
    os.mkdir(os.path.join(dest, "backup"), 0o700)
    for name, data in unmanaged.items():
        mk.write(os.path.join(dest, name), data, 0o640)
    os.utime(os.path.join(dest, "notes.txt"), (1000000000, 1000000000))
    before = dict((k, v) for k, v in snapshot(dest).items() if k)
    result = installer.install(dest, certificates, keys, layout="standard")
    after = snapshot(dest)
    for name, state in before.items():
        assert after[name] == state, name
    assert os.stat(os.path.join(dest, "notes.txt")).st_mtime == 1000000000
    # They are reported (the whole dir is read after the install), never fixed.
    assert not any(p.startswith("ca.old.crt:") for p in result["problems"])   # CockroachDB skips it: a warning
    assert any(p.startswith("client.alice.crt:") for p in result["problems"])
    assert installer.install(dest, certificates, keys, layout="standard")["changed"] is False


# --------------------------------------------------------------------------- interrupted runs, check mode

def test_recovers_an_interrupted_journal(dest, good, ca, mk):
    certificates, keys = good
    installer.install(dest, certificates, keys)
    node, node_key, _spec = mk.leaf(ca, "node", hosts=HOSTS)
    new_cert, new_key = pki.certificates_pem([node]), pki.private_key_pem(node_key)
    # A run cut short after staging both files and writing its journal, before any rename.
    staged = [(".crdb-tls.node.crt.0a0a0a.tmp", "node.crt", new_cert, 0o644),
              (".crdb-tls.node.key.0b0b0b.tmp", "node.key", new_key, 0o600)]
    for tmp, _final, data, mode in staged:
        mk.write(os.path.join(dest, tmp), data, mode)
    mk.write(os.path.join(dest, fileio.JOURNAL_NAME), json.dumps([[t, f] for t, f, _d, _m in staged]).encode(),
             0o600)
    result = installer.install(dest, dict(certificates, **{"node.crt": new_cert}),
                               dict(keys, **{"node.key": new_key}), layout="standard")
    assert "completed an interrupted update of node.crt, node.key" in result["reasons"]
    assert result["changed"] is True and result["content_changed"] is False
    assert result["problems"] == []
    assert sorted(os.listdir(dest)) == sorted(list(certificates) + list(keys))
    with open(os.path.join(dest, "node.crt"), "rb") as c, open(os.path.join(dest, "node.key"), "rb") as k:
        assert (c.read(), k.read()) == (new_cert, new_key)


def test_recovery_then_install_of_another_set(dest, good, ca, mk):
    """The journal is completed first, then the wanted set is written over it."""
    certificates, keys = good
    installer.install(dest, certificates, keys)
    node, node_key, _spec = mk.leaf(ca, "node", hosts=HOSTS)
    staged = [(".crdb-tls.node.crt.1a.tmp", "node.crt", pki.certificates_pem([node])),
              (".crdb-tls.node.key.1b.tmp", "node.key", pki.private_key_pem(node_key))]
    for tmp, _final, data in staged:
        mk.write(os.path.join(dest, tmp), data, 0o600)
    mk.write(os.path.join(dest, fileio.JOURNAL_NAME), json.dumps([[t, f] for t, f, _d in staged]).encode(), 0o600)
    result = installer.install(dest, certificates, keys, layout="standard")
    assert result["reasons"][0] == "completed an interrupted update of node.crt, node.key"
    assert result["content_changed"] is True
    with open(os.path.join(dest, "node.crt"), "rb") as handle:
        assert handle.read() == certificates["node.crt"]
    assert not os.path.exists(os.path.join(dest, fileio.JOURNAL_NAME))


def test_check_mode_writes_nothing(dest, good, ca, mk):
    certificates, keys = good
    result = installer.install(dest, certificates, keys, check_mode=True)
    assert result["changed"] is True
    assert sorted(result["changed_files"]) == sorted(list(certificates) + list(keys))
    assert not os.path.exists(dest) and not os.path.exists(os.path.dirname(dest))

    installer.install(dest, certificates, keys)
    os.chmod(os.path.join(dest, "node.key"), 0o640)
    before = snapshot(dest)
    node, node_key, _spec = mk.leaf(ca, "node", hosts=HOSTS)
    result = installer.install(dest, dict(certificates, **{"node.crt": pki.certificates_pem([node])}),
                               dict(keys, **{"node.key": pki.private_key_pem(node_key)}), check_mode=True)
    assert result["changed"] is True
    assert "node.crt content differs" in result["reasons"]
    assert snapshot(dest) == before
    result = installer.install(dest, certificates, keys, check_mode=True)
    assert result["reasons"] == ["node.key: mode is 0640, want 0600"]
    assert snapshot(dest) == before


# --------------------------------------------------------------------------- client dirs

def test_client_dir_in_split_ca_does_not_verify_clients_against_ca_crt(tmp_path, ca, client_ca, mk):
    cert, key, _spec = mk.leaf(client_ca, "client", user="app")
    certificates = {"ca.crt": pki.certificates_pem([ca.certificate]), "client.app.crt": pki.certificates_pem([cert])}
    keys = {"client.app.key": pki.private_key_pem(key)}
    dest = str(tmp_path / "home" / "app" / ".cockroach-certs")
    result = installer.install(dest, certificates, keys, purpose="client", layout="split_ca")
    assert result["problems"] == []
    assert sorted(os.listdir(dest)) == ["ca.crt", "client.app.crt", "client.app.key"]
    assert installer.install(dest, certificates, keys, purpose="client", layout="split_ca")["changed"] is False
    # Without the split_ca layout the same client cert must verify against ca.crt, and does not.
    other = str(tmp_path / "other")
    with pytest.raises(CrdbTlsError, match="client.app.crt: does not verify against ca.crt"):
        installer.install(other, certificates, keys, purpose="client")
    assert not os.path.exists(other)


def test_client_dir_needs_no_node_files(tmp_path, ca, mk):
    cert, key, _spec = mk.leaf(ca, "client", user="app")
    dest = str(tmp_path / "client")
    result = installer.install(dest, {"ca.crt": pki.certificates_pem([ca.certificate]),
                                      "client.app.crt": pki.certificates_pem([cert])},
                               {"client.app.key": pki.private_key_pem(key)}, purpose="client", layout="standard")
    assert result["problems"] == []


# --------------------------------------------------------------------------- hostile certs dirs

def _root_only_target(tmp_path):
    """A root-only dir with one root-owned file: what an owner must never reach through the install."""
    target = tmp_path / "root-only"
    target.mkdir()
    os.chmod(str(target), 0o755)
    (target / "secret").write_bytes(b"root's\n")
    os.chmod(str(target / "secret"), 0o600)
    return str(target)


def test_a_linked_certs_dir_is_refused_and_its_target_untouched(tmp_path, good, cockroach_account):
    certificates, keys = good
    user, _uid, _gid = cockroach_account
    target = _root_only_target(tmp_path)
    parent = tmp_path / "var-lib-cockroach"
    parent.mkdir()
    dest = str(parent / "certs")
    os.symlink(target, dest)
    before = snapshot(target)
    with pytest.raises(CrdbTlsError, match=r"^certs dir %s is a symbolic link: refusing to follow it"
                       % re.escape(dest)):
        installer.install(dest, certificates, keys, owner=user, layout="standard")
    with pytest.raises(CrdbTlsError, match=r"^certs dir %s is a symbolic link" % re.escape(dest)):
        installer.make_certs_dir(dest, owner=user)
    assert snapshot(target) == before


@pytest.mark.parametrize("name", ["ca.crt", "node.key"])
def test_a_link_in_the_certs_dir_is_refused_naming_it(tmp_path, dest, good, cockroach_account, name):
    certificates, keys = good
    user, _uid, _gid = cockroach_account
    installer.install(dest, certificates, keys, owner=user, layout="standard")
    target = _root_only_target(tmp_path)
    # The same content behind the link: only the owner and mode fixes would go through it.
    outside = os.path.join(target, name)
    with open(outside, "wb") as handle:
        handle.write(dict(certificates, **keys)[name])
    os.chmod(outside, 0o600)
    os.unlink(os.path.join(dest, name))
    os.symlink(outside, os.path.join(dest, name))
    before = snapshot(target)
    with pytest.raises(CrdbTlsError, match=r"^file %s is a symbolic link: refusing to use it"
                       % re.escape(os.path.join(dest, name))):
        installer.install(dest, certificates, keys, owner=user, layout="standard")
    assert snapshot(target) == before
    assert os.path.islink(os.path.join(dest, name))


def test_a_linked_key_is_never_adopted_for_a_certificate_without_its_key(tmp_path, dest, good, ca, mk):
    certificates, keys = good
    installer.install(dest, certificates, keys, layout="standard")
    target = _root_only_target(tmp_path)
    node, node_key, _spec = mk.leaf(ca, "node", hosts=HOSTS)
    mk.write(os.path.join(target, "root.pem"), pki.private_key_pem(node_key), 0o600)
    os.unlink(os.path.join(dest, "node.key"))
    os.symlink(os.path.join(target, "root.pem"), os.path.join(dest, "node.key"))
    before = snapshot(target)
    with pytest.raises(CrdbTlsError, match=r"^file %s is a symbolic link: refusing to use it"
                       % re.escape(os.path.join(dest, "node.key"))):
        installer.install(dest, dict(certificates, **{"node.crt": pki.certificates_pem([node])}), {},
                          layout="standard")
    assert snapshot(target) == before


def test_staging_is_root_only_outside_the_certs_dir_and_copies_only_what_cockroachdb_reads(
        dest, good, ca, mk, monkeypatch):
    certificates, keys = good
    installer.install(dest, certificates, keys, layout="standard")
    mk.write(os.path.join(dest, "junk.bin"), b"\0" * (8 * 1024 * 1024), 0o644)
    os.mkdir(os.path.join(dest, "junkdir"))
    seen = []
    real_inspect = installer._inspect

    def recording(directory, checked, **kwargs):
        outer = os.path.dirname(directory)
        st = os.lstat(outer)
        seen.append((outer, stat.S_IMODE(st.st_mode), st.st_uid, sorted(os.listdir(directory))))
        return real_inspect(directory, checked, **kwargs)

    monkeypatch.setattr(installer, "_inspect", recording)
    node, node_key, _spec = mk.leaf(ca, "node", hosts=HOSTS)
    installer.install(dest, dict(certificates, **{"node.crt": pki.certificates_pem([node])}),
                      dict(keys, **{"node.key": pki.private_key_pem(node_key)}), layout="standard")
    (outer, mode, uid, staged), = seen
    assert not outer.startswith(dest) and os.path.basename(outer).startswith(installer.STAGING_PREFIX)
    assert (mode, uid) == (0o700, os.geteuid())
    assert staged == sorted(list(certificates) + list(keys))   # no junk.bin, no junkdir
    assert not os.path.exists(outer)


def test_an_oversized_certificate_file_is_refused_naming_it(dest, good, mk):
    certificates, keys = good
    installer.install(dest, certificates, keys, layout="standard")
    mk.write(os.path.join(dest, "client.big.crt"), b"x" * (fileio.MAX_FILE_SIZE + 1), 0o644)
    os.chmod(os.path.join(dest, "node.key"), 0o640)
    with pytest.raises(CrdbTlsError, match=r"^file %s holds %d bytes, more than the" % (
            re.escape(os.path.join(dest, "client.big.crt")), fileio.MAX_FILE_SIZE + 1)):
        installer.install(dest, certificates, keys, layout="standard")
    assert stat.S_IMODE(os.stat(os.path.join(dest, "node.key")).st_mode) == 0o640


def test_litter_of_a_crashed_run_is_removed_and_reported(dest, good, mk):
    certificates, keys = good
    installer.install(dest, certificates, keys, layout="standard")
    old_staging = os.path.join(dest, ".crdb-tls-staging-k2x9")
    os.mkdir(old_staging, 0o700)
    mk.write(os.path.join(old_staging, "node.key"), keys["node.key"], 0o600)
    stale = tempfile.mkdtemp(prefix=installer.STAGING_PREFIX)
    mk.write(os.path.join(stale, "node.key"), keys["node.key"], 0o600)
    hours_ago = time.time() - 2 * fileio.LITTER_AGE
    os.utime(stale, (hours_ago, hours_ago))
    os.chmod(os.path.join(dest, "node.key"), 0o640)
    result = installer.install(dest, certificates, keys, layout="standard")
    assert "removed litter of an interrupted run: .crdb-tls-staging-k2x9" in result["reasons"]
    assert "removed %s, left by an interrupted install" % stale in result["reasons"]
    assert not os.path.exists(old_staging) and not os.path.exists(stale)
    assert sorted(os.listdir(dest)) == sorted(list(certificates) + list(keys))
