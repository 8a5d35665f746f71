# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/rotate_ca.yml end to end on a local fleet, checked with the openssl CLI.

Two nodes and a client host, all this machine (local connection, one certs
dir each, no reload: no process is signalled), split_ca layout with both CAs
rotated. What is checked:

- phase 1 cut short (one node's install fails) leaves one new CA and the
  rotation in state "started"; site.yml is then refused with a message
  saying why; rerunning phase 1 completes it with the same new CA, and a
  third run changes nothing;
- phase 3 is refused before phase 2;
- phase 2 re-issues every leaf from the new CAs (leaves verified by
  ``openssl verify`` against the new CA alone), a rerun changes nothing;
- phase 3 leaves bundles of the new CA only (the old leaves no longer
  verify), a rerun changes nothing; site.yml afterwards changes nothing.

Uses the collection at ANSIBLE_COLLECTIONS_PATH (``make peers`` sets
build/collections), else the working tree through build/src.
"""

import json
import os
import re
import shutil
import subprocess

import pytest
from peerlib import OPENSSL, ROOT, ansible_tool, collections_path

ROTATE = os.path.join(ROOT, "playbooks", "rotate_ca.yml")
SITE = os.path.join(ROOT, "playbooks", "site.yml")
RUN_TIMEOUT = 300

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl CLI")

INVENTORY = """\
all:
  children:
    cockroachdb_nodes:
      hosts:
        node1: {ansible_host: 127.0.0.1}
        node2: {ansible_host: 127.0.0.2}
    cockroachdb_clients:
      hosts:
        client1: {}
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    ansible_become: false
    base: %(base)s
    crdb_tls_layout: split_ca
    crdb_tls_pki_dir: "{{ base }}/pki"
    crdb_tls_certs_dir: "{{ base }}/{{ inventory_hostname }}/certs"
    crdb_tls_owner: "%(user)s"
    crdb_tls_group: "%(group)s"
    crdb_tls_reload: false
    crdb_tls_key_type: ecdsa
    crdb_tls_sans_from_facts: false
    crdb_tls_client_users:
      - {name: root, os_user: "%(user)s", dir: "{{ base }}/{{ inventory_hostname }}/root-certs"}
"""


class Fleet(object):
    def __init__(self, base):
        import grp
        import pwd
        self.base = base
        self.inventory = os.path.join(base, "inventory.yml")
        user = pwd.getpwuid(os.getuid()).pw_name
        with open(self.inventory, "w") as handle:
            handle.write(INVENTORY % {"base": base, "user": user, "group": grp.getgrgid(os.getgid()).gr_name})
        self.env = dict(os.environ)
        self.env.update({"ANSIBLE_COLLECTIONS_PATH": collections_path(), "ANSIBLE_NOCOLOR": "1",
                         "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
                         "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_FORKS": "5"})

    def run(self, playbook, *extra, **kwargs):
        cmd = [ansible_tool(), "-i", self.inventory, playbook]
        for item in extra:
            cmd += ["-e", item]
        proc = subprocess.run(cmd, env=self.env, cwd=self.base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=RUN_TIMEOUT, check=False)
        out = proc.stdout.decode("utf-8", "replace")
        want = kwargs.get("rc", 0)
        assert (proc.returncode == 0) == (want == 0), \
            "%s %s: rc %d\n%s" % (playbook, extra, proc.returncode, out[-8000:])
        return out

    def rotate(self, phase, *extra, **kwargs):
        return self.run(ROTATE, "crdb_tls_rotate_phase=%s" % phase, *extra, **kwargs)

    def path(self, *parts):
        return os.path.join(self.base, *parts)

    def state(self, prefix):
        with open(self.path("pki", prefix + ".rotation.json")) as handle:
            return json.load(handle)

    def fingerprints(self, *parts):
        with open(self.path(*parts)) as handle:
            pem = handle.read()
        fps = []
        for block in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S):
            proc = subprocess.run([OPENSSL, "x509", "-noout", "-fingerprint", "-sha256"], input=block.encode(),
                                  stdout=subprocess.PIPE, check=True, timeout=30)
            fps.append(proc.stdout.decode().strip().split("=", 1)[1].replace(":", "").lower())
        return fps


def _verify(cafile, cert):
    proc = subprocess.run([OPENSSL, "verify", "-CAfile", cafile, cert], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30, check=False)
    return proc.returncode == 0, proc.stdout.decode()


def _changed(out):
    """Sum of changed= over the PLAY RECAP."""
    return sum(int(n) for n in re.findall(r"changed=(\d+)", out.split("PLAY RECAP", 1)[-1]))


LEAVES = [("node1", "certs", "node.crt", "ca"), ("node2", "certs", "node.crt", "ca"),
          ("node1", "certs", "client.node.crt", "ca-client"), ("node2", "certs", "client.root.crt", "ca-client"),
          ("client1", "root-certs", "client.root.crt", "ca-client")]


def test_rotation_phases_resume_and_are_idempotent(tmp_path):
    fleet = Fleet(str(tmp_path))
    fleet.run(SITE)
    old = {"ca": fleet.fingerprints("pki", "ca.crt"), "ca-client": fleet.fingerprints("pki", "ca-client.crt")}
    assert len(old["ca"]) == 1 and len(old["ca-client"]) == 1
    old_leaf = fleet.path("old-node.crt")
    shutil.copy(fleet.path("node1", "certs", "node.crt"), old_leaf)

    # Phase 1 cut short: node2's certs dir cannot be made (under /proc).
    broken = "crdb_tls_certs_dir={{ '/proc/crdb-tls-no-such/certs' if inventory_hostname == 'node2' " \
             "else base ~ '/' ~ inventory_hostname ~ '/certs' }}"
    out = fleet.rotate(1, broken, rc=2)
    assert "node2" in out and "failed=1" in out
    new = {"ca": fleet.state("ca")["new"], "ca-client": fleet.state("ca-client")["new"]}
    for prefix in ("ca", "ca-client"):
        state = fleet.state(prefix)
        assert state["state"] == "started" and state["previous"] == old[prefix], state
        assert fleet.fingerprints("pki", prefix + ".crt") == [new[prefix]] + old[prefix]
    # The client never got the new bundle; site.yml is refused meanwhile.
    assert fleet.fingerprints("client1", "root-certs", "ca.crt") == old["ca"]
    out = fleet.run(SITE, rc=2)
    assert "is in phase 1: the new CA %s is not yet trusted by every host" % new["ca"][:16] in out, out[-3000:]

    # Rerun: the same new CAs, every host trusts new and old, no leaf changed.
    fleet.rotate(1)
    for prefix in ("ca", "ca-client"):
        assert fleet.state(prefix)["state"] == "trusted" and fleet.state(prefix)["new"] == new[prefix]
        assert fleet.state(prefix)["history"] == []
    for host in ("node1", "node2"):
        assert fleet.fingerprints(host, "certs", "ca.crt") == [new["ca"]] + old["ca"]
        assert fleet.fingerprints(host, "certs", "ca-client.crt") == [new["ca-client"]] + old["ca-client"]
    assert fleet.fingerprints("client1", "root-certs", "ca.crt") == [new["ca"]] + old["ca"]
    with open(fleet.path("node1", "certs", "node.crt"), "rb") as a, open(old_leaf, "rb") as b:
        assert a.read() == b.read(), "phase 1 must not re-issue leaves"
    assert _changed(fleet.rotate(1)) == 0

    out = fleet.rotate(3, rc=2)
    assert "phase 2 of the CA rotation of ca is not recorded as done (state trusted)" in out, out[-3000:]

    # Phase 2: every leaf from the new CAs.
    fleet.rotate(2)
    assert fleet.state("ca")["state"] == fleet.state("ca-client")["state"] == "reissued"
    for host, sub, name, prefix in LEAVES:
        ca_file = fleet.path(host, sub, "new-%s.crt" % prefix)
        with open(fleet.path("pki", prefix + ".signer.pem")) as src, open(ca_file, "w") as dst:
            dst.write(src.read())
        ok, msg = _verify(ca_file, fleet.path(host, sub, name))
        assert ok, "%s/%s not from the new %s: %s" % (host, name, prefix, msg)
    assert _changed(fleet.rotate(2)) == 0

    # Phase 3: the old CAs out of every bundle.
    fleet.rotate(3)
    for host in ("node1", "node2"):
        assert fleet.fingerprints(host, "certs", "ca.crt") == [new["ca"]]
        assert fleet.fingerprints(host, "certs", "ca-client.crt") == [new["ca-client"]]
        ok, msg = _verify(fleet.path(host, "certs", "ca.crt"), fleet.path(host, "certs", "node.crt"))
        assert ok, msg
    assert fleet.fingerprints("client1", "root-certs", "ca.crt") == [new["ca"]]
    ok, msg = _verify(fleet.path("node1", "certs", "ca.crt"), old_leaf)
    assert not ok, "the old node.crt still verifies against the final bundle: %s" % msg
    assert fleet.state("ca")["state"] == "finished"
    assert _changed(fleet.rotate(3)) == 0
    assert _changed(fleet.run(SITE)) == 0
