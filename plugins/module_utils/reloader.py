# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find CockroachDB processes, send them SIGHUP as their owner, and watch the new cert served.

CockroachDB reloads every certificate in its certs dir on SIGHUP, and the
signal must come from the user running the process (or root). When this runs
as root, each signal is sent from a child that has dropped to the process
owner's uid and gid, so the process sees its own user as the sender.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import pwd
import signal
import socket
import ssl
import time

from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError


def find_processes(name="cockroach", proc="/proc"):
    """``[(pid, uid)]`` of processes whose name (``/proc/PID/comm``) is exactly ``name``."""
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "comm"), "rb") as handle:
                comm = handle.read().decode("utf-8", "replace").rstrip("\n")
            if comm != name[:15]:
                continue
            uid = os.stat(os.path.join(proc, entry)).st_uid
        except (IOError, OSError):
            continue
        if int(entry) != os.getpid():
            found.append((int(entry), uid))
    return sorted(found)


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def send_as_owner(pid, uid, signum=signal.SIGHUP):
    """Send ``signum`` to ``pid`` with ``uid`` as the sender. Raises CrdbTlsError on failure."""
    if os.geteuid() != 0 or uid == os.geteuid():
        try:
            os.kill(pid, signum)
        except OSError as exc:
            raise CrdbTlsError("cannot signal pid %d owned by %s: %s (run the task with become, or as %s)"
                               % (pid, _user_name(uid), exc.strerror, _user_name(uid)))
        return
    try:
        gid = pwd.getpwuid(uid).pw_gid
    except KeyError:
        gid = uid
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.kill(pid, signum)
        except OSError as exc:
            code = 2 if exc.errno == 3 else 1
        os._exit(code)
    _pid, status = os.waitpid(child, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
    if code == 2:
        raise CrdbTlsError("pid %d (owned by %s) exited before it could be signalled" % (pid, _user_name(uid)))
    if code:
        raise CrdbTlsError("could not send SIGHUP to pid %d as %s" % (pid, _user_name(uid)))


def served_fingerprint(address, timeout=5.0):
    """SHA-256 (hex) of the certificate served at ``host:port`` (not verified: only compared)."""
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest()


def split_address(address):
    host, sep, port = str(address).rpartition(":")
    if not sep or not port.isdigit():
        raise CrdbTlsError("address %r must be host:port (for example 127.0.0.1:8080)" % (address,))
    return host.strip("[]") or "127.0.0.1", int(port)


def wait_for_fingerprint(address, expected, timeout=30.0, interval=0.5):
    """Poll ``address`` until it serves ``expected``; returns ``(ok, last_seen, error)``."""
    deadline = time.monotonic() + timeout
    seen, error = None, None
    while True:
        try:
            seen = served_fingerprint(address, timeout=min(5.0, max(0.5, timeout)))
            error = None
            if seen == expected:
                return True, seen, None
        except (OSError, ssl.SSLError) as exc:
            error = str(exc)
        if time.monotonic() >= deadline:
            return False, seen, error
        time.sleep(interval)


def reload(name="cockroach", missing_ok=True, check_mode=False):
    """Signal every process called ``name`` as its owner; returns a result dict."""
    processes = find_processes(name)
    if not processes and not missing_ok:
        raise CrdbTlsError("no process named %r is running" % name)
    signalled = []
    for pid, uid in processes:
        if not check_mode:
            send_as_owner(pid, uid)
        signalled.append({"pid": pid, "uid": uid, "owner": _user_name(uid)})
    return {"changed": bool(signalled), "processes": signalled, "signalled": len(signalled)}
