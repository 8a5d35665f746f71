# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revocation seen through a real OCSP responder: ``openssl ocsp``.

ansible-playbook (tests/peers/playbooks/ocsp_pki.yml) makes a CA, client.alice
with an AIA OCSP URL on a free loopback port and the responder certificate
(crdb.tls.ocsp_responder_cert). ``openssl ocsp`` serves the CA's index with
that certificate as -rsigner; an ``openssl ocsp`` client, pointed at the URL
read back from the certificate (``openssl x509 -ocsp_uri``), gets ``good``.
After crdb.tls.revoke (tests/peers/playbooks/revoke.yml) it gets ``revoked``
with the reason. OpenSSL's -port takes only a number, so the responder listens
on every interface for the few seconds of the test; every query goes to
127.0.0.1. The responder serves at most RESPONDER_REQUESTS requests and is
killed in teardown; every wait is bounded.
"""

import os
import re
import socket
import subprocess
import time

import pytest
from peerlib import OPENSSL, ROOT, ansible_tool, collections_path

PLAYBOOKS = os.path.join(ROOT, "tests", "peers", "playbooks")
PLAYBOOK_TIMEOUT = 300
QUERY_TIMEOUT = 20
RESPONDER_REQUESTS = 10

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl CLI is not installed")


def _playbook(name, cwd, **extra_vars):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    })
    cmd = [ansible_tool(), "-i", "localhost,", os.path.join(PLAYBOOKS, name)]
    for key, value in sorted(extra_vars.items()):
        cmd += ["-e", "%s=%s" % (key, value)]
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=PLAYBOOK_TIMEOUT, check=False)
    output = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, "%s failed (rc %d):\n%s" % (name, proc.returncode, output[-6000:])
    return output


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port):
    """True when something listens on ``port`` (read from /proc: no request is used up)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                for line in handle.readlines()[1:]:
                    fields = line.split()
                    if fields[1].endswith(":%04X" % port) and fields[3] == "0A":
                        return True
        except OSError:
            continue
    return False


class Responder(object):
    """``openssl ocsp`` serving a CA's index, restartable; registered for teardown."""

    def __init__(self, out, port, processes):
        self.out, self.port, self.processes = out, port, processes
        self.proc = None
        self.log_path = os.path.join(out, "responder.log")

    def start(self):
        cmd = [OPENSSL, "ocsp", "-index", os.path.join(self.out, "pki", "ca.index.txt"),
               "-CA", os.path.join(self.out, "pki", "ca.crt"),
               "-rsigner", os.path.join(self.out, "ocsp", "ocsp.crt"),
               "-rkey", os.path.join(self.out, "ocsp", "ocsp.key"),
               "-port", str(self.port), "-nrequest", str(RESPONDER_REQUESTS), "-ignore_err"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(self.proc)
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            assert self.proc.poll() is None, "openssl ocsp exited (rc %s):\n%s" % (self.proc.returncode, self.log())
            assert time.monotonic() < deadline, "openssl ocsp does not listen on %d:\n%s" % (self.port, self.log())
            time.sleep(0.05)

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def log(self):
        with open(self.log_path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")


def _query(out, url):
    """``(status line, full output)`` of an ``openssl ocsp`` client query for client.alice.crt."""
    cmd = [OPENSSL, "ocsp", "-issuer", os.path.join(out, "pki", "ca.crt"),
           "-cert", os.path.join(out, "clients", "client.alice.crt"),
           "-CAfile", os.path.join(out, "pki", "ca.crt"),
           "-url", url, "-timeout", "10", "-resp_text"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=QUERY_TIMEOUT,
                          check=False)
    text = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, "openssl ocsp query failed (rc %d):\n%s" % (proc.returncode, text)
    assert "Response verify OK" in text, text
    found = re.search(r"client\.alice\.crt: (\w+)", text)
    assert found, text
    return found.group(1), text


def _openssl_3():
    version = subprocess.run([OPENSSL, "version"], stdout=subprocess.PIPE, timeout=QUERY_TIMEOUT,
                             check=True).stdout.decode()
    found = re.match(r"OpenSSL (\d+)\.", version)
    return bool(found) and int(found.group(1)) >= 3


def test_ocsp_good_then_revoked(tmp_path, processes):
    out = str(tmp_path)
    port = _free_port()
    url = "http://127.0.0.1:%d" % port
    _playbook("ocsp_pki.yml", out, ocsp_out=out, ocsp_url=url)

    # The URL the client queries is the one in the certificate's AIA extension.
    uri = subprocess.run([OPENSSL, "x509", "-noout", "-ocsp_uri", "-in",
                          os.path.join(out, "clients", "client.alice.crt")],
                         stdout=subprocess.PIPE, timeout=QUERY_TIMEOUT, check=True).stdout.decode().strip()
    assert uri == url
    responder_text = subprocess.run([OPENSSL, "x509", "-noout", "-text", "-in", os.path.join(out, "ocsp", "ocsp.crt")],
                                    stdout=subprocess.PIPE, timeout=QUERY_TIMEOUT, check=True).stdout.decode()
    assert "OCSP Signing" in responder_text and "OCSP No Check" in responder_text

    responder = Responder(out, port, processes)
    responder.start()
    state, text = _query(out, uri)
    assert state == "good", text

    _playbook("revoke.yml", out, revoke_pki=os.path.join(out, "pki"), revoke_user="alice")

    # OpenSSL 3.0 rereads the index when the file changed (new inode, mtime), but checks
    # before it waits for the next request: the first answer after a change is still the
    # old state, the second is fresh. Older responders read the index once: restart them.
    states = [_query(out, uri) for _attempt in range(2)]
    state, text = states[-1]
    if state != "revoked":
        assert not _openssl_3(), "OpenSSL 3 did not reload the index:\n%s" % responder.log()
        responder.stop()  # pragma: no cover - OpenSSL before 3.0
        responder.start()  # pragma: no cover
        state, text = _query(out, uri)  # pragma: no cover
    assert state == "revoked" and "Reason: keyCompromise" in text, text
    assert states[0][0] in ("good", "revoked"), states[0][1]
    # A responder started after the revocation answers revoked on its first request.
    responder.stop()
    responder.start()
    state, text = _query(out, uri)
    assert state == "revoked", text
    assert "Reason: keyCompromise" in text, text
    assert re.search(r"Revocation Time: \w+ +\d+ \d\d:\d\d:\d\d \d{4} GMT", text), text
