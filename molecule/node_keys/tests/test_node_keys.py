"""crdb_tls_key_location: node. Every private key exists on its own host only,
with CockroachDB's modes; the controller's PKI dir holds no private key but the
CA's; no key made a second time by the idempotent converge; and a -vvv run of
the site playbook that rotates every key prints no key material.

Runs after test_fleet.py (the shared checks: exact file sets, owners, modes,
chains, keys matching their certificates, mutual TLS between the nodes).
"""

import glob
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))

import crdb_molecule as m  # noqa: E402  (after the sys.path lines)

ALL = m.NODES + m.CLIENTS
PENDING = ".crdb-tls-next."


def host_keys(name, refresh=False):
    """{path: public key PEM} of every *.key file on the host (inspect_host.py searches the whole disk)."""
    return m.inspect(name, refresh)["keys"]


def controller_private_keys():
    found = []
    for base, _dirs, files in os.walk(m.PKI_DIR):
        for name in files:
            path = os.path.join(base, name)
            if b"PRIVATE KEY" in m.read_controller(path):
                found.append(os.path.relpath(path, m.PKI_DIR))
    return sorted(found)


def test_no_private_key_in_the_controllers_pki_dir_but_the_cas():
    assert controller_private_keys() == ["ca.key"]
    issued = os.path.join(m.PKI_DIR, "issued")
    assert not glob.glob(os.path.join(issued, "**", "*.key*"), recursive=True)
    assert sorted(os.listdir(os.path.join(issued, "_clients"))) == m.CLIENTS


@pytest.mark.parametrize("name", ALL)
def test_keys_are_in_place_and_none_waits(name):
    keys = host_keys(name)
    assert keys, name
    assert not [p for p in keys if os.path.basename(p).startswith(PENDING)], keys


def test_every_key_is_on_its_own_host_only():
    """The same SQL user's key differs on each host: it was made there, not copied."""
    owners = {}
    for name in ALL:
        for path, public in host_keys(name).items():
            assert "BEGIN PUBLIC KEY" in public, (name, path, public)
            owners.setdefault(public, []).append("%s:%s" % (name, path))
    shared = dict((k, v) for k, v in owners.items() if len(v) > 1)
    assert not shared, shared
    expected = len(m.NODES) * len(m.node_files() - {n for n in m.node_files() if not n.endswith(".key")}) \
        + len(m.CLIENTS) * len(m.CLIENT_USERS)
    assert len(owners) == expected


def _playbook_env():
    env = dict(os.environ)
    config = os.path.join(m.EPHEMERAL, "ansible.cfg")
    if os.path.isfile(config):
        env["ANSIBLE_CONFIG"] = config
    env.setdefault("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
    env["ANSIBLE_FORCE_COLOR"] = "false"
    env["ANSIBLE_NOCOLOR"] = "true"
    return env


def test_a_vvv_rotation_prints_no_key_material():
    """Rotate every key with -vvv: the new keys' bodies appear nowhere in the output."""
    before = dict((name, host_keys(name)) for name in ALL)
    playbook = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "playbooks", "site.yml")
    proc = subprocess.run(["ansible-playbook", "-vvv", "-i", m.INVENTORY, playbook,
                           "-e", '{"crdb_tls_rotate_keys": ["all"]}'],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_playbook_env(), check=False,
                          universal_newlines=True)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    assert "PRIVATE KEY" not in out
    after = dict((name, host_keys(name, refresh=True)) for name in ALL)
    for name in ALL:
        assert set(after[name]) == set(before[name]), name
        for path, public in after[name].items():
            assert public != before[name][path], "%s:%s was not rotated" % (name, path)
        # The new private keys: no piece of their secret is in the output. The scenario's keys are
        # ECDSA P-256 (SEC1 PEM), whose private scalar is DER bytes 7-38, base64 characters 12-52
        # of the first line; the rest of the file repeats the public key, which CSRs rightly carry.
        for path in after[name]:
            first = m.sh(m.get_host(name), "cat %s" % m.q(path)).splitlines()[1]
            pieces = [first[i:i + 16] for i in range(12, 52 - 16 + 1, 4)]
            assert len(pieces) == 7 and all(len(p) == 16 for p in pieces)
            leaked = [p for p in pieces if p in out]
            assert not leaked, "%s:%s: %d pieces of the key in the -vvv output" % (name, path, len(leaked))
    assert controller_private_keys() == ["ca.key"]
