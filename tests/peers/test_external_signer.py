# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signing without the CA key, end to end with ansible-playbook and a real organisational CA.

The CA is made by tests/fixtures/orgca/make-org-ca.sh with the openssl CLI (a
root and an issuing intermediate) and signs with ``openssl ca``; its policy
refuses CN=node in a server certificate request. The fleet is two "nodes" on
this machine (local connection, one certs dir each) converged by the node
role, as a user would write it from docs/external-signers.md:

(a) the offline hand-off in two steps: the first -vvv run writes the CSRs
    and stops with the list (nothing installed); every CSR is signed with
    ``openssl ca``; the second -vvv run vets and installs; a third run
    changes nothing. No key material appears in any of the -vvv outputs.
(b) the signer command: the standard layout is refused by the CA's policy
    with its own message; split_node is signed, installed and verifies with
    ``openssl verify``.
"""

import base64
import os
import re
import shutil
import subprocess

import pytest
from peerlib import OPENSSL, ROOT, ansible_tool, collections_path

MAKE_ORG_CA = os.path.join(ROOT, "tests", "fixtures", "orgca", "make-org-ca.sh")
TIMEOUT = 600
MIN_LINE = 24

pytestmark = pytest.mark.skipif(OPENSSL is None or shutil.which("bash") is None, reason="needs openssl and bash")

INVENTORY = """\
all:
  children:
    cockroachdb_nodes:
      hosts:
        node1: {ansible_host: 127.0.0.1}
        node2: {ansible_host: 127.0.0.2}
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""

PLAYBOOK = """\
---
- name: Nodes signed by the organisation's CA
  hosts: cockroachdb_nodes
  gather_facts: false
  vars:
    crdb_tls_owner: "{{ lookup('ansible.builtin.pipe', 'id -un') }}"
    crdb_tls_group: "{{ lookup('ansible.builtin.pipe', 'id -gn') }}"
    crdb_tls_sans_from_facts: false
    crdb_tls_certs_dir: "{{ work }}/certs/{{ inventory_hostname }}"
    crdb_tls_pki_dir: "{{ work }}/pki"
    crdb_tls_ca_cert: "{{ work }}/org/chain.pem"
    crdb_tls_key_type: ecdsa
  roles:
    - role: crdb.tls.node
"""


@pytest.fixture
def work(tmp_path):
    subprocess.run(["bash", MAKE_ORG_CA, str(tmp_path / "org")], check=True, capture_output=True, timeout=120)
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    return tmp_path


def play(work, *extra, **kwargs):
    """Run the playbook; returns (rc, output)."""
    env = dict(os.environ)
    env.update({"ANSIBLE_COLLECTIONS_PATH": collections_path(), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_LOCALHOST_WARNING": "0"})
    cmd = [ansible_tool()] + (["-vvv"] if kwargs.get("verbose") else []) + [
        "-i", str(work / "inventory.yml"), str(work / "site.yml"), "-e", "work=%s" % work] + list(extra)
    proc = subprocess.run(cmd, env=env, cwd=str(work), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=TIMEOUT, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def extra_vars(**values):
    out = []
    for name, value in values.items():
        out += ["-e", "%s=%s" % (name, value)]
    return out


def openssl_verify(certs_dir, name):
    path = os.path.join(certs_dir, name)
    return subprocess.run([OPENSSL, "verify", "-CAfile", os.path.join(certs_dir, "ca.crt"), "-untrusted", path,
                           path], capture_output=True, text=True, timeout=30, check=False)


def key_needles(root):
    """Every key file under ``root`` and what would betray it in a log (PEM body lines, base64 of the file)."""
    found = {}
    for base, _dirs, names in os.walk(root):
        for name in names:
            if not name.endswith(".key"):
                continue
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                data = handle.read()
            needles = [base64.b64encode(data).decode("ascii")]
            needles += [line.strip() for line in data.decode("ascii").splitlines()
                        if line.strip() and not line.startswith("-----") and len(line.strip()) >= MIN_LINE]
            found[path] = needles
    return found


def assert_no_key_material(outputs, roots):
    joined = "\n".join(outputs)
    assert "PRIVATE KEY" not in joined
    checked = 0
    for root in roots:
        for path, needles in key_needles(root).items():
            checked += 1
            for needle in needles:
                assert needle not in joined, "key material of %s in the -vvv output" % path
    return checked


def recap_changed(output):
    return dict((m.group(1), int(m.group(2))) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M))


def test_offline_handoff_two_steps_and_no_keys_in_vvv(work):
    csr_dir = work / "csr"
    opts = extra_vars(crdb_tls_layout="split_node", crdb_tls_csr_dir=str(csr_dir))

    rc, first = play(work, *opts, verbose=True)
    assert rc != 0, first[-4000:]
    assert "5 certificate request(s) await signing by the organisation's CA; nothing was installed" in first
    names = ["node1.node", "node1.client.node", "node2.node", "node2.client.node", "client.root"]
    for name in names:
        assert str(csr_dir / (name + ".csr")) in first, name
        key = work / "pki" / "handoff-keys" / (name + ".key")
        assert oct(os.stat(str(key)).st_mode & 0o777) == "0o600", key
    assert "(node_server, CN=node1; SANs node1, 127.0.0.1, localhost" in first
    assert not (work / "certs").exists() or not any(os.listdir(str(d)) for d in (work / "certs").iterdir())
    assert not (work / "pki" / "ca.key").exists()

    # The ticket process: the organisation's CA signs every CSR with openssl ca.
    sign = str(work / "org" / "sign.sh")
    for name in names:
        with open(str(csr_dir / (name + ".csr")), "rb") as handle:
            signed = subprocess.run([sign, str(work / "org" / "ca.cnf")], input=handle.read(), capture_output=True,
                                    timeout=60, check=True).stdout
        (csr_dir / (name + ".crt")).write_bytes(signed)

    rc, second = play(work, *opts, verbose=True)
    assert rc == 0, second[-6000:]
    for host in ("node1", "node2"):
        certs_dir = str(work / "certs" / host)
        assert sorted(os.listdir(certs_dir)) == sorted(["ca.crt", "node.crt", "node.key", "client.node.crt",
                                                        "client.node.key", "client.root.crt", "client.root.key"])
        for name in ("node.crt", "client.node.crt", "client.root.crt"):
            result = openssl_verify(certs_dir, name)
            assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), (name, result.stdout,
                                                                                       result.stderr)
        with open(os.path.join(certs_dir, "ca.crt")) as handle:
            assert handle.read() == (work / "org" / "root.crt").read_text()
    assert os.listdir(str(work / "pki" / "handoff-keys")) == []

    rc, third = play(work, *opts)
    assert rc == 0, third[-4000:]
    assert recap_changed(third) and set(recap_changed(third).values()) == {0}, third[-3000:]

    checked = assert_no_key_material([first, second], [str(work / "certs"), str(work / "pki")])
    assert checked >= 10


def test_signer_command_policy_refuses_standard_and_signs_split_node(work):
    command = '["%s", "%s"]' % (work / "org" / "sign.sh", work / "org" / "ca.cnf")
    rc, refused = play(work, "-e", "crdb_tls_layout=standard", "-e", "{\"crdb_tls_signer_command\": %s}" % command)
    assert rc != 0
    assert "policy violation: CN=node is refused in a server certificate request" in refused
    assert "2 certificate(s) could not be signed or were refused; nothing was written" in refused
    assert "node1: node.crt: signer command %s" % (work / "org" / "sign.sh") in refused
    assert "needs the split_node layout" in refused
    assert not (work / "certs" / "node1" / "node.crt").exists()

    rc, done = play(work, "-e", "crdb_tls_layout=split_node", "-e", "{\"crdb_tls_signer_command\": %s}" % command,
                    verbose=True)
    assert rc == 0, done[-6000:]
    certs_dir = str(work / "certs" / "node1")
    for name in ("node.crt", "client.node.crt", "client.root.crt"):
        result = openssl_verify(certs_dir, name)
        assert result.returncode == 0, (name, result.stdout, result.stderr)
    server = subprocess.run([OPENSSL, "x509", "-in", os.path.join(certs_dir, "node.crt"), "-noout", "-subject",
                             "-issuer", "-nameopt", "RFC2253"], capture_output=True, text=True, check=True).stdout
    assert "CN=node1" in server and "CN=Example Org Issuing CA" in server
    assert_no_key_material([done], [str(work / "certs"), str(work / "pki")])
    rc, again = play(work, "-e", "crdb_tls_layout=split_node", "-e", "{\"crdb_tls_signer_command\": %s}" % command)
    assert rc == 0 and set(recap_changed(again).values()) == {0}, again[-3000:]
