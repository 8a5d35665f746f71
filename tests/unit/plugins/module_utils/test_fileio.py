# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic writes, journaled file sets and the directory lock (fileio.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import multiprocessing
import os
import re
import shutil
import stat
import subprocess
import time

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import fileio
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _temp(directory, name, data, mode):
    with fileio.open_dir(directory) as handle:
        return handle.write_temp(name, data, mode, -1, -1)


def _litter(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith(fileio.TMP_PREFIX))


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_atomic_write_mode(tmp_path, mode):
    path = str(tmp_path / "file")
    fileio.atomic_write(path, b"data", mode)
    assert _read(path) == b"data" and _mode(path) == mode
    # replacing keeps nothing of the old file
    os.chmod(path, 0o666)
    fileio.atomic_write(path, b"new", mode)
    assert _read(path) == b"new" and _mode(path) == mode
    assert _litter(str(tmp_path)) == []


def test_atomic_write_is_a_rename(tmp_path):
    """A reader holding the old file keeps the old content: the file is replaced, not rewritten."""
    path = str(tmp_path / "node.crt")
    fileio.atomic_write(path, b"old", 0o644)
    with open(path, "rb") as old:
        fileio.atomic_write(path, b"new", 0o644)
        assert old.read() == b"old"
    assert _read(path) == b"new"


def test_temp_file_is_owner_only_before_final_mode(tmp_path, monkeypatch):
    seen = []
    real_fchmod = os.fchmod

    def recording_fchmod(fd, mode):
        st = os.fstat(fd)
        seen.append((stat.S_IMODE(st.st_mode), mode))
        return real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", recording_fchmod)
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        fileio.atomic_write(str(tmp_path / "node.crt"), b"x" * 100000, 0o644)
    finally:
        os.umask(old_umask)
    # created 0600: never more open than the final mode, whatever the umask
    assert seen == [(0o600, 0o644)]
    assert _mode(str(tmp_path / "node.crt")) == 0o644


def test_atomic_write_errors(tmp_path):
    with pytest.raises(CrdbTlsError, match=r"^directory %s does not exist" % re.escape(str(tmp_path / "nope"))):
        fileio.atomic_write(str(tmp_path / "nope" / "f"), b"", 0o600)


def test_read_file_errors(tmp_path):
    with pytest.raises(CrdbTlsError, match=r"^CA key %s does not exist$" % re.escape(str(tmp_path / "ca.key"))):
        fileio.read_file(str(tmp_path / "ca.key"), "CA key")
    with pytest.raises(CrdbTlsError, match=r"^certificate %s is a directory, expected a file$" % re.escape(str(tmp_path))):
        fileio.read_file(str(tmp_path), "certificate")
    assert fileio.read_optional(str(tmp_path / "none")) is None


def test_require_dir(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(CrdbTlsError, match=r"^certs_dir %s exists but is not a directory$" % re.escape(str(tmp_path / "f"))):
        fileio.require_dir(str(tmp_path / "f"), "certs_dir")
    assert fileio.require_dir(str(tmp_path)) == str(tmp_path)


def test_resolve_ids():
    assert fileio.resolve_uid(None) == -1 and fileio.resolve_gid("") == -1
    assert fileio.resolve_uid("root") == 0 and fileio.resolve_uid("1234") == 1234 and fileio.resolve_uid(7) == 7
    assert fileio.resolve_gid("root") == 0
    with pytest.raises(CrdbTlsError, match=r"owner 'no-such-user-x': no such user on this host"):
        fileio.resolve_uid("no-such-user-x")
    with pytest.raises(CrdbTlsError, match=r"group 'no-such-group-x': no such group on this host"):
        fileio.resolve_gid("no-such-group-x")


def test_set_attributes(tmp_path):
    path = str(tmp_path / "k")
    fileio.atomic_write(path, b"k", 0o644)
    assert fileio.set_attributes(path, 0o600) is True
    assert _mode(path) == 0o600
    assert fileio.set_attributes(path, 0o600) is False


def test_fileset_commit(tmp_path):
    d = str(tmp_path)
    files = fileio.FileSet(d).add("node.key", b"key", 0o600).add("node.crt", b"crt", 0o644)
    assert len(files) == 2
    assert files.commit() == ["node.key", "node.crt"]
    assert _read(os.path.join(d, "node.key")) == b"key" and _mode(os.path.join(d, "node.key")) == 0o600
    assert _read(os.path.join(d, "node.crt")) == b"crt" and _mode(os.path.join(d, "node.crt")) == 0o644
    assert sorted(os.listdir(d)) == ["node.crt", "node.key"]  # no journal, no temp files left
    assert fileio.pending_journal(d) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", ".."])
def test_fileset_refuses_paths(tmp_path, name):
    with pytest.raises(CrdbTlsError, match=r"refusing to write file name %s" % re.escape(repr(name))):
        fileio.FileSet(str(tmp_path)).add(name, b"", 0o600)


class _Crash(Exception):
    pass


def test_interrupted_commit_is_reported_then_rolled_forward(tmp_path, monkeypatch):
    d = str(tmp_path)
    fileio.FileSet(d).add("node.key", b"old key", 0o600).add("node.crt", b"old crt", 0o644).commit()

    # Crash after the journal and the first file are renamed into place.
    real_rename = os.rename
    calls = []

    def crashing_rename(src, dst, **kwargs):
        calls.append(os.path.basename(dst))
        if len(calls) == 3:
            raise _Crash("power cut")
        return real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", crashing_rename)
    with pytest.raises(_Crash):
        fileio.FileSet(d).add("node.key", b"new key", 0o600).add("node.crt", b"new crt", 0o644).commit()
    monkeypatch.setattr(os, "rename", real_rename)
    assert calls == [fileio.JOURNAL_NAME, "node.key", "node.crt"]

    # The dir now holds a new key beside the old certificate ...
    assert _read(os.path.join(d, "node.key")) == b"new key"
    assert _read(os.path.join(d, "node.crt")) == b"old crt"
    # ... and the journal says what is left to do.
    pending = fileio.pending_journal(d)
    assert [final for _tmp, final in pending] == ["node.key", "node.crt"]
    assert all(tmp.startswith(fileio.TMP_PREFIX) for tmp, _final in pending)
    assert os.path.exists(os.path.join(d, pending[1][0]))
    assert not os.path.exists(os.path.join(d, pending[0][0]))

    assert fileio.recover(d) == ["node.crt"]
    assert _read(os.path.join(d, "node.crt")) == b"new crt" and _mode(os.path.join(d, "node.crt")) == 0o644
    assert _read(os.path.join(d, "node.key")) == b"new key"
    assert fileio.pending_journal(d) == []
    assert sorted(os.listdir(d)) == ["node.crt", "node.key"]


def test_next_commit_completes_an_interrupted_one(tmp_path):
    d = str(tmp_path)
    tmp = _temp(d, "node.crt", b"new crt", 0o644)
    with open(os.path.join(d, fileio.JOURNAL_NAME), "wb") as handle:
        handle.write(json.dumps([[os.path.basename(tmp), "node.crt"]]).encode())
    fileio.FileSet(d).add("other.txt", b"x", 0o644).commit()
    assert _read(os.path.join(d, "node.crt")) == b"new crt"
    assert sorted(os.listdir(d)) == ["node.crt", "other.txt"]


def test_unreadable_journal_reported(tmp_path):
    d = str(tmp_path)
    with open(os.path.join(d, fileio.JOURNAL_NAME), "wb") as handle:
        handle.write(b"{not json")
    assert fileio.pending_journal(d) == [("?", "(unreadable journal %s)" % os.path.join(d, fileio.JOURNAL_NAME))]


def test_recover_removes_old_litter_only(tmp_path):
    d = str(tmp_path)
    old = os.path.join(d, _temp(d, "a.crt", b"a", 0o644))
    new = _temp(d, "b.crt", b"b", 0o644)
    hours_ago = time.time() - 2 * fileio.LITTER_AGE
    os.utime(old, (hours_ago, hours_ago))
    assert fileio.recover(d) == []
    assert _litter(d) == [new]


# --------------------------------------------------------------------------
# The directory lock
# --------------------------------------------------------------------------

def _lock_worker(directory, trying, acquired):
    with open(trying, "w"):
        pass
    with fileio.dir_lock(directory):
        with open(acquired, "w") as handle:
            handle.write(repr(time.time()))


def test_dir_lock_excludes_another_process(tmp_path):
    locked = tmp_path / "pki"
    locked.mkdir()
    trying, acquired = str(tmp_path / "trying"), str(tmp_path / "acquired")
    ctx = multiprocessing.get_context("fork")  # own fds and locks; no re-import
    proc = ctx.Process(target=_lock_worker, args=(str(locked), trying, acquired))
    with fileio.dir_lock(str(locked)):
        proc.start()
        deadline = time.time() + 60
        while not os.path.exists(trying) and time.time() < deadline:
            time.sleep(0.02)
        assert os.path.exists(trying), "the child never started"
        time.sleep(0.5)
        assert not os.path.exists(acquired), "the child got the lock while we held it"
        released = time.time()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert float(_read(acquired)) >= released


# --------------------------------------------------------------------------
# Directories and files never reached through a link
# --------------------------------------------------------------------------

IS_ROOT = os.geteuid() == 0


def _state(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_open_dir_refuses_a_linked_certs_dir_naming_it(tmp_path):
    target = tmp_path / "target"
    target.mkdir(mode=0o755)
    link = tmp_path / "certs"
    link.symlink_to(target)
    with pytest.raises(CrdbTlsError, match=r"^certs dir %s is a symbolic link: refusing to follow it"
                       % re.escape(str(link))):
        fileio.open_dir(str(link), "certs dir", strict=True)
    with pytest.raises(CrdbTlsError, match=r"is a symbolic link: refusing to follow it"):
        fileio.open_dir(str(link), "certs dir", make=(0o755, 0o700), strict=True)
    assert fileio.probe_dir(str(tmp_path / "nope" / "certs"), strict=True) is None
    # Not strict: a link in a directory only this user can write to is this user's own.
    os.chmod(str(tmp_path), 0o755)
    with fileio.open_dir(str(link)) as handle:
        assert os.path.samestat(handle.stat(), os.stat(str(target)))


def test_open_dir_refuses_a_link_others_could_plant_on_the_way(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o777)   # anyone may swap entries here
    real = tmp_path / "real"
    (real / "certs").mkdir(parents=True)
    (shared / "lib").symlink_to(real)
    path = str(shared / "lib" / "certs")
    with pytest.raises(CrdbTlsError, match=r"^directory %s: %s is a symbolic link in a directory others can write "
                       r"to: refusing to follow it$" % (re.escape(path), re.escape(str(shared / "lib")))):
        fileio.open_dir(path)
    # The same link where only root (or this user) can write is followed.
    os.chmod(str(shared), 0o755)
    with fileio.open_dir(path) as handle:
        assert os.path.samestat(handle.stat(), os.stat(str(real / "certs")))


def test_open_dir_names_a_file_in_the_way(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(CrdbTlsError, match=r"^d %s cannot be made: %s is not a directory$"
                       % (re.escape(str(tmp_path / "f" / "x")), re.escape(str(tmp_path / "f")))):
        fileio.open_dir(str(tmp_path / "f" / "x"), "d", make=(0o755, 0o700))
    with pytest.raises(CrdbTlsError, match=r"^d %s exists but is not a directory$" % re.escape(str(tmp_path / "f"))):
        fileio.open_dir(str(tmp_path / "f"), "d")


def test_open_dir_names_a_dir_swapped_and_back_while_opening(tmp_path, monkeypatch):
    # The owner swaps the certs dir for a link and back between the O_NOFOLLOW
    # open (which fails on the link) and the lstat (which sees the dir again).
    certs = tmp_path / "certs"
    certs.mkdir()
    real_open = os.open

    def swapped_open(name, flags, *args, **kwargs):
        if name == "certs" and kwargs.get("dir_fd") is not None:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "open", swapped_open)
    with pytest.raises(CrdbTlsError, match=r"^certs dir %s: %s changed while it was being opened \(a symbolic link "
                       r"or another file was put in its place\): refusing it$" % (re.escape(str(certs)), re.escape(str(certs)))):
        fileio.open_dir(str(certs), "certs dir", strict=True)


def test_open_dir_makes_missing_dirs_with_their_modes(tmp_path):
    path = str(tmp_path / "a" / "b" / "certs")
    old = os.umask(0)
    try:
        with fileio.open_dir(path, make=(0o755, 0o700)) as handle:
            assert handle.made == [str(tmp_path / "a"), str(tmp_path / "a" / "b"), path]
    finally:
        os.umask(old)
    assert _mode(str(tmp_path / "a")) == 0o755 and _mode(path) == 0o700
    with fileio.open_dir(path, make=(0o755, 0o700)) as handle:
        assert handle.made == []


@pytest.mark.parametrize("kind", ["symlink", "fifo", "dir"])
def test_reads_and_writes_refuse_what_is_not_a_regular_file(tmp_path, kind):
    d = tmp_path / "certs"
    d.mkdir()
    outside = tmp_path / "outside.crt"
    outside.write_bytes(b"root's file")
    os.chmod(str(outside), 0o600)
    name = d / "ca.crt"
    if kind == "symlink":
        name.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(str(name))
    else:
        name.mkdir()
    what = {"symlink": "a symbolic link", "fifo": "a FIFO", "dir": "a directory"}[kind]
    message = r"^file %s is %s: refusing to use it" % (re.escape(str(name)), what)
    before = (_read(str(outside)), _state(str(outside)))
    with fileio.open_dir(str(d)) as handle:
        with pytest.raises(CrdbTlsError, match=message):
            handle.read("ca.crt")   # a FIFO would block an open without O_NONBLOCK: it does not
        with pytest.raises(CrdbTlsError, match=message):
            handle.set_attributes("ca.crt", 0o644, owner=65534)
        with pytest.raises(CrdbTlsError, match=message):
            handle.write("ca.crt", b"new", 0o644)
    with pytest.raises(CrdbTlsError, match=message):
        fileio.FileSet(str(d)).add("ca.crt", b"x", 0o644).add("node.crt", b"y", 0o644).commit()
    with pytest.raises(CrdbTlsError, match=message):
        fileio.set_attributes(str(name), 0o644)
    assert (_read(str(outside)), _state(str(outside))) == before
    assert sorted(os.listdir(str(d))) == ["ca.crt"]   # no temp file left


def test_attributes_never_change_a_file_with_other_links(tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    outside = tmp_path / "secret"
    outside.write_bytes(b"s")
    os.chmod(str(outside), 0o600)
    os.link(str(outside), str(d / "node.key"))
    with pytest.raises(CrdbTlsError, match=r"^file %s has 2 hard links: refusing to change its owner or mode$"
                       % re.escape(str(d / "node.key"))):
        fileio.set_attributes(str(d / "node.key"), 0o644)
    assert _mode(str(outside)) == 0o600


def test_read_is_bounded(tmp_path):
    (tmp_path / "ca.crt").write_bytes(b"x" * (fileio.MAX_FILE_SIZE + 1))
    with fileio.open_dir(str(tmp_path)) as handle:
        with pytest.raises(CrdbTlsError, match=r"^certificate %s holds %d bytes, more than the %d"
                           % (re.escape(str(tmp_path / "ca.crt")), fileio.MAX_FILE_SIZE + 1, fileio.MAX_FILE_SIZE)):
            handle.read("ca.crt", "certificate")
        assert handle.read("missing.crt") is None
        assert handle.read("ca.crt", limit=None) == b"x" * (fileio.MAX_FILE_SIZE + 1)


# --------------------------------------------------------------------------
# A commit that fails half-way: the old set or the new set, never a mix
# --------------------------------------------------------------------------

def _old_pair(d):
    fileio.FileSet(d).add("node.key", b"old key", 0o600).add("node.crt", b"old crt", 0o644).commit()


def _new_pair(d):
    return fileio.FileSet(d).add("node.key", b"new key", 0o600).add("node.crt", b"new crt", 0o644)


def _pair(d):
    return _read(os.path.join(d, "node.key")), _read(os.path.join(d, "node.crt"))


def _chattr(flag, path):
    if not IS_ROOT or shutil.which("chattr") is None:
        pytest.skip("chattr as root is needed to make a file immutable")
    proc = subprocess.run(["chattr", flag, path], capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        pytest.skip("chattr %s is not supported here: %s" % (flag, proc.stderr.decode(errors="replace")))


def test_an_immutable_key_leaves_the_old_pair(tmp_path):
    d = str(tmp_path)
    _old_pair(d)
    _chattr("+i", os.path.join(d, "node.key"))
    try:
        with pytest.raises(CrdbTlsError, match=r"^cannot replace %s: Operation not permitted \(nothing was changed\)$"
                           % re.escape(os.path.join(d, "node.key"))):
            _new_pair(d).commit()
    finally:
        _chattr("-i", os.path.join(d, "node.key"))
    assert _pair(d) == (b"old key", b"old crt")
    assert sorted(os.listdir(d)) == ["node.crt", "node.key"]


def test_a_rename_refused_half_way_rolls_the_set_back(tmp_path, monkeypatch):
    d = str(tmp_path)
    _old_pair(d)
    real_rename = os.rename

    def refuse_second_file(src, dst, **kwargs):
        if dst == "node.crt":
            raise OSError(errno.EPERM, "Operation not permitted")
        return real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", refuse_second_file)
    with pytest.raises(CrdbTlsError, match=r"^cannot replace %s: Operation not permitted; the set was rolled back "
                       r"\(node.key, node.crt kept as it was\)$" % re.escape(os.path.join(d, "node.crt"))):
        _new_pair(d).commit()
    monkeypatch.setattr(os, "rename", real_rename)
    assert _pair(d) == (b"old key", b"old crt")
    assert sorted(os.listdir(d)) == ["node.crt", "node.key"]
    with fileio.open_dir(d) as handle:
        assert handle.lstat("node.key").st_nlink == 1


def test_a_crash_then_an_immutable_file_rolls_back_on_recovery(tmp_path, monkeypatch):
    d = str(tmp_path)
    _old_pair(d)
    real_rename = os.rename

    def crash_before_second_file(src, dst, **kwargs):
        if dst == "node.crt":
            raise _Crash("power cut")
        return real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", crash_before_second_file)
    with pytest.raises(_Crash):
        _new_pair(d).commit()
    monkeypatch.setattr(os, "rename", real_rename)
    assert _pair(d) == (b"new key", b"old crt")   # what the crash left
    _chattr("+i", os.path.join(d, "node.crt"))
    try:
        report = fileio.recover_report(d)
    finally:
        _chattr("-i", os.path.join(d, "node.crt"))
    assert report["completed"] == [] and report["rolled_back"] == ["node.key", "node.crt"]
    assert _pair(d) == (b"old key", b"old crt")
    # The link of the immutable file could not go then; the next recovery removes it.
    spare = [n for n in os.listdir(d) if n.startswith(fileio.TMP_PREFIX)]
    assert len(spare) == 1 and fileio.recover_report(d)["removed"] == spare
    assert sorted(os.listdir(d)) == ["node.crt", "node.key"]


def test_recovery_removes_stale_staging_and_temp_litter(tmp_path):
    d = str(tmp_path)
    staging = tmp_path / (fileio.OLD_STAGING_PREFIX + "abc123")
    staging.mkdir()
    (staging / "node.key").write_bytes(b"a copy of a key")
    outside = tmp_path.parent / ("outside-%s" % os.getpid())
    outside.mkdir(exist_ok=True)
    (outside / "keep").write_bytes(b"keep")
    (staging / "link").symlink_to(outside)   # removed as a link, never followed
    old = _temp(d, "node.key", b"k", 0o600)
    hours_ago = time.time() - 2 * fileio.LITTER_AGE
    os.utime(os.path.join(d, old), (hours_ago, hours_ago))
    report = fileio.recover_report(d)
    assert sorted(report["removed"]) == sorted([old, staging.name])
    assert os.listdir(d) == [] and _read(str(outside / "keep")) == b"keep"
    shutil.rmtree(str(outside))


# ------------------------------------------------------- reads that follow links as CockroachDB does


def _linked_dir(tmp_path, mode):
    d = tmp_path / "certs"
    d.mkdir()
    os.chmod(str(d), mode)
    outside = tmp_path / "outside.crt"
    outside.write_bytes(b"root's file")
    os.chmod(str(outside), 0o600)
    (d / "ca.crt").symlink_to(outside)
    return d


def test_a_link_is_followed_only_in_a_dir_nobody_else_can_change(tmp_path):
    d = _linked_dir(tmp_path, 0o700)
    with fileio.open_dir(str(d)) as handle:   # ours, nobody else may write: as CockroachDB reads it
        assert handle.read_followed("ca.crt", "certificate") == b"root's file"
        assert handle.stat_followed("ca.crt").st_size == len(b"root's file")
        assert handle.read_followed("missing.crt") is None
    os.chmod(str(d), 0o777)                   # others may plant or swap links here: never followed
    message = r"^certificate %s is a symbolic link in a directory others can write to: refusing to follow it" % (
        re.escape(str(d / "ca.crt")))
    with fileio.open_dir(str(d)) as handle:
        with pytest.raises(CrdbTlsError, match=message):
            handle.read_followed("ca.crt", "certificate")
        with pytest.raises(CrdbTlsError, match=message):
            handle.stat_followed("ca.crt", "certificate")
    with pytest.raises(CrdbTlsError, match=message.replace("^certificate", "^cert_file")):
        fileio.read_host_file(str(d / "ca.crt"), "cert_file")


def test_a_followed_link_to_a_fifo_or_a_dangling_link_is_refused(tmp_path):
    d = tmp_path / "certs"
    d.mkdir(mode=0o700)
    os.mkfifo(str(tmp_path / "fifo"))
    (d / "ca.crt").symlink_to(tmp_path / "fifo")
    (d / "node.crt").symlink_to(tmp_path / "nowhere")
    with fileio.open_dir(str(d)) as handle:
        with pytest.raises(CrdbTlsError, match=r"ca.crt is a link to a FIFO: refusing to use it"):
            handle.read_followed("ca.crt", "file")   # opened O_NONBLOCK: it does not block
        with pytest.raises(CrdbTlsError, match=r"node.crt is a symbolic link that cannot be followed"):
            handle.read_followed("node.crt", "file")
    with pytest.raises(CrdbTlsError, match=r"^cert_file %s does not exist$" % re.escape(str(d / "gone.crt"))):
        fileio.read_host_file(str(d / "gone.crt"), "cert_file")
