# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CockroachDB stand-in (tests/go/cmd/cockroach, Go's crypto/tls) against real peers.

Certificates are made with the openssl CLI; the SQL port is checked with
`openssl s_client`, the HTTP port with Python's ssl. Reloads follow
CockroachDB's rules (tests/fixtures/standin/README.md). Every started process
is killed in teardown and every wait is bounded.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys

import pytest

from gobuild import go_bin_dir
from peerlib import OPENSSL, fingerprint, wait_for

pytestmark = pytest.mark.skipif(OPENSSL is None or not sys.platform.startswith("linux"),
                                reason="needs Linux and the openssl CLI")

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,digitalSignature,keyEncipherment
subjectKeyIdentifier = hash
[node_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
[ui_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""

READY_RE = re.compile(r"stand-in ready: sql=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+) pid=(\d+)")


# --------------------------------------------------------------------------- helpers

def _status_if(node, field, value):
    """The stand-in's status when ``field`` has ``value``, else None (for wait_for)."""
    try:
        current = status(node)
    except (OSError, ssl.SSLError):     # a set that cannot serve the DB Console, until a reload fixes it
        return None
    return current if current[field] == value else None


def run(cmd, timeout=20, **kwargs):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)


def openssl(*args, cwd):
    result = run([OPENSSL] + list(args), cwd=cwd)
    assert result.returncode == 0, "openssl %s failed:\n%s" % (" ".join(args), result.stderr)
    return result


def new_key_and_csr(pki, name, subject):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", subject,
            "-config", "openssl.cnf", cwd=pki)


def sign(pki, name, ca, extensions):
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-set_serial", "0x" + secrets.token_hex(15), "-days", "2", "-sha256",
            "-extfile", "openssl.cnf", "-extensions", extensions, "-out", name + ".crt", cwd=pki)


def make_ca(pki, name, cn):
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".crt", "-days", "3",
            "-subj", "/O=Cockroach/CN=" + cn, "-set_serial", "0x" + secrets.token_hex(15),
            "-config", "openssl.cnf", "-extensions", "ca_ext", cwd=pki)


def s_client(port, pki, cert=None):
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile",
           os.path.join(pki, "ca.crt"), "-verify_return_error", "-verify_ip", "127.0.0.1", "-ign_eof"]
    if cert:
        cmd += ["-cert", os.path.join(pki, cert + ".crt"), "-key", os.path.join(pki, cert + ".key")]
    return run(cmd, timeout=15)


def https_get(port, path, cafile):
    """(status code, body, sha256 of the certificate the server presented)."""
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            served = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
            tls.sendall(("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" % path).encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(), served


def status(node):
    code, body, served = https_get(node.http_port, "/", node.cafile)
    assert code == 200, body
    result = json.loads(body)
    result["_served_on_wire"] = served
    return result


class Standin:
    """One stand-in process; stop() is always called by the fixture."""

    def __init__(self, workdir, certs_dir, cafile, extra=(), env=None):
        self.log_file = os.path.join(workdir, "cockroach.log")
        self.pid_file = os.path.join(workdir, "cockroach.pid")
        self.stderr_file = os.path.join(workdir, "cockroach.stderr")
        self.cafile = cafile
        child_env = {k: v for k, v in os.environ.items() if k != "COCKROACH_SKIP_KEY_PERMISSION_CHECK"}
        child_env.update(env or {})
        with open(self.stderr_file, "w") as err:
            self.proc = subprocess.Popen(
                [os.path.join(go_bin_dir(), "cockroach"), "start", "--certs-dir", certs_dir, "--listen-addr", "127.0.0.1:0",
                 "--http-addr", "127.0.0.1:0", "--log-file", self.log_file,
                 "--pid-file", self.pid_file] + list(extra),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=child_env)
        self.pid = self.proc.pid
        self.sql_port = self.http_port = None

    def log(self):
        try:
            with open(self.log_file) as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    def stderr(self):
        with open(self.stderr_file) as fh:
            return fh.read()

    def wait_ready(self, timeout=10.0):
        def ready():
            match = READY_RE.search(self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                raise AssertionError("stand-in exited with %s:\n%s\n%s"
                                     % (self.proc.returncode, self.log(), self.stderr()))
            return None
        match = wait_for("the stand-in to be ready", ready, timeout)
        self.sql_port, self.http_port = int(match.group(1)), int(match.group(2))
        assert int(match.group(3)) == self.pid
        return self

    def wait_exit(self, timeout=10.0):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """CA, node, client.root, ui, an unrelated key, and a separate client CA."""
    pki = str(tmp_path_factory.mktemp("pki"))
    with open(os.path.join(pki, "openssl.cnf"), "w") as fh:
        fh.write(OPENSSL_CNF)
    make_ca(pki, "ca", "Cockroach CA")
    for name, subject, ext in (("node", "/O=Cockroach/CN=node", "node_ext"),
                               ("client.root", "/O=Cockroach/CN=root", "client_ext"),
                               ("ui", "/O=Cockroach/CN=console", "ui_ext")):
        new_key_and_csr(pki, name, subject)
        sign(pki, name, "ca", ext)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "other.key", cwd=pki)
    make_ca(pki, "client-ca", "Cockroach Client CA")
    new_key_and_csr(pki, "split.root", "/O=Cockroach/CN=root")
    sign(pki, "split.root", "client-ca", "client_ext")
    for name in os.listdir(pki):
        if name.endswith(".key"):
            os.chmod(os.path.join(pki, name), 0o600)
    return pki


@pytest.fixture
def certs_dir(pki, tmp_path):
    """A node's certs dir: ca.crt, node.crt/key, client.root.crt/key and a misnamed ca.old.crt."""
    path = tmp_path / "certs"
    path.mkdir(mode=0o700)
    for name in ("ca.crt", "node.crt", "node.key", "client.root.crt", "client.root.key"):
        shutil.copy(os.path.join(pki, name), str(path / name))
    shutil.copy(os.path.join(pki, "ca.crt"), str(path / "ca.old.crt"))
    for key in path.glob("*.key"):
        key.chmod(0o600)
    return str(path)


@pytest.fixture
def start(tmp_path, pki):
    started = []

    def _start(certs, extra=(), env=None, ready=True):
        node = Standin(str(tmp_path), certs, os.path.join(pki, "ca.crt"), extra, env)
        started.append(node)
        return node.wait_ready() if ready else node

    yield _start
    for node in started:
        node.stop()


# --------------------------------------------------------------------------- tests

def test_process_name_pid_file_and_skipped_names(start, certs_dir):
    node = start(certs_dir, extra=["--join", "elsewhere:26257", "--store=/nowhere"])
    with open("/proc/%d/comm" % node.pid) as fh:
        assert fh.read().strip() == "cockroach"
    for task in os.listdir("/proc/%d/task" % node.pid):
        with open("/proc/%d/task/%s/comm" % (node.pid, task)) as fh:
            assert fh.read().strip() == "cockroach", "thread %s" % task
    if shutil.which("pgrep"):
        assert str(node.pid) in run(["pgrep", "-x", "cockroach"]).stdout.split()
    with open(node.pid_file) as fh:
        assert fh.read().strip() == str(node.pid)
    log = node.log()
    assert "TEST FIXTURE, not CockroachDB" in log
    assert "bad filename %s: CA certificate filename should match ca.crt" % os.path.join(certs_dir, "ca.old.crt") in log
    assert "ignoring --join elsewhere:26257 --store=/nowhere: the stand-in has no cluster" in log
    st = status(node)
    assert st["skipped"][0]["file"] == "ca.old.crt"
    assert st["client_users"] == ["root"]
    assert st["client_ca_file"] == "ca.crt"
    assert st["outgoing_identity_file"] == "node.crt"
    assert "not CockroachDB" in run([node.proc.args[0], "version"]).stdout

    node.proc.send_signal(signal.SIGTERM)
    assert node.wait_exit() == 0
    assert not os.path.exists(node.pid_file)
    assert 'received signal "terminated", initiating shutdown (from uid=%d pid=%d)' % (
        os.getuid(), os.getpid()) in node.log()


def test_other_process_name(start, certs_dir):
    """--process-name: tests running side by side signal only their own stand-ins."""
    node = start(certs_dir, extra=["--process-name", "crdb-standin-t"])
    for task in os.listdir("/proc/%d/task" % node.pid):
        with open("/proc/%d/task/%s/comm" % (node.pid, task)) as fh:
            assert fh.read().strip() == "crdb-standin-t", "thread %s" % task
    assert status(node)["pid"] == node.pid


def test_sql_port_mutual_tls_with_openssl_s_client(start, certs_dir, pki):
    node = start(certs_dir)
    node_fp = fingerprint(os.path.join(pki, "node.crt"))

    ok = s_client(node.sql_port, pki, cert="client.root")
    assert ok.returncode == 0, ok.stderr
    assert "OK cn=root server_sha256=%s\n" % node_fp in ok.stdout
    assert "Verify return code: 0 (ok)" in ok.stdout
    assert "sql: client 127.0.0.1:" in node.log() and "cn=root: TLS handshake succeeded" in node.log()

    refused = s_client(node.sql_port, pki)
    assert "OK cn=" not in refused.stdout
    assert "alert" in refused.stderr.lower(), refused.stderr
    failure = wait_for("the refused handshake in the log",
                       lambda: re.search(r"sql: client 127\.0\.0\.1:\d+: TLS handshake failed: (.*)",
                                         node.log()))
    assert "client didn't provide a certificate" in failure.group(1)


def test_http_port_serves_node_cert_and_health(start, certs_dir, pki):
    node = start(certs_dir)
    node_fp = fingerprint(os.path.join(pki, "node.crt"))
    st = status(node)
    assert st["_served_on_wire"] == node_fp
    assert st["served_cert_sha256"] == node_fp == st["node_cert_sha256"]
    assert st["served_cert_file"] == "node.crt"
    assert st["reloads"] == 0 and st["last_reload_sender_uid"] is None
    assert "not CockroachDB" in st["fixture"]
    assert https_get(node.http_port, "/health", node.cafile)[:2] == (200, "ok\n")


def _copy(pki, certs_dir, name, as_name=None):
    target = os.path.join(certs_dir, as_name or name)
    shutil.copy(os.path.join(pki, name), target)
    if target.endswith(".key"):
        os.chmod(target, 0o600)


def _hup_and_wait(node, count_field, value):
    os.kill(node.pid, signal.SIGHUP)
    return wait_for("%s to reach %s" % (count_field, value), lambda: _status_if(node, count_field, value))


def test_sighup_reload_keeps_valid_certs_and_takes_new_ones(start, certs_dir, pki):
    """CockroachDB's reload: losing a valid guarded cert is refused; anything else is taken as it is."""
    node = start(certs_dir)
    node_fp = fingerprint(os.path.join(pki, "node.crt"))
    ui_fp = fingerprint(os.path.join(pki, "ui.crt"))
    _copy(pki, certs_dir, "ui.crt")
    _copy(pki, certs_dir, "ui.key")

    st = _hup_and_wait(node, "served_cert_sha256", ui_fp)
    assert st["_served_on_wire"] == ui_fp
    assert st["node_cert_sha256"] == node_fp
    assert st["last_reload_sender_uid"] == os.getuid()
    assert st["last_reload_sender_pid"] == os.getpid()
    assert st["reloads"] == 1 and st["last_reload_error"] is None
    log = node.log()
    assert ('received signal "hangup", triggering certificate reload (from uid=%d pid=%d)'
            % (os.getuid(), os.getpid())) in log
    assert "certificate reload succeeded" in log

    # Removing ui.crt would lose a valid cert: refused, the old set is kept.
    os.rename(os.path.join(certs_dir, "ui.crt"), os.path.join(certs_dir, "ui.crt.away"))
    st = _hup_and_wait(node, "reload_failures", 1)
    assert st["last_reload_error"] == "reload would lose valid UI certificate: file is gone"
    assert st["_served_on_wire"] == ui_fp and st["reloads"] == 1
    assert ("certificate reload failed, keeping previous certificates: %s" % st["last_reload_error"]) in node.log()

    # A ca.crt that stops parsing: refused too.
    os.rename(os.path.join(certs_dir, "ui.crt.away"), os.path.join(certs_dir, "ui.crt"))
    with open(os.path.join(certs_dir, "ca.crt"), "ab") as fh:
        fh.write(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    st = _hup_and_wait(node, "reload_failures", 2)
    assert st["last_reload_error"].startswith("reload would lose valid CA cert: failed to parse certificate file "
                                              "ca.crt as PEM: block #1 is of type PRIVATE KEY"), st
    _copy(pki, certs_dir, "ca.crt")

    # A ui.key that does not match ui.crt: CockroachDB does not check pairs on
    # reload, so the set is taken and the DB Console stops serving; the SQL
    # port goes on.
    _copy(pki, certs_dir, "other.key", "ui.key")
    os.kill(node.pid, signal.SIGHUP)
    wait_for("the reload to be taken", lambda: node.log().count("certificate reload succeeded") == 2)
    failure = wait_for("the DB Console to refuse", lambda: _console_refuses(node))
    assert "private key does not match public key" in failure
    ok = s_client(node.sql_port, pki, cert="client.root")
    assert "OK cn=root server_sha256=%s" % node_fp in ok.stdout, ok.stderr

    # The right key again: served again, three reloads taken, two refused.
    _copy(pki, certs_dir, "ui.key")
    st = _hup_and_wait(node, "reloads", 3)
    assert st["_served_on_wire"] == ui_fp and st["reload_failures"] == 2


def _console_refuses(node):
    try:
        status(node)
        return None
    except (OSError, ssl.SSLError):
        match = re.search(r"cannot serve the DB Console: (.*)", node.log())
        return match.group(1) if match else None


def test_new_broken_client_ca_is_taken_and_breaks_incoming_tls(start, certs_dir, pki):
    """A newly added broken ca-client.crt is swapped in (it was never valid): client handshakes then fail."""
    node = start(certs_dir)
    with open(os.path.join(certs_dir, "ca-client.crt"), "w") as fh:
        fh.write("not a certificate\n")
    st = _hup_and_wait(node, "reloads", 1)
    assert st["reload_failures"] == 0 and st["client_ca_file"] is None
    refused = s_client(node.sql_port, pki, cert="client.root")
    assert "OK cn=" not in refused.stdout
    assert wait_for("the refusal in the log", lambda: re.search(
        r"sql: client 127\.0\.0\.1:\d+: cannot serve: problem with client CA certificate: no certificates found "
        r"in ca-client.crt", node.log()))

    # A bad tenant id fails the whole reload.
    os.unlink(os.path.join(certs_dir, "ca-client.crt"))
    _copy(pki, certs_dir, "client.root.crt", "client-tenant.abc.crt")
    _copy(pki, certs_dir, "client.root.key", "client-tenant.abc.key")
    st = _hup_and_wait(node, "reload_failures", 1)
    assert st["last_reload_error"] == "invalid tenant id abc"
    assert st["client_ca_file"] is None      # still the set with the broken ca-client.crt


def test_group_readable_key_refused_at_start(start, certs_dir):
    node_key = os.path.join(certs_dir, "node.key")
    os.chmod(node_key, 0o644)
    node = start(certs_dir, ready=False)
    assert node.wait_exit() == 1
    message = "cannot load certificates: validating node cert: key file %s has permissions -rw-r--r--, exceeds" % (
        node_key)
    assert message in node.log()
    assert "ERROR: " + message in node.stderr()
    assert not os.path.exists(node.pid_file)

    node = start(certs_dir, env={"COCKROACH_SKIP_KEY_PERMISSION_CHECK": "true"})
    assert "key permissions are not checked" in node.log()
    assert status(node)["key_permission_check"] is False


def test_root_owned_key_readable_by_the_process_group(start, certs_dir):
    """0640 is allowed for a key owned by uid 0 whose group is the process's gid (and only then)."""
    node_key = os.path.join(certs_dir, "node.key")
    os.chmod(node_key, 0o640)
    os.chown(node_key, 0, os.getgid())
    node = start(certs_dir)
    assert status(node)["key_permission_check"] is True
    node.stop()
    os.chown(node_key, 0, os.getgid() + 4242)
    node = start(certs_dir, ready=False)
    assert node.wait_exit() == 1
    assert "has permissions -rw-r-----, exceeds -rwx------" in node.log()


def test_split_client_ca_verifies_client_certs(start, certs_dir, pki):
    shutil.copy(os.path.join(pki, "client-ca.crt"), os.path.join(certs_dir, "ca-client.crt"))
    node = start(certs_dir)
    assert status(node)["client_ca_file"] == "ca-client.crt"

    refused = s_client(node.sql_port, pki, cert="client.root")     # signed by ca.crt
    assert "OK cn=" not in refused.stdout
    failure = wait_for("the refused handshake in the log",
                       lambda: re.search(r"TLS handshake failed: (.*)", node.log()))
    assert "failed to verify client certificate" in failure.group(1)

    ok = s_client(node.sql_port, pki, cert="split.root")           # signed by ca-client.crt
    assert "OK cn=root server_sha256=%s" % fingerprint(os.path.join(pki, "node.crt")) in ok.stdout


def test_collections_path_is_accepted_and_ignored(start, certs_dir, tmp_path):
    """The Python stand-in's --collections-path: the Go stand-in reads the certs dir itself."""
    node = start(certs_dir, extra=["--collections-path", str(tmp_path)])
    assert "ignoring --collections-path=%s" % tmp_path in node.log()
