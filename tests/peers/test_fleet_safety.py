# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet safety, end to end with ansible-playbook and the openssl CLI.

(a) No key material reaches the output of a -vvv run of the demo fleet.
(b) Two runs at once on one fresh PKI dir cannot fork the CA or corrupt what
    was issued (the CA and issue_fleet hold locks on the PKI dir).
(c) With crdb_tls_key_location=node, no key of a host reaches a -vvv run's
    output or the PKI dir, and a rerun changes nothing.

Uses the collection at ANSIBLE_COLLECTIONS_PATH (``make peers`` sets
build/collections), else the working tree through build/src. Every process
is waited for with a timeout and killed if it overruns.
"""

import base64
import os
import re
import subprocess
import time

import pytest
from peerlib import OPENSSL, ROOT, ansible_tool, collections_path


pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl CLI")

DEMO_TIMEOUT = 900       # three layouts of a four-host fleet, -vvv, on a loaded CI machine
RACE_TIMEOUT = 240
# A base64 line shorter than this (the tail of a PEM body) could occur in the
# output by chance; every full 64-character line and the whole file are checked.
MIN_LINE = 24

RACE_PLAYBOOK = """\
---
- name: Issue a two-node fleet (two of these run at once)
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Create the CA
      crdb.tls.ca:
        path: "{{ race_pki }}"
        key_type: ecdsa
    - name: Issue the fleet
      crdb.tls.issue_fleet:
        pki_dir: "{{ race_pki }}"
        key_type: ecdsa
        users: [root, app]
        nodes:
          node1: {sans: [node1.example.com, 127.0.0.1]}
          node2: {sans: [node2.example.com, 127.0.0.2]}
      register: race_issued
    - name: Report
      ansible.builtin.debug:
        msg: "issued_count={{ race_issued.issued_count }}"
"""


def _env(**extra):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    })
    env.update(extra)
    return env


def _start(cmd, env, cwd, log):
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)


def _wait(proc, timeout):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("ansible-playbook ran longer than %ds and was killed" % timeout)


@pytest.fixture
def started():
    """Processes to kill in teardown if a test left them running."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _secret_files(root):
    found = []
    for base, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith((".key", ".pk8")):
                found.append(os.path.join(base, name))
    return sorted(found)


def _needles(path):
    """What would betray this key: each PEM body line and the base64 of the whole file."""
    with open(path, "rb") as handle:
        data = handle.read()
    needles = [base64.b64encode(data).decode("ascii")]
    if b"-----BEGIN" in data:
        for line in data.decode("ascii").splitlines():
            line = line.strip()
            if line and not line.startswith("-----") and ":" not in line and len(line) >= MIN_LINE:
                needles.append(line)
    else:  # DER (.pk8): its base64 in 64-character slices, as a PEM body would show it
        whole = needles[0]
        needles.extend(whole[i:i + 64] for i in range(0, len(whole) - 63, 64))
    return needles


# --------------------------------------------------------------------------- (a)

def test_no_key_material_in_vvv_output(tmp_path, started):
    demo_dir = tmp_path / "demo"
    demo_dir.mkdir(mode=0o700)
    log_path = tmp_path / "demo.out"
    with open(log_path, "wb") as log:
        proc = _start([ansible_tool(), "-vvv", "-i", os.path.join(ROOT, "playbooks", "inventory", "demo.yml"),
                       os.path.join(ROOT, "playbooks", "demo.yml")],
                      _env(CRDB_TLS_DEMO_DIR=str(demo_dir), ANSIBLE_FORKS="10"), ROOT, log)
        started.append(proc)
        rc = _wait(proc, DEMO_TIMEOUT)
    output = log_path.read_text("utf-8", "replace")
    assert rc == 0, "demo.yml failed (rc %d):\n%s" % (rc, output[-6000:])
    secrets = _secret_files(str(demo_dir))
    # Three layouts x (3 nodes + 1 client dir + the PKI dir) hold keys.
    assert len(secrets) >= 3 * 10, secrets
    assert "PRIVATE KEY" not in output
    leaks = []
    for path in secrets:
        for needle in _needles(path):
            if needle in output:
                leaks.append("%s: %s..." % (os.path.relpath(path, str(demo_dir)), needle[:12]))
    assert not leaks, "key material of %d file(s) in the -vvv output: %s" % (len(leaks), leaks[:5])
    # Positive control: where -vvv prints the install's arguments (ansible-core 2.19 and 2.20 do,
    # certificates in the clear; 2.21 does not), the keys beside them are masked, so the search
    # above would have found a key sent the same way.
    shown = []
    for layout in ("standard", "split_node", "split_ca"):
        with open(os.path.join(str(demo_dir), layout, "node1", "node.crt"), "rb") as handle:
            if base64.b64encode(handle.read()).decode("ascii") in output:
                shown.append(layout)
    if shown:
        assert shown == ["standard", "split_node", "split_ca"], shown
        assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output


# --------------------------------------------------------------------------- (b)

def _openssl(*args):
    return subprocess.run([OPENSSL] + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30, check=False)


def _pem_count(path):
    with open(path) as handle:
        return handle.read().count("-----BEGIN CERTIFICATE-----")


def _public_key(path, is_key):
    args = ["pkey", "-in", path, "-pubout"] if is_key else ["x509", "-in", path, "-noout", "-pubkey"]
    result = _openssl(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_runs_at_once_cannot_fork_the_ca(tmp_path, started):
    pki = tmp_path / "pki"
    pki.mkdir(mode=0o700)
    playbook = tmp_path / "race.yml"
    playbook.write_text(RACE_PLAYBOOK)
    t0 = time.monotonic()
    procs, logs = [], []
    for index in range(2):
        log = open(tmp_path / ("run%d.out" % index), "wb")
        logs.append(log)
        procs.append(_start([ansible_tool(), "-i", "localhost,", str(playbook), "-e", "race_pki=%s" % pki],
                            _env(), str(tmp_path), log))
        started.append(procs[-1])
    codes = [_wait(proc, RACE_TIMEOUT) for proc in procs]
    for log in logs:
        log.close()
    outputs = [(tmp_path / ("run%d.out" % i)).read_text("utf-8", "replace") for i in range(2)]
    for code, output in zip(codes, outputs):
        assert code == 0, "a concurrent run failed (rc %d):\n%s" % (code, output[-4000:])

    # One CA: the signer holds exactly one certificate, the bundle that one CA.
    assert _pem_count(str(pki / "ca.signer.pem")) == 1
    assert _pem_count(str(pki / "ca.crt")) == 1
    signer = _openssl("x509", "-in", str(pki / "ca.signer.pem"), "-noout", "-fingerprint", "-sha256").stdout
    bundle = _openssl("x509", "-in", str(pki / "ca.crt"), "-noout", "-fingerprint", "-sha256").stdout
    assert signer and signer == bundle
    assert _public_key(str(pki / "ca.key"), True) == _public_key(str(pki / "ca.signer.pem"), False)

    # Everything issued verifies against ca.crt, and every key matches its certificate.
    issued = pki / "issued"
    certs = sorted(str(p) for p in issued.rglob("*.crt") if not p.name.startswith("ca"))
    assert len(certs) == 2 * 2 + 2 + 2, certs   # node.crt + client.root.crt per node, 2 user dirs
    for cert in certs:
        result = _openssl("verify", "-CAfile", str(pki / "ca.crt"), cert)
        assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), (cert, result.stdout,
                                                                                   result.stderr)
        assert _public_key(cert[:-4] + ".key", True) == _public_key(cert, False), "%s and its key differ" % cert
    for node in ("node1", "node2"):
        copies = [(issued / node / "ca.crt", pki / "ca.crt")]
        copies += [(issued / node / n, issued / "_users" / "root" / n) for n in ("client.root.crt", "client.root.key")]
        for copy, source in copies:
            assert copy.read_bytes() == source.read_bytes(), "%s differs from %s" % (copy, source)

    # The index: no serial twice, and every certificate on disk is in it.
    rows = [line.split("\t") for line in (pki / "ca.index.txt").read_text().splitlines() if line.strip()]
    serials = [row[3] for row in rows]
    assert len(serials) == len(set(serials)), "duplicate serials in ca.index.txt: %s" % serials
    for cert in certs:
        serial = _openssl("x509", "-in", cert, "-noout", "-serial").stdout.strip().split("=", 1)[1]
        assert serial.upper().lstrip("0") in set(s.upper().lstrip("0") for s in serials), (cert, serial)

    # The lock serialised the two runs: one issued everything, the other nothing.
    counts = sorted(int(m) for o in outputs for m in re.findall(r"issued_count=(\d+)", o))
    assert counts == [0, 4], counts
    assert len(rows) == 4
    assert time.monotonic() - t0 < RACE_TIMEOUT


# --------------------------------------------------------------------------- (c)

def _private_key_files(root):
    found = []
    for base, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(base, name), "rb") as handle:
                if b"PRIVATE KEY" in handle.read():
                    found.append(os.path.relpath(os.path.join(base, name), root))
    return sorted(found)


def _demo_node_keys(tmp_path, demo_dir, name, started, *extra):
    """Run demo.yml with crdb_tls_key_location=node; returns its output."""
    log_path = tmp_path / (name + ".out")
    with open(log_path, "wb") as log:
        proc = _start([ansible_tool()] + list(extra) +
                      ["-i", os.path.join(ROOT, "playbooks", "inventory", "demo.yml"),
                       os.path.join(ROOT, "playbooks", "demo.yml"), "-e", "crdb_tls_key_location=node"],
                      _env(CRDB_TLS_DEMO_DIR=str(demo_dir), ANSIBLE_FORKS="10"), ROOT, log)
        started.append(proc)
        rc = _wait(proc, DEMO_TIMEOUT)
    output = log_path.read_text("utf-8", "replace")
    assert rc == 0, "demo.yml (%s) failed (rc %d):\n%s" % (name, rc, output[-6000:])
    return output


def test_keys_made_on_the_nodes_stay_out_of_vvv_output_and_the_pki_dir(tmp_path, started):
    """crdb_tls_key_location=node: a -vvv run of the demo fleet, then a rerun that changes nothing."""
    demo_dir = tmp_path / "demo"
    demo_dir.mkdir(mode=0o700)
    output = _demo_node_keys(tmp_path, demo_dir, "first", started, "-vvv")
    assert "PRIVATE KEY" not in output
    for layout in ("standard", "split_node", "split_ca"):
        pki = os.path.join(str(demo_dir), layout, "pki")
        assert _private_key_files(pki) == sorted(["ca.key"] + (["ca-client.key"] if layout == "split_ca" else []))
        # The "hosts": three node dirs (node.key, client.node.key in the split layouts, client.root.key)
        # and the client dir (client.root.key).
        on_hosts = [p for p in _secret_files(os.path.join(str(demo_dir), layout)) if not p.startswith(pki + os.sep)]
        assert len(on_hosts) == 3 * (2 if layout == "standard" else 3) + 1, (layout, on_hosts)
        leaks = []
        for path in on_hosts:
            assert not os.path.basename(path).startswith(".crdb-tls-next."), path
            assert oct(os.stat(path).st_mode & 0o777) == "0o600", path
            leaks.extend("%s: %s..." % (os.path.relpath(path, str(demo_dir)), needle[:12])
                         for needle in _needles(path) if needle in output)
        assert not leaks, "key material of %d file(s) in the -vvv output: %s" % (len(leaks), leaks[:5])
    # Positive control: -vvv printed the CSRs the hosts returned (public, in the clear).
    assert output.count("BEGIN CERTIFICATE REQUEST") >= 3 * 4
    rerun = _demo_node_keys(tmp_path, demo_dir, "second", started)
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", rerun, re.M)
    changed_lines = [line for line in rerun.splitlines() if line.startswith("changed:") or line.startswith("TASK")]
    assert recap and all(changed == "0" for _host, changed in recap), (recap, changed_lines)
