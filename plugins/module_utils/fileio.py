# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic, owner-aware file writes, and sets of files that change together, through directory fds.

Every directory is opened component by component with ``O_DIRECTORY |
O_NOFOLLOW`` (:class:`Dir`) and worked on through its fd: files are opened,
renamed, linked and removed relative to it, every file is ``lstat``-ed before
use, and mode and owner are set on an fd opened ``O_NOFOLLOW`` after
checking it is a regular file with one link. A symbolic link is followed on
the way to a directory only where nobody but root and the process's own user
can have planted it (see :func:`open_dir`); the directory itself, and any
file read or written in it, is never a link: such a name is refused, naming
it.

Every file is written to a temporary file in its final directory, created
readable by its owner only, given its final owner and mode, fsynced and then
renamed over the target. A set of files that must change together (a key and
its certificate) is staged first; a journal lists the renames and a hard
link of each file replaced, so a run cut short between two renames is rolled
forward by the next writer (or back, when a rename is refused), and a commit
whose rename fails half-way is rolled back at once: the directory holds the
old set or the new set, never a mix.
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
OLD_MARK = ".old"
JOURNAL_NAME = ".crdb-tls-journal"
# Staging dirs older versions made inside a certs dir; removed as litter.
OLD_STAGING_PREFIX = ".crdb-tls-staging-"
LITTER_AGE = 3600
# The most a certificate, key or journal file read through :meth:`Dir.read` may hold.
MAX_FILE_SIZE = 1024 * 1024
MAX_LINKS = 40

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
# Directories on the way are only walked through (no read permission needed).
_WALK_FLAGS = (getattr(os, "O_PATH", 0) or os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)


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


# --------------------------------------------------------------------------
# Directories opened without following links
# --------------------------------------------------------------------------

def _kind(st):
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if stat.S_ISFIFO(st.st_mode):
        return "a FIFO"
    if stat.S_ISSOCK(st.st_mode):
        return "a socket"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "a device"
    return "not a regular file"


def _trusted(st):
    """A directory in which only root and this process's user can make or replace entries."""
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022


def _lstat_at(fd, name):
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _walk(path, what, make=None, strict=False):
    """``(fd or None, made paths, first missing path)`` of directory ``path``; see :func:`open_dir`."""
    path = os.path.abspath(path)
    made = []
    for _restart in range(MAX_LINKS + 1):
        parts = [p for p in path.split("/") if p]
        fd = os.open("/", _WALK_FLAGS if parts else _DIR_FLAGS)
        done = "/"
        try:
            for index, name in enumerate(parts):
                last = index == len(parts) - 1
                here = os.path.join(done, name)
                flags = _DIR_FLAGS if last else _WALK_FLAGS
                try:
                    nfd = os.open(name, flags, dir_fd=fd)
                except OSError as exc:
                    if exc.errno == errno.EACCES:
                        raise CrdbTlsError("%s %s: %s is not accessible: %s" % (what, path, here, exc.strerror))
                    st = _lstat_at(fd, name)
                    if st is None:
                        if make is None:
                            return None, made, here
                        try:
                            os.mkdir(name, make[1] if last else make[0], dir_fd=fd)
                            made.append(here)
                        except OSError as mkexc:
                            if mkexc.errno != errno.EEXIST:
                                raise CrdbTlsError("cannot make %s %s: %s" % (what, here, mkexc.strerror))
                        try:
                            nfd = os.open(name, flags, dir_fd=fd)
                        except OSError:
                            st = _lstat_at(fd, name)
                            if st is None:
                                raise CrdbTlsError("cannot make %s %s: it vanished while being made" % (what, here))
                            raise _not_a_dir(what, path, here, st)
                    elif stat.S_ISLNK(st.st_mode) and not (last and strict) and _trusted(os.fstat(fd)):
                        target = os.readlink(name, dir_fd=fd)
                        path = os.path.normpath(os.path.join(done, target, *parts[index + 1:]))
                        break
                    else:
                        raise _not_a_dir(what, path, here, st)
                os.close(fd)
                fd = nfd
                done = here
            else:
                result, fd = fd, None
                return result, made, None
        finally:
            if fd is not None:
                os.close(fd)
    raise CrdbTlsError("%s %s: more than %d symbolic links on the way" % (what, path, MAX_LINKS))


def _not_a_dir(what, path, here, st):
    if stat.S_ISDIR(st.st_mode):
        # Opening it with O_NOFOLLOW failed, yet it is a directory now: it was
        # swapped (for a link or a file) and back while it was being opened.
        return CrdbTlsError("%s %s: %s changed while it was being opened (a symbolic link or another file "
                            "was put in its place): refusing it" % (what, path, here))
    if stat.S_ISLNK(st.st_mode):
        if here == path:
            return CrdbTlsError("%s %s is a symbolic link: refusing to follow it (make it a real directory)"
                                % (what, path))
        return CrdbTlsError("%s %s: %s is a symbolic link in a directory others can write to: "
                            "refusing to follow it" % (what, path, here))
    if here == path:
        return CrdbTlsError("%s %s exists but is not a directory" % (what, path))
    return CrdbTlsError("%s %s cannot be made: %s is not a directory" % (what, path, here))


def open_dir(path, what="directory", make=None, strict=False):
    """:class:`Dir` of ``path``, opened from ``/`` one component at a time with ``O_NOFOLLOW``.

    A symbolic link (on the way, or ``path`` itself) is followed only when the
    directory holding it belongs to root or this process's user and nobody
    else may write to it (nobody else can have planted or swapped it);
    ``strict``: ``path`` itself is never a link (a certs dir).
    ``make``: ``(parent mode, mode)`` to create what is missing (as
    ``mkdir -p`` would); :attr:`Dir.made` lists the directories made.
    A missing ``path`` without ``make`` raises, naming it.
    """
    fd, made, missing = _walk(path, what, make, strict)
    if fd is None:
        if missing == os.path.abspath(path):
            raise CrdbTlsError("%s %s does not exist (create it first, e.g. with ansible.builtin.file)"
                               % (what, path))
        raise CrdbTlsError("%s %s does not exist: %s is missing" % (what, path, missing))
    return Dir(fd, path, made)


def probe_dir(path, what="directory", strict=False):
    """:class:`Dir` of ``path``, or None when it (or a parent) is missing; a link or a file in the way raises."""
    fd, _made, _missing = _walk(path, what, strict=strict)
    return None if fd is None else Dir(fd, path, [])


def opened(directory, what="directory"):
    """``directory`` as a :class:`Dir` in a ``with``: the one given (left open), or opened (and closed after) from a path."""
    if isinstance(directory, Dir):
        return contextlib.nullcontext(directory)
    return open_dir(directory, what)


class Dir(object):
    """A directory opened ``O_DIRECTORY | O_NOFOLLOW``; names are relative to its fd, links never followed."""

    def __init__(self, fd, path, made=None):
        self.fd = fd
        self.path = path
        self.made = list(made or [])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def join(self, name):
        return os.path.join(self.path, name)

    def listdir(self):
        return os.listdir(self.fd)

    def stat(self):
        return os.fstat(self.fd)

    def lstat(self, name):
        """``lstat`` of ``name`` in this dir, or None when it does not exist."""
        return _lstat_at(self.fd, name)

    def exists(self, name):
        return self.lstat(name) is not None

    def regular(self, name, what="file"):
        """``lstat`` of ``name`` when it is a regular file, None when missing; anything else is refused."""
        st = self.lstat(name)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise CrdbTlsError("%s %s is %s: refusing to use it (only regular files are read or written here)"
                               % (what, self.join(name), _kind(st)))
        return st

    def _open_regular(self, name, what, flags=_FILE_FLAGS):
        """An fd of regular file ``name`` (None when missing), opened ``O_NOFOLLOW`` and checked after opening."""
        if self.regular(name, what) is None:
            return None, None
        try:
            fd = os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None, None
            if exc.errno == errno.ELOOP:
                raise CrdbTlsError("%s %s is a symbolic link: refusing to use it" % (what, self.join(name)))
            raise CrdbTlsError("%s %s is unreadable: %s" % (what, self.join(name), exc.strerror))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise CrdbTlsError("%s %s is %s: refusing to use it" % (what, self.join(name), _kind(st)))
        return fd, st

    def read(self, name, what="file", limit=MAX_FILE_SIZE):
        """Bytes of regular file ``name`` (None when missing), at most ``limit`` of them, else refused."""
        fd, st = self._open_regular(name, what)
        return None if fd is None else self._read_fd(fd, st, name, what, limit)

    def _followed(self, name, what):
        """``(lstat or None, is a link to follow)``; a link in a dir that others can change is refused."""
        st = self.lstat(name)
        if st is None or not stat.S_ISLNK(st.st_mode):
            return st, False
        if not _trusted(self.stat()):
            raise CrdbTlsError("%s %s is a symbolic link in a directory others can write to: refusing to follow "
                               "it (put the file itself there)" % (what, self.join(name)))
        return st, True

    def stat_followed(self, name, what="file"):
        """``stat`` of ``name`` as CockroachDB's ``os.Stat`` sees it (None when missing), except that a link
        is followed only in a dir nobody but root and this process's user can change (else refused)."""
        st, link = self._followed(name, what)
        if not link:
            return st
        try:
            return os.stat(name, dir_fd=self.fd)
        except OSError as exc:
            raise CrdbTlsError("%s %s is a symbolic link that cannot be followed: %s"
                               % (what, self.join(name), exc.strerror))

    def read_followed(self, name, what="file", limit=MAX_FILE_SIZE):
        """Bytes of ``name`` as a reader that follows links sees them (None when missing): a link is followed
        only as :meth:`stat_followed` says; a FIFO, device or oversized file is refused, naming it."""
        _st, link = self._followed(name, what)
        if not link:
            return self.read(name, what, limit)
        try:
            fd = os.open(name, os.O_RDONLY | _CLOEXEC | getattr(os, "O_NONBLOCK", 0), dir_fd=self.fd)
        except OSError as exc:
            raise CrdbTlsError("%s %s is a symbolic link that cannot be followed: %s"
                               % (what, self.join(name), exc.strerror))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise CrdbTlsError("%s %s is a link to %s: refusing to use it" % (what, self.join(name), _kind(st)))
        return self._read_fd(fd, st, name, what, limit)

    def _read_fd(self, fd, st, name, what, limit):
        """The bytes of open regular file ``fd`` (closed after), at most ``limit`` of them."""
        try:
            if limit is not None and st.st_size > limit:
                raise CrdbTlsError("%s %s holds %d bytes, more than the %d a certificate or key file may: "
                                   "refusing to read it" % (what, self.join(name), st.st_size, limit))
            chunks, total = [], 0
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                total += len(chunk)
                if limit is not None and total > limit:
                    raise CrdbTlsError("%s %s grew past %d bytes while read: refusing it"
                                       % (what, self.join(name), limit))
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def file_state(self, name):
        """``(mode, uid, gid)`` of regular file ``name``, or None when missing."""
        st = self.regular(name)
        return None if st is None else (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)

    def attribute_drift(self, name, mode, owner=None, group=None):
        return _drift(self.file_state(name), mode, owner, group)

    def set_attributes(self, name, mode, owner=None, group=None, what="file"):
        """Fix mode and ownership of regular file ``name`` through an ``O_NOFOLLOW`` fd; True when changed."""
        fd, st = self._open_regular(name, what)
        if fd is None:
            raise CrdbTlsError("%s %s does not exist" % (what, self.join(name)))
        try:
            if st.st_nlink != 1:
                raise CrdbTlsError("%s %s has %d hard links: refusing to change its owner or mode"
                                   % (what, self.join(name), st.st_nlink))
            return _fix_fd(fd, st, mode, resolve_uid(owner), resolve_gid(group))
        finally:
            os.close(fd)

    def set_own_attributes(self, mode, owner=None, group=None):
        """Fix this directory's own mode and ownership through its fd; True when changed."""
        return _fix_fd(self.fd, os.fstat(self.fd), mode, resolve_uid(owner), resolve_gid(group))

    def own_drift(self, mode, owner=None, group=None):
        st = os.fstat(self.fd)
        return _drift((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), mode, owner, group)

    def unlink(self, name, quiet=False):
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            if not quiet:
                raise

    def rename(self, src, dst):
        os.rename(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def link(self, src, dst):
        os.link(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)

    def mkdir(self, name, mode):
        os.mkdir(name, mode, dir_fd=self.fd)

    def open_subdir(self, name):
        return Dir(os.open(name, _DIR_FLAGS, dir_fd=self.fd), self.join(name))

    def remove_tree(self, name):
        """Remove ``name`` (a link or file is unlinked, a directory removed without following links)."""
        st = self.lstat(name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            _rmtree_at(self.fd, name)
        else:
            self.unlink(name)

    def fsync(self):
        try:
            os.fsync(self.fd)
        except OSError:
            pass

    @contextlib.contextmanager
    def locked(self):
        """Hold an exclusive flock on this directory (blocks other writers of it)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield self
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def write_temp(self, name, data, mode, uid, gid, durable=True, mark=""):
        """Write ``data`` to a new temp file here (owner-only at creation); return its name."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        for _attempt in range(100):
            tmp = "%s%s.%s%s%s" % (TMP_PREFIX, name, os.urandom(6).hex(), mark, TMP_SUFFIX)
            try:
                # Owner-only at creation: a key is never more open than its final mode.
                fd = os.open(tmp, flags, 0o600, dir_fd=self.fd)
                break
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise CrdbTlsError("cannot write in %s: %s" % (self.path, exc.strerror))
        else:  # pragma: no cover
            raise CrdbTlsError("cannot create a temporary file in %s" % self.path)
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
            self.unlink(tmp, quiet=True)
            raise CrdbTlsError("cannot write %s: %s" % (self.join(name), exc.strerror))
        os.close(fd)
        return tmp

    def write(self, name, data, mode, owner=None, group=None):
        """Atomically replace ``name`` with ``data`` (temp file, final mode, fsync, rename)."""
        _check_name(name)
        self.regular(name)
        tmp = self.write_temp(name, data, mode, resolve_uid(owner), resolve_gid(group))
        try:
            self.rename(tmp, name)
        except OSError as exc:
            self.unlink(tmp, quiet=True)   # no temp file left behind by a failed replace
            raise CrdbTlsError("cannot replace %s: %s" % (self.join(name), exc.strerror))
        self.fsync()


def _rmtree_at(parent_fd, name, depth=0):
    """Remove directory ``name`` under ``parent_fd`` and what it holds, never following a link
    (``shutil.rmtree`` takes ``dir_fd`` only from Python 3.11; hosts may run 3.8)."""
    if depth > 64:
        raise OSError(errno.ELOOP, "directory tree too deep", name)
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        for entry in os.listdir(fd):
            st = _lstat_at(fd, entry)
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode):
                _rmtree_at(fd, entry, depth + 1)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def _fix_fd(fd, st, mode, uid, gid):
    changed = False
    if uid != -1 and st.st_uid != uid or gid != -1 and st.st_gid != gid:
        # Tighten first so a more open mode never meets a new owner.
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)
        os.fchown(fd, uid, gid)
        changed = True
    if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
        os.fchmod(fd, mode)
        changed = True
    return changed


def _drift(state, mode, owner, group):
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


def _check_name(name):
    if os.sep in name or name in ("", ".", ".."):
        raise CrdbTlsError("refusing to write file name %r" % name)


# --------------------------------------------------------------------------
# Path helpers (each opens the directory as above)
# --------------------------------------------------------------------------

def require_dir(path, what="directory"):
    with open_dir(path, what):
        return path


def check_makeable_dir(path, what="directory"):
    """Refuse, naming it, a ``path`` that cannot become a directory (it, or an ancestor, is something else)."""
    handle = probe_dir(path, what)
    if handle is not None:
        handle.close()


def ensure_private_dir(path, what="directory"):
    """Make ``path`` with mode 0700 (missing parents as ``mkdir -p`` would) when it is missing; True when made."""
    with open_dir(path, what, make=(0o777, 0o700)) as handle:
        if os.path.abspath(path) not in handle.made:
            return False
        os.fchmod(handle.fd, 0o700)   # whatever the umask left
        return True


def file_state(path):
    """``(mode, uid, gid)`` of ``path`` itself (``lstat``: a link is not followed), or None when missing."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@contextlib.contextmanager
def flocked(path, create=False):
    """Hold an exclusive flock on ``path``: a directory, or a lock file made (0600) when ``create``."""
    fd = os.open(path, (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def dir_lock(directory):
    """Hold an exclusive flock on ``directory`` itself (blocks other writers of it); yields its :class:`Dir`."""
    with opened(directory) as handle:
        with handle.locked():
            yield handle


def _split(path):
    directory, name = os.path.split(path)
    return directory or ".", name


def read_host_file(path, what="file"):
    """Bytes of ``path`` on a host where others may own the dirs: its dir opened as :func:`open_dir` opens
    it, the file read as :meth:`Dir.read_followed` reads it. A missing file raises, naming it."""
    directory, name = _split(path)
    handle = probe_dir(directory, "directory of %s %s" % (what, path))
    data = None
    if handle is not None:
        with handle:
            data = handle.read_followed(name, what)
    if data is None:
        raise CrdbTlsError("%s %s does not exist" % (what, path))
    return data


def atomic_write(path, data, mode, owner=None, group=None):
    """Atomically replace ``path`` with ``data`` (temp file, final mode, fsync, rename)."""
    directory, name = _split(path)
    with open_dir(directory) as handle:
        handle.write(name, data, mode, owner, group)


def attribute_drift(path, mode, owner=None, group=None):
    """How ``path``'s mode and ownership differ from what is wanted, or None (also when it is missing)."""
    directory, name = _split(path)
    with open_dir(directory) as handle:
        return handle.attribute_drift(name, mode, owner, group)


def set_attributes(path, mode, owner=None, group=None):
    """Fix mode and ownership in place (never through a link); returns True when anything changed."""
    directory, name = _split(path)
    with open_dir(directory) as handle:
        return handle.set_attributes(name, mode, owner, group)


# --------------------------------------------------------------------------
# Sets of files that change together
# --------------------------------------------------------------------------

class FileSet(object):
    """Files in one directory (a path or a :class:`Dir`) that must change together."""

    def __init__(self, directory):
        self.directory = directory
        self.entries = []   # (name, data, mode, uid, gid)

    def add(self, name, data, mode, owner=None, group=None):
        _check_name(name)
        self.entries.append((name, data, mode, resolve_uid(owner), resolve_gid(group)))
        return self

    def __len__(self):
        return len(self.entries)

    def commit(self, locked=False, durable=True):
        """Stage every file, journal the renames, rename, drop the journal.

        ``locked``: the caller already holds :func:`dir_lock` on the directory.
        ``durable``: False for a scratch directory that is thrown away right
        after (no fsync, no journal); the renames stay atomic.
        A rename refused half-way rolls the set back and raises, naming the file.
        """
        with opened(self.directory) as handle:
            if locked:
                return self._commit_locked(handle, durable)
            with handle.locked():
                return self._commit_locked(handle, durable)

    def _commit_locked(self, handle, durable=True):
        recover(handle)
        for name, _data, _mode, _uid, _gid in self.entries:
            handle.regular(name)
        staged, backups = [], {}
        journal = False
        try:
            for name, data, mode, uid, gid in self.entries:
                staged.append((handle.write_temp(name, data, mode, uid, gid, durable), name))
            if len(staged) > 1 and durable:
                for _tmp, name in staged:
                    if handle.exists(name):
                        backup = "%s%s.%s%s%s" % (TMP_PREFIX, name, os.urandom(6).hex(), OLD_MARK, TMP_SUFFIX)
                        try:
                            handle.link(name, backup)
                        except OSError as exc:
                            raise CrdbTlsError("cannot replace %s: %s (nothing was changed)"
                                               % (handle.join(name), exc.strerror))
                        backups[name] = backup
                body = json.dumps([[t, f, backups.get(f)] for t, f in staged]).encode()
                tmp = handle.write_temp(JOURNAL_NAME, body, 0o600, -1, -1)
                handle.rename(tmp, JOURNAL_NAME)
                journal = True
                handle.fsync()
        except BaseException:
            for tmp, _final in staged:
                handle.unlink(tmp, quiet=True)
            for backup in backups.values():
                handle.unlink(backup, quiet=True)
            raise
        done = []
        for tmp, final in staged:
            try:
                handle.rename(tmp, final)
            except OSError as exc:
                if not journal:
                    for rest, _f in staged[len(done):]:
                        handle.unlink(rest, quiet=True)
                    raise CrdbTlsError("cannot replace %s: %s" % (handle.join(final), exc.strerror))
                undone = _roll_back(handle, [[t, f, backups.get(f)] for t, f in staged])
                raise CrdbTlsError("cannot replace %s: %s; the set was rolled back (%s kept as it was)"
                                   % (handle.join(final), exc.strerror, ", ".join(undone)))
            done.append(final)
        if durable:
            handle.fsync()
        if journal:
            for backup in backups.values():
                handle.unlink(backup, quiet=True)
            handle.unlink(JOURNAL_NAME)
            handle.fsync()
        return done


def _journal_entries(handle):
    """``[[tmp, final, backup or None]]`` of the journal in ``handle``, [] when none, None when unreadable."""
    try:
        data = handle.read(JOURNAL_NAME, "journal")
    except CrdbTlsError:
        return None
    if data is None:
        return []
    try:
        entries = json.loads(data.decode("utf-8"))
        out = []
        for entry in entries:
            tmp, final = entry[0], entry[1]
            backup = entry[2] if len(entry) > 2 else None
            for name in (tmp, final) + ((backup,) if backup else ()):
                _check_name(name)
            out.append([tmp, final, backup])
        return out
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, CrdbTlsError):
        return None


def pending_journal(directory):
    """The renames a cut-short commit left to do in ``directory`` (empty when none)."""
    with opened(directory) as handle:
        entries = _journal_entries(handle)
        if entries is None:
            return [("?", "(unreadable journal %s)" % handle.join(JOURNAL_NAME))]
        return [(tmp, final) for tmp, final, _backup in entries]


def _roll_back(handle, entries):
    """Put back what a journal's renames replaced; remove its temp files. Returns the names restored."""
    restored = []
    for tmp, final, backup in entries:
        if handle.exists(tmp):   # never renamed: the old file (if any) is still in place
            handle.unlink(tmp, quiet=True)
            if backup:
                handle.unlink(backup, quiet=True)
        elif backup and handle.exists(backup):
            handle.rename(backup, final)
        elif not backup:
            handle.unlink(final, quiet=True)   # it was new
        restored.append(final)
    handle.fsync()
    handle.unlink(JOURNAL_NAME, quiet=True)
    handle.fsync()
    return restored


def recover_report(directory, staging_prefixes=()):
    """Finish what a run cut short left in ``directory``; ``{"completed", "rolled_back", "removed"}``.

    A journaled commit is rolled forward (its temp files were complete before
    the journal was written); when a rename is refused it is rolled back from
    the links of the files it replaced. Temp files and staging dirs older than
    :data:`LITTER_AGE` (or any, for names in ``staging_prefixes``) are removed.
    """
    out = {"completed": [], "rolled_back": [], "removed": []}
    with opened(directory) as handle:
        entries = _journal_entries(handle)
        if entries is None:
            # Unreadable: nothing can be rolled forward; its temp files go as litter.
            handle.unlink(JOURNAL_NAME, quiet=True)
            out["removed"].append(JOURNAL_NAME)
            entries = []
        if entries:
            try:
                for tmp, final, _backup in entries:
                    if handle.exists(tmp):
                        handle.rename(tmp, final)
                        out["completed"].append(final)
            except OSError:
                out["completed"] = []
                out["rolled_back"] = _roll_back(handle, entries)
            else:
                handle.fsync()
                for _tmp, _final, backup in entries:
                    if backup:
                        handle.unlink(backup, quiet=True)
                handle.unlink(JOURNAL_NAME, quiet=True)
                handle.fsync()
        # Temp files of a run cut short before its journal existed are litter;
        # recent ones may belong to a single-file write under way, so leave them.
        cutoff = time.time() - LITTER_AGE
        for name in sorted(handle.listdir()):
            temp = name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)
            staging = name.startswith(OLD_STAGING_PREFIX) or name.startswith(tuple(staging_prefixes))
            if not (temp or staging):
                continue
            # A link of a file still in place that no journal needs is removed at once.
            spare = name.endswith(OLD_MARK + TMP_SUFFIX)
            try:
                st = handle.lstat(name)
                if st is not None and (staging or st.st_mtime < cutoff or spare and st.st_nlink > 1):
                    handle.remove_tree(name)
                    out["removed"].append(name)
            except OSError:
                pass
    return out


def recover(directory):
    """Roll a cut-short commit forward; returns the names it completed."""
    return recover_report(directory)["completed"]
