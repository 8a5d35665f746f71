"""The org_ca scenario: the cluster CA is an organisational intermediate
(crdb_tls_ca_cert = intermediate then root, made by prepare.yml with openssl).
Every leaf file carries the intermediate after the leaf; ca.crt holds only the
root; the chain verifies inside the containers with the intermediate taken
from node.crt, and does not without it.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))

import crdb_molecule as m  # noqa: E402  (after the sys.path line)

ORG = os.path.join(m.EPHEMERAL, "org")
D = m.CERTS_DIR


def controller_fingerprint(path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    return x509.load_pem_x509_certificate(m.read_controller(path)).fingerprint(hashes.SHA256()).hex()


@pytest.mark.parametrize("name", m.NODES)
def test_ca_crt_is_the_org_root_alone(name):
    listing = m.certs_dir(name)
    assert listing["ca.crt"]["count"] == 1, listing["ca.crt"]
    assert listing["ca.crt"]["fingerprint"] == controller_fingerprint(os.path.join(ORG, "root.crt"))
    assert "CN=Example Org Root CA" in listing["ca.crt"]["x509"]


@pytest.mark.parametrize("name", m.NODES)
def test_leaf_files_carry_the_intermediate_after_the_leaf(name):
    host = m.get_host(name)
    intermediate = controller_fingerprint(os.path.join(ORG, "intermediate.crt"))
    for leaf in ("node.crt", "client.root.crt"):
        # Split the file into its certificates, in order, and fingerprint each.
        out = m.sh(host, "cd /tmp && rm -f crdb-part-* && awk '/BEGIN CERT/{n++} {print > (\"crdb-part-\" n)}' "
                   "%s/%s && for f in crdb-part-*; do openssl x509 -in $f -noout -fingerprint -sha256 "
                   "-nameopt RFC2253 -subject; done" % (D, leaf))
        lines = out.splitlines()
        fingerprints = [l.split("=", 1)[1].replace(":", "").lower() for l in lines if "Fingerprint" in l]
        subjects = [l for l in lines if l.startswith("subject=")]
        assert len(fingerprints) == 2, out
        assert fingerprints[0] == m.certs_dir(name)[leaf]["fingerprint"], out   # the leaf first
        assert fingerprints[1] == intermediate, out                               # then the intermediate
        assert "CN=Example Org CockroachDB Intermediate CA" in subjects[1], out


@pytest.mark.parametrize("name", m.NODES)
def test_node_chain_needs_the_intermediate_from_node_crt(name):
    host = m.get_host(name)
    m.sh(host, "awk '/BEGIN CERT/{n++} n==2' %s/node.crt > /tmp/crdb-intermediate.pem" % D)
    ok = host.run("openssl verify -CAfile %s/ca.crt -untrusted /tmp/crdb-intermediate.pem %s/node.crt" % (D, D))
    assert ok.rc == 0 and ok.stdout.strip().endswith(": OK"), (ok.stdout, ok.stderr)
    without = host.run("openssl verify -CAfile %s/ca.crt %s/node.crt" % (D, D))
    assert without.rc != 0, without.stdout


def test_org_root_key_stays_out_of_the_pki_dir():
    """Only the intermediate's key was handed over: the root key is in no PKI file."""
    root_key = m.read_controller(os.path.join(ORG, "root.key"))
    for name in os.listdir(m.PKI_DIR):
        path = os.path.join(m.PKI_DIR, name)
        if os.path.isfile(path):
            assert m.read_controller(path) != root_key, name
