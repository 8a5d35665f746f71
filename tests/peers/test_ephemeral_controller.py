# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ephemeral controllers (AWX/AAP execution environments, CI runners): docs/execution-environments.md.

Each run comes from a fresh controller working copy: its own directory with
the playbook and inventory, the collection installed there from the built
tarball with ansible-galaxy, its own HOME (so nothing in ~/.ansible carries
over). The only thing the two runs share is the PKI dir, as a persistent
volume would hold it; the "hosts" (local certs dirs) are the same fleet.
The second run must change nothing on any host, and the CA must be the one
the first run made.

(a) The CA key lives in the PKI dir (the volume).
(b) An external signer (the organisation's CA, tests/fixtures/orgca) and keys
    made on the nodes: the PKI dir holds no private key at all.
"""

import glob
import os
import re
import shutil
import subprocess

import pytest
from peerlib import OPENSSL, ROOT, ansible_tool, fingerprint

MAKE_ORG_CA = os.path.join(ROOT, "tests", "fixtures", "orgca", "make-org-ca.sh")
TIMEOUT = 600

pytestmark = pytest.mark.skipif(OPENSSL is None or shutil.which("bash") is None, reason="needs openssl and bash")

INVENTORY = """\
all:
  children:
    cockroachdb_nodes:
      hosts:
        node1: {ansible_host: 127.0.0.1}
        node2: {ansible_host: 127.0.0.2}
    cockroachdb_clients:
      hosts:
        app1: {ansible_host: 127.0.0.1}
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""

PLAYBOOK = """\
---
- name: Nodes
  hosts: cockroachdb_nodes
  gather_facts: false
  vars: &common
    crdb_tls_owner: "{{ lookup('ansible.builtin.pipe', 'id -un') }}"
    crdb_tls_group: "{{ lookup('ansible.builtin.pipe', 'id -gn') }}"
    crdb_tls_sans_from_facts: false
    crdb_tls_pki_dir: "{{ pki_volume }}"
    crdb_tls_layout: standard
    crdb_tls_key_type: ecdsa
    crdb_tls_reload: false
  roles:
    - role: crdb.tls.node
      vars:
        crdb_tls_certs_dir: "{{ fleet }}/{{ inventory_hostname }}"

- name: Clients
  hosts: cockroachdb_clients
  gather_facts: false
  vars:
    <<: *common
    crdb_tls_client_users:
      - name: app
        os_user: "{{ lookup('ansible.builtin.pipe', 'id -un') }}"
        dir: "{{ fleet }}/app1-client"
  roles:
    - role: crdb.tls.client
"""


def tarball():
    found = sorted(glob.glob(os.path.join(ROOT, "build", "crdb-tls-*.tar.gz")))
    if not found:
        pytest.fail("no build/crdb-tls-*.tar.gz: run make build (make peers does)")
    return found[-1]


def fresh_controller(base, name):
    """A new working copy: playbook, inventory, the collection installed from the tarball, an empty HOME."""
    work = base / name
    (work / "home").mkdir(parents=True)
    (work / "inventory.yml").write_text(INVENTORY)
    (work / "site.yml").write_text(PLAYBOOK)
    env = controller_env(work)
    # --force: ansible-galaxy skips a collection it finds anywhere it looks
    # (a crdb.tls on sys.path counts), and a fresh controller's copy must be
    # the one from the tarball.
    proc = subprocess.run([ansible_tool("ansible-galaxy"), "collection", "install", "--offline", "--force",
                           "-p", str(work / "collections"), tarball()], env=env, cwd=str(work), check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    output = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, output
    assert os.path.isdir(str(work / "collections" / "ansible_collections" / "crdb" / "tls")), output
    return work


def controller_env(work):
    # Nothing of this checkout's: no ANSIBLE_* settings, no PYTHONPATH (make
    # peers points it at build/src, where crdb.tls is the working tree).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH"}
    env.update({"HOME": str(work / "home"), "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
                "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_COLLECTIONS_PATHS_WARNING": "0",
                "ANSIBLE_GALAXY_COLLECTIONS_PATH_WARNING": "0"})
    return env


def play(work, shared, *extra):
    cmd = [ansible_tool(), "-i", str(work / "inventory.yml"), str(work / "site.yml"),
           "-e", "pki_volume=%s" % shared["pki"], "-e", "fleet=%s" % shared["fleet"]] + list(extra)
    proc = subprocess.run(cmd, env=controller_env(work), cwd=str(work), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def recap_changed(output):
    return dict((m.group(1), int(m.group(2))) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M))


def fleet_fingerprints(fleet):
    return dict((os.path.relpath(path, fleet), fingerprint(path))
                for path in sorted(glob.glob(os.path.join(fleet, "*", "*.crt"))))


def two_fresh_controllers(tmp_path, *extra):
    shared = {"pki": str(tmp_path / "volume" / "pki"), "fleet": str(tmp_path / "fleet")}
    first = fresh_controller(tmp_path, "controller-1")
    rc, out1 = play(first, shared, *extra)
    assert rc == 0, out1[-6000:]
    assert recap_changed(out1).get("node1", 0) > 0, out1[-3000:]
    issued = fleet_fingerprints(shared["fleet"])
    assert {"node1/node.crt", "node2/node.crt", "app1-client/client.app.crt"} <= set(issued), issued
    shutil.rmtree(str(first))   # the first controller is gone, as an EE container is after its job

    second = fresh_controller(tmp_path, "controller-2")
    rc, out2 = play(second, shared, *extra)
    assert rc == 0, out2[-6000:]
    changed = recap_changed(out2)
    assert set(changed) == {"node1", "node2", "app1"} and set(changed.values()) == {0}, out2[-3000:]
    assert fleet_fingerprints(shared["fleet"]) == issued
    return shared


def test_ca_key_on_a_persistent_volume(tmp_path):
    shared = two_fresh_controllers(tmp_path)
    assert os.path.isfile(os.path.join(shared["pki"], "ca.key"))
    for host in ("node1", "node2"):
        result = subprocess.run([OPENSSL, "verify", "-CAfile", os.path.join(shared["pki"], "ca.crt"),
                                 os.path.join(shared["fleet"], host, "node.crt")],
                                capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), (result.stdout, result.stderr)


def test_external_signer_and_node_keys_leave_no_secret_on_the_controller(tmp_path):
    org = tmp_path / "org"
    subprocess.run(["bash", MAKE_ORG_CA, str(org)], check=True, capture_output=True, timeout=120)
    command = '["%s", "%s"]' % (org / "sign.sh", org / "ca.cnf")
    shared = two_fresh_controllers(
        tmp_path, "-e", "crdb_tls_layout=split_node", "-e", "crdb_tls_key_location=node",
        "-e", "crdb_tls_ca_cert=%s" % (org / "chain.pem"), "-e", "{\"crdb_tls_signer_command\": %s}" % command)
    secrets = []
    for base, _dirs, names in os.walk(shared["pki"]):
        for name in names:
            with open(os.path.join(base, name), "rb") as handle:
                if name.endswith((".key", ".pk8")) or b"PRIVATE KEY" in handle.read():
                    secrets.append(os.path.join(base, name))
    assert secrets == [], "the PKI dir holds private keys: %s" % secrets
    result = subprocess.run([OPENSSL, "verify", "-CAfile", str(org / "root.crt"), "-untrusted",
                             os.path.join(shared["fleet"], "node1", "node.crt"),
                             os.path.join(shared["fleet"], "node1", "node.crt")],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
