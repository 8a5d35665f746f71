# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic, owner-aware file writes, and sets of files that change together.

Every file is written to a temporary file in its final directory, created
readable by its owner only, given its final owner and mode, fsynced and then
renamed over the target. A set of files that must change together (a key and
its certificate) is staged first; a journal lists the renames, so a run cut
short between two renames is rolled forward by the next writer or reported by
the validator: a certs dir never keeps a key beside a certificate it does not
match once any of the collection's modules has touched it again.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import grp
import json
import os
import pwd
import stat
import time

from ansible_collections.crdb.tls.plugins.module_utils import rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

TMP_PREFIX = ".crdb-tls."
TMP_SUFFIX = ".tmp"
JOURNAL_NAME = ".crdb-tls-journal"
LITTER_AGE = 3600


def resolve_uid(owner):
    if owner is None or owner == "":
        return -1
    if isinstance(owner, int) or str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise CrdbTlsError("owner %r: no such user on this host" % owner)


def resolve_gid(group):
    if group is None or group == "":
        return -1
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise CrdbTlsError("group %r: no such group on this host" % group)


def key_mode_for(key_owner, key_group):
    """The mode a key gets: 0640 when root-owned with a non-root group (CockroachDB's exception), else 0600."""
    return rules.key_install_mode(resolve_uid(key_owner) == 0 and resolve_gid(key_group) not in (-1, 0))


def read_file(path, what="file"):
    """Bytes of ``path``; a clear error naming it when it is missing or unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            raise CrdbTlsError("%s %s does not exist" % (what, path))
        if exc.errno == errno.EISDIR:
            raise CrdbTlsError("%s %s is a directory, expected a file" % (what, path))
        raise CrdbTlsError("%s %s is unreadable: %s" % (what, path, exc.strerror))


def read_optional(path):
    """Bytes of ``path``, or None when it does not exist. Other errors propagate."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def require_dir(path, what="directory"):
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise CrdbTlsError("%s %s exists but is not a directory" % (what, path))
        raise CrdbTlsError("%s %s does not exist (create it first, e.g. with ansible.builtin.file)"
                           % (what, path))
    return path


def check_makeable_dir(path, what="directory"):
    """Refuse, naming it, a ``path`` that cannot become a directory (it, or an ancestor, is something else)."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if not os.path.isdir(current):
        if current == os.path.abspath(path):
            raise CrdbTlsError("%s %s exists but is not a directory" % (what, path))
        raise CrdbTlsError("%s %s cannot be made: %s is not a directory" % (what, path, current))


def ensure_private_dir(path, what="directory"):
    """Make ``path`` with mode 0700 (missing parents as ``mkdir -p`` would) when it is missing; True when made."""
    if os.path.isdir(path):
        return False
    check_makeable_dir(path, what)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(path, 0o700)
    except OSError as exc:
        raise CrdbTlsError("cannot make %s %s: %s" % (what, path, exc.strerror))
    os.chmod(path, 0o700)   # whatever the umask left
    return True


def file_state(path):
    """``(mode, uid, gid)`` of ``path`` or None when missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@contextlib.contextmanager
def flocked(path, create=False):
    """Hold an exclusive flock on ``path``: a directory, or a lock file made (0600) when ``create``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT if create else os.O_RDONLY, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def dir_lock(directory):
    """Hold an exclusive flock on ``directory`` itself (blocks other writers of it)."""
    require_dir(directory)
    return flocked(directory)


def _write_temp(directory, name, data, mode, uid, gid, durable=True):
    """Write ``data`` to a new temp file in ``directory``; return its path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _attempt in range(100):
        tmp = os.path.join(directory, "%s%s.%s%s" % (TMP_PREFIX, name, os.urandom(6).hex(), TMP_SUFFIX))
        try:
            # Owner-only at creation: a key is never more open than its final mode.
            fd = os.open(tmp, flags, 0o600)
            break
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise CrdbTlsError("cannot write in %s: %s" % (directory, exc.strerror))
    else:  # pragma: no cover
        raise CrdbTlsError("cannot create a temporary file in %s" % directory)
    try:
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        _unlink_quietly(tmp)
        raise CrdbTlsError("cannot write %s: %s" % (os.path.join(directory, name), exc.strerror))
    os.close(fd)
    return tmp


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path, data, mode, owner=None, group=None):
    """Atomically replace ``path`` with ``data`` (temp file, final mode, fsync, rename)."""
    directory = os.path.dirname(path) or "."
    require_dir(directory)
    tmp = _write_temp(directory, os.path.basename(path), data, mode, resolve_uid(owner), resolve_gid(group))
    try:
        os.rename(tmp, path)
    except OSError:
        _unlink_quietly(tmp)   # no temp file left behind by a failed replace
        raise
    _fsync_dir(directory)


def attribute_drift(path, mode, owner=None, group=None):
    """How ``path``'s mode and ownership differ from what is wanted, or None (also when it is missing)."""
    state = file_state(path)
    if state is None:
        return None
    have_mode, uid, gid = state
    parts = []
    if have_mode != mode:
        parts.append("mode is %04o, want %04o" % (have_mode, mode))
    want_uid, want_gid = resolve_uid(owner), resolve_gid(group)
    if want_uid != -1 and uid != want_uid:
        parts.append("owner uid is %d, want %d (%s)" % (uid, want_uid, owner))
    if want_gid != -1 and gid != want_gid:
        parts.append("group gid is %d, want %d (%s)" % (gid, want_gid, group))
    return ", ".join(parts) or None


def set_attributes(path, mode, owner=None, group=None):
    """Fix mode and ownership in place; returns True when anything changed."""
    current = file_state(path)
    uid, gid = resolve_uid(owner), resolve_gid(group)
    changed = False
    if uid != -1 and current[1] != uid or gid != -1 and current[2] != gid:
        # Tighten first so a more open mode never meets a new owner.
        os.chmod(path, current[0] & mode)
        os.chown(path, uid, gid)
        changed = True
    if file_state(path)[0] != mode:
        os.chmod(path, mode)
        changed = True
    return changed


class FileSet(object):
    """Files in one directory that must change together."""

    def __init__(self, directory):
        self.directory = directory
        self.entries = []   # (name, data, mode, uid, gid)

    def add(self, name, data, mode, owner=None, group=None):
        if os.sep in name or name in ("", ".", ".."):
            raise CrdbTlsError("refusing to write file name %r" % name)
        self.entries.append((name, data, mode, resolve_uid(owner), resolve_gid(group)))
        return self

    def __len__(self):
        return len(self.entries)

    def commit(self, locked=False, durable=True):
        """Stage every file, journal the renames, rename, drop the journal.

        ``locked``: the caller already holds :func:`dir_lock` on the directory.
        ``durable``: False for a scratch directory that is thrown away right
        after (no fsync, no journal); the renames stay atomic.
        """
        if locked:
            require_dir(self.directory)
            return self._commit_locked(durable)
        with dir_lock(self.directory):
            return self._commit_locked(durable)

    def _commit_locked(self, durable=True):
        recover(self.directory)
        staged = []
        try:
            for name, data, mode, uid, gid in self.entries:
                staged.append((_write_temp(self.directory, name, data, mode, uid, gid, durable),
                               os.path.join(self.directory, name)))
        except Exception:
            for tmp, _final in staged:
                _unlink_quietly(tmp)
            raise
        journal = None
        if len(staged) > 1 and durable:
            journal = os.path.join(self.directory, JOURNAL_NAME)
            body = json.dumps([[os.path.basename(t), os.path.basename(f)] for t, f in staged]).encode()
            tmp = _write_temp(self.directory, JOURNAL_NAME, body, 0o600, -1, -1)
            os.rename(tmp, journal)
            _fsync_dir(self.directory)
        for tmp, final in staged:
            os.rename(tmp, final)
        if durable:
            _fsync_dir(self.directory)
        if journal:
            os.unlink(journal)
            _fsync_dir(self.directory)
        return [os.path.basename(f) for _t, f in staged]


def pending_journal(directory):
    """The renames a cut-short commit left to do in ``directory`` (empty when none)."""
    path = os.path.join(directory, JOURNAL_NAME)
    data = read_optional(path)
    if data is None:
        return []
    try:
        return [tuple(entry) for entry in json.loads(data.decode("utf-8"))]
    except (ValueError, TypeError):
        return [("?", "(unreadable journal %s)" % path)]


def recover(directory):
    """Roll a cut-short commit forward; returns the names it completed."""
    done = []
    journal = os.path.join(directory, JOURNAL_NAME)
    for tmp, final in pending_journal(directory):
        tmp_path = os.path.join(directory, tmp)
        if os.path.exists(tmp_path):
            os.rename(tmp_path, os.path.join(directory, final))
            done.append(final)
    if os.path.exists(journal):
        os.unlink(journal)
        _fsync_dir(directory)
    # Temp files of a run cut short before its journal existed are litter;
    # recent ones may belong to a single-file write under way, so leave them.
    cutoff = time.time() - LITTER_AGE
    for name in os.listdir(directory):
        if name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX):
            path = os.path.join(directory, name)
            try:
                if os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
            except OSError:
                pass
    return done
