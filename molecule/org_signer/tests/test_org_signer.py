"""The org_signer scenario: split_node signed by an organisational CA through
its `openssl ca` signer command (made by prepare.yml with
tests/fixtures/orgca/make-org-ca.sh); the controller holds only the CA
certificates. The shared checks (test_fleet.py) cover the installed sets,
modes, names, usages, chains and mutual TLS; here: what the organisation's
CA signed, the chains with openssl verify, and the standard layout refused
by the CA's policy.
"""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))

import crdb_molecule as m  # noqa: E402  (after the sys.path line)

ORG = os.path.join(m.EPHEMERAL, "org")
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D = m.CERTS_DIR


def org_index():
    with open(os.path.join(ORG, "index.txt")) as handle:
        return handle.read().splitlines()


def test_controller_holds_only_the_org_certificates():
    names = sorted(os.listdir(m.PKI_DIR))
    assert "ca.key" not in names and "handoff-keys" not in names, names
    assert m.read_controller(os.path.join(m.PKI_DIR, "ca.crt")) == m.read_controller(os.path.join(ORG, "root.crt"))


def test_the_org_ca_signed_each_server_cert_once_with_the_host_as_cn():
    """Idempotence did not request a valid certificate again; no server cert carries CN=node."""
    index = org_index()
    for name in m.NODES:
        assert len([l for l in index if l.endswith("/CN=%s" % name)]) == 1, index


@pytest.mark.parametrize("name", m.NODES)
def test_openssl_verify_in_the_container(name):
    host = m.get_host(name)
    for leaf in ("node.crt", "client.node.crt", "client.root.crt"):
        ok = host.run("openssl verify -CAfile %s/ca.crt -untrusted %s/%s %s/%s" % (D, D, leaf, D, leaf))
        assert ok.rc == 0 and ok.stdout.strip().endswith(": OK"), (leaf, ok.stdout, ok.stderr)
    issuer = m.sh(host, "openssl x509 -in %s/node.crt -noout -issuer -subject -nameopt RFC2253" % D)
    assert "issuer=CN=Example Org Issuing CA,O=Example Org" in issuer, issuer
    assert "subject=CN=%s" % name in issuer, issuer


@pytest.mark.parametrize("name", m.CLIENTS)
def test_client_certs_verify(name):
    host = m.get_host(name)
    for user in m.CLIENT_USERS:
        d = m.certs_dir(name, "~%s/.cockroach-certs" % user)
        assert set(d) - {"."} == {"ca.crt", "client.%s.crt" % user, "client.%s.key" % user}, d
    out = m.sh(host, "cd ~app/.cockroach-certs && openssl verify -CAfile ca.crt -untrusted client.app.crt "
                     "client.app.crt")
    assert out.strip().endswith(": OK"), out


def test_standard_layout_is_refused_by_the_org_policy(tmp_path):
    env = dict(os.environ)
    env["ANSIBLE_NOCOLOR"] = "1"
    cmd = ["ansible-playbook", "-i", m.INVENTORY, os.path.join(SCENARIO, "standard-refused.yml"),
           "-e", "crdb_tls_layout=standard", "-e", "crdb_tls_pki_dir=%s" % (tmp_path / "pki"),
           "-e", "crdb_tls_certs_dir=/var/lib/cockroach/certs-standard"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "policy violation: CN=node is refused in a server certificate request" in out, out[-4000:]
    for name in m.NODES:
        assert "%s: node.crt: signer command" % name in out, out[-4000:]
        assert not m.get_host(name).file("/var/lib/cockroach/certs-standard").exists
    assert "needs the split_node layout" in out
