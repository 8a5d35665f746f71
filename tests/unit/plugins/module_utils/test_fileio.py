# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic writes, journaled file sets and the directory lock (fileio.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import multiprocessing
import os
import re
import stat
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
