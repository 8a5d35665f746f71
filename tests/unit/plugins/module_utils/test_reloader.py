# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""reloader: find processes by exact name, SIGHUP them as their owner, watch the served cert.

The process signalled is the CockroachDB stand-in (tests/fixtures/standin/
cockroach, a TEST FIXTURE), started on port 0 with certificates made by the
engine. It runs under a unique process name (``crdbt-<random>``, not
``cockroach``), so no other test's process is ever signalled; it records the
uid that sent each SIGHUP. As root it also runs as ``nobody`` to show that
the signal comes from the process owner. Every process is killed in
teardown; every wait is bounded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import authority, fleet, installer, pki, reloader, rules, stamp
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
STANDIN = os.path.join(ROOT, "tests", "fixtures", "standin", "cockroach")
# <P>/ansible_collections/crdb/tls/plugins/module_utils/rules.py -> <P>, what the stand-in imports rules from.
COLLECTIONS_PATH = os.path.abspath(rules.__file__)
for _level in range(6):
    COLLECTIONS_PATH = os.path.dirname(COLLECTIONS_PATH)
IS_ROOT = os.geteuid() == 0
READY_RE = re.compile(r"stand-in ready: sql=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+) pid=(\d+)")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.isdir("/proc"),
                                reason="reloader reads /proc (Linux)")

# Loads the stand-in as a module and runs it under another process name.
RENAMED_STANDIN = """\
import importlib.machinery, importlib.util, sys
sys.dont_write_bytecode = True
path, name = sys.argv[1], sys.argv[2]
loader = importlib.machinery.SourceFileLoader("crdb_tls_standin", path)
module = importlib.util.module_from_spec(importlib.util.spec_from_loader("crdb_tls_standin", loader))
loader.exec_module(module)
module.PROCESS_NAME = name.encode()
sys.exit(module.main(sys.argv[3:]))
"""


def unique_name():
    return "crdbt-%s" % secrets.token_hex(4)   # 14 characters: /proc/PID/comm keeps 15


def wait_for(what, predicate, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def sha256_of_file(path):
    with open(path, "rb") as handle:
        return pki.fingerprint(pki.load_certificates(handle.read(), path)[0])


class Standin(object):
    """The stand-in under a unique name, optionally as another user."""

    def __init__(self, workdir, certs_dir, name, user=None):
        self.name = name
        self.log_file = os.path.join(workdir, "standin.log")
        self.err_file = os.path.join(workdir, "standin.stderr")
        kwargs = {}
        python = sys.executable
        if user is not None:
            entry = pwd.getpwnam(user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            # The test's interpreter may live under /root; the stand-in needs only the standard library.
            python = shutil.which("python3", path="/usr/bin:/bin")
        env = dict((k, v) for k, v in os.environ.items()
                   if k not in ("PYTHONPATH", "CRDB_TLS_COLLECTIONS_PATH", "COCKROACH_SKIP_KEY_PERMISSION_CHECK"))
        with open(self.err_file, "w") as err:
            self.proc = subprocess.Popen(
                [python, "-c", RENAMED_STANDIN, STANDIN, name, "start", "--certs-dir", certs_dir,
                 "--listen-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-file", self.log_file,
                 "--collections-path", COLLECTIONS_PATH],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=workdir, **kwargs)
        self.pid = self.proc.pid
        self.http_port = None

    def log(self):
        try:
            with open(self.log_file) as handle:
                return handle.read()
        except (IOError, OSError):
            return ""

    def wait_ready(self, timeout=20.0):
        def ready():
            match = READY_RE.search(self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                with open(self.err_file) as handle:
                    raise AssertionError("stand-in exited with %s:\n%s\n%s"
                                         % (self.proc.returncode, self.log(), handle.read()))
            return None
        match = wait_for("the stand-in to be ready", ready, timeout)
        assert int(match.group(3)) == self.pid
        self.http_port = int(match.group(2))
        return self

    @property
    def address(self):
        return "127.0.0.1:%d" % self.http_port

    def status(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.http_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                served = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
                tls.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                data = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        status = json.loads(data.partition(b"\r\n\r\n")[2].decode())
        status["_served"] = served
        return status

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def workspace():
    """A dir other users can reach (pytest's tmp_path is private to root); removed afterwards."""
    path = tempfile.mkdtemp(prefix="crdbt-reload-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def standins():
    started = []
    yield started
    for standin in started:
        standin.stop()


class Node(object):
    """A controller PKI dir, one node's certs dir, and the stand-in serving it."""

    def __init__(self, workspace, user=None):
        self.user = user
        self.pki_dir = os.path.join(workspace, "pki")
        os.mkdir(self.pki_dir, 0o700)
        authority.ensure(self.pki_dir, "ca", key_type="ecdsa")
        self.certs_dir = os.path.join(workspace, "certs")
        self.run_dir = os.path.join(workspace, "run")
        os.mkdir(self.run_dir, 0o755)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.run_dir, entry.pw_uid, entry.pw_gid)

    def issue_and_install(self, ui_generate=False, ui_sans=None):
        """What the node role does: issue on the controller, install validated; returns the install result."""
        nodes = {"n1": {"sans": ["127.0.0.1", "localhost"], "ui_sans": ui_sans}}
        fleet.issue(self.pki_dir, "standard", nodes=nodes, users=["root"], key_type="ecdsa",
                    ui_generate=ui_generate)
        source = fleet.issued_dir(self.pki_dir, "n1")
        certificates, keys = {}, {}
        for name in stamp.shipped_names(source):   # as the install action reads it
            with open(os.path.join(source, name), "rb") as handle:
                (keys if name.endswith(".key") else certificates)[name] = handle.read()
        return installer.install(self.certs_dir, certificates, keys, owner=self.user, process_user=self.user,
                                 layout="standard", expected_hosts=["127.0.0.1"])


# --------------------------------------------------------------------------- find_processes

def test_find_processes_matches_the_exact_name(tmp_path):
    proc = tmp_path / "proc"
    entries = {"101": "cockroach", "102": "cockroach-old", "103": "xcockroach", "104": "cockroach ",
               "105": "cockroach", "self": "cockroach", "net": None}
    for entry, comm in entries.items():
        (proc / entry).mkdir(parents=True)
        if comm is not None:
            (proc / entry / "comm").write_text(comm + "\n")
    (proc / "106").mkdir()   # a process gone between listdir and open: no comm
    found = reloader.find_processes("cockroach", proc=str(proc))
    assert found == [(101, os.geteuid()), (105, os.geteuid())]
    assert reloader.find_processes("cockroach-old", proc=str(proc)) == [(102, os.geteuid())]
    assert reloader.find_processes("postgres", proc=str(proc)) == []


def test_find_processes_truncates_long_names_like_the_kernel(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "comm").write_text("cockroach-maste\n")   # comm keeps 15 characters
    assert reloader.find_processes("cockroach-master", proc=str(tmp_path)) == [(7, os.geteuid())]


def test_find_processes_ignores_other_names_and_itself(workspace, standins):
    node = Node(workspace)
    node.issue_and_install()
    name = unique_name()
    standin = Standin(node.run_dir, node.certs_dir, name)
    standins.append(standin)
    standin.wait_ready()
    assert reloader.find_processes(name) == [(standin.pid, os.geteuid())]
    assert standin.pid not in [p for p, _u in reloader.find_processes("cockroach")]
    assert standin.pid not in [p for p, _u in reloader.find_processes(name[:-1])]
    assert reloader.find_processes(unique_name()) == []
    with open("/proc/self/comm") as handle:
        me = handle.read().strip()
    assert os.getpid() not in [p for p, _u in reloader.find_processes(me)]


# --------------------------------------------------------------------------- reload

def test_missing_process(tmp_path):
    name = unique_name()
    result = reloader.reload(name=name, missing_ok=True)
    assert result == {"changed": False, "processes": [], "signalled": 0}
    with pytest.raises(CrdbTlsError) as exc:
        reloader.reload(name=name, missing_ok=False)
    assert repr(name) in str(exc.value) and "no process named" in str(exc.value)


def _reload_flow(workspace, standins, user):
    """Start serving node.crt, install a ui.crt, reload, and watch the stand-in take it."""
    node = Node(workspace, user)
    node.issue_and_install()
    name = unique_name()
    standin = Standin(node.run_dir, node.certs_dir, name, user)
    standins.append(standin)
    standin.wait_ready()
    owner_uid = pwd.getpwnam(user).pw_uid if user else os.geteuid()
    node_fp = sha256_of_file(os.path.join(node.certs_dir, "node.crt"))
    ok, seen, error = reloader.wait_for_fingerprint(standin.address, node_fp, timeout=10)
    assert (ok, seen, error) == (True, node_fp, None)

    # Check mode names the process and sends nothing.
    result = reloader.reload(name=name, check_mode=True)
    assert result["signalled"] == 1 and result["changed"] is True
    time.sleep(0.3)
    assert standin.status()["reloads"] == 0

    installed = node.issue_and_install(ui_generate=True, ui_sans=["127.0.0.1", "console.example.com"])
    assert installed["content_changed"] and installed["problems"] == []
    ui_fp = sha256_of_file(os.path.join(node.certs_dir, "ui.crt"))
    assert ui_fp != node_fp
    result = reloader.reload(name=name)
    assert result["changed"] is True and result["signalled"] == 1
    assert result["processes"] == [{"pid": standin.pid, "uid": owner_uid,
                                    "owner": pwd.getpwuid(owner_uid).pw_name}]
    ok, seen, error = reloader.wait_for_fingerprint(standin.address, ui_fp, timeout=15, interval=0.1)
    assert ok, (seen, error, standin.log())

    def reloaded():
        status = standin.status()
        return status if status["reloads"] == 1 else None
    status = wait_for("the reload to be recorded", reloaded)
    assert status["last_reload_sender_uid"] == owner_uid
    assert status["ui_cert_sha256"] == ui_fp and status["_served"] == ui_fp
    assert status["reload_failures"] == 0
    assert 'received signal "hangup", triggering certificate reload (from uid=%d ' % owner_uid in standin.log()
    return standin, node


def test_reload_signals_the_process_and_it_serves_the_new_cert(workspace, standins):
    _reload_flow(workspace, standins, None)


@pytest.mark.skipif(not IS_ROOT, reason="dropping to another user's uid needs root")
def test_reload_as_root_sends_the_signal_as_the_process_owner(workspace, standins):
    if shutil.which("python3", path="/usr/bin:/bin") is None:
        pytest.skip("no system python3 for the stand-in running as nobody")
    standin, _node = _reload_flow(workspace, standins, "nobody")
    nobody = pwd.getpwnam("nobody").pw_uid
    assert nobody != 0
    assert reloader.find_processes(standin.name) == [(standin.pid, nobody)]
    # The SIGHUP came from a child that dropped to nobody, not from this (root) process.
    assert standin.status()["last_reload_sender_pid"] != os.getpid()


def test_wait_for_fingerprint_times_out_for_a_wrong_fingerprint(workspace, standins):
    node = Node(workspace)
    node.issue_and_install()
    standin = Standin(node.run_dir, node.certs_dir, unique_name())
    standins.append(standin)
    standin.wait_ready()
    served = sha256_of_file(os.path.join(node.certs_dir, "node.crt"))
    start = time.monotonic()
    ok, seen, error = reloader.wait_for_fingerprint(standin.address, "00" * 32, timeout=1.0, interval=0.2)
    elapsed = time.monotonic() - start
    assert (ok, seen, error) == (False, served, None)
    assert 0.9 <= elapsed < 8
    assert reloader.served_fingerprint(standin.address) == served


def test_wait_for_fingerprint_reports_a_closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()   # nothing listens there now
    ok, seen, error = reloader.wait_for_fingerprint("127.0.0.1:%d" % port, "00" * 32, timeout=0.5, interval=0.1)
    assert ok is False and seen is None and error


def test_split_address():
    assert reloader.split_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert reloader.split_address("[::1]:8443") == ("::1", 8443)
    assert reloader.split_address(":8080") == ("127.0.0.1", 8080)
    for bad in ("localhost", "localhost:http", "8080"):
        with pytest.raises(CrdbTlsError, match="must be host:port"):
            reloader.split_address(bad)


def test_send_as_owner_to_a_process_that_is_gone():
    proc = subprocess.Popen(["sleep", "30"])
    proc.kill()
    proc.wait(timeout=5)
    with pytest.raises(CrdbTlsError) as exc:
        reloader.send_as_owner(proc.pid, os.geteuid())
    assert str(proc.pid) in str(exc.value)
    if IS_ROOT:
        with pytest.raises(CrdbTlsError, match="exited before it could be signalled"):
            reloader.send_as_owner(proc.pid, pwd.getpwnam("nobody").pw_uid)
