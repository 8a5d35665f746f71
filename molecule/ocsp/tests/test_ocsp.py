"""The ocsp scenario: the responder deployed by crdb.tls.ocsp_responder, asked
with `openssl ocsp` (a real OCSP client) from the node, answers `good` for the
certificates in use and `revoked` (keyCompromise) for alice's certificate
revoked by playbooks/revoke.yml; it had answered `good` for it before. Every
answer's signature is verified against the cluster CA (`Response verify OK`).
The responder runs as an unprivileged user with an owner-only key.
"""

import json
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))

import crdb_molecule as m  # noqa: E402  (after the sys.path line)

NODE = "ocsp-node1"
RESPONDER = "ocsp-responder1"
CERTS = "/var/lib/cockroach/certs"
RESPONDER_DIR = "/var/lib/crdb-tls-ocsp/ca"
RESPONDER_USER = "crdb-ocsp"
PORT = 8888
BEFORE = "/root/client.alice.before-revoke.crt"


def responder_address():
    out = subprocess.run(["podman", "inspect", RESPONDER], stdout=subprocess.PIPE, check=True, timeout=60).stdout
    settings = json.loads(out)[0]["NetworkSettings"]
    return settings.get("IPAddress") or list(settings["Networks"].values())[0]["IPAddress"]


URL = "http://%s:%d" % (responder_address(), PORT)


def query(cert, ca_file=CERTS + "/ca.crt"):
    """`openssl ocsp` on the node for ``cert``: (status, full text)."""
    node = m.get_host(NODE)
    text = m.sh(node, "openssl ocsp -issuer %s/ca.crt -CAfile %s -cert %s -url %s -timeout 10 -resp_text 2>&1"
                % (CERTS, ca_file, cert, URL))
    found = re.search(r"^%s: (\w+)$" % re.escape(cert), text, re.M)
    assert found, text
    return found.group(1), text


def serial(host, cert):
    return m.sh(host, "openssl x509 -noout -serial -in %s" % cert).strip().split("=", 1)[1].upper()


@pytest.mark.parametrize("name", ["node.crt", "client.root.crt", "client.alice.crt"])
def test_installed_certificates_carry_the_responder_url(name):
    node = m.get_host(NODE)
    uri = m.sh(node, "openssl x509 -noout -ocsp_uri -in %s/%s" % (CERTS, name)).strip()
    assert uri == URL


def test_responder_runs_as_an_unprivileged_user():
    responder = m.get_host(RESPONDER)
    uid = m.sh(responder, "id -u %s" % RESPONDER_USER).strip()
    assert uid != "0"
    rows = [line.split(None, 1) for line in m.sh(responder, "ps -eo uid=,args=").splitlines()]
    ocsp = [r for r in rows if len(r) == 2 and re.match(r"\S*openssl ocsp ", r[1])]
    assert len(ocsp) == 1, rows
    assert ocsp[0][0] == uid, rows
    assert "-index %s/index.txt" % RESPONDER_DIR in ocsp[0][1]
    assert "-port %d" % PORT in ocsp[0][1]
    supervisor = m.sh(responder, "cat %s/responder.pid" % RESPONDER_DIR).strip()
    assert m.sh(responder, "ps -o uid= -p %s" % supervisor).strip() == uid


def test_responder_key_is_owner_only():
    responder = m.get_host(RESPONDER)
    key = responder.file(RESPONDER_DIR + "/ocsp.key")
    assert key.user == RESPONDER_USER and key.mode == 0o600
    directory = responder.file(RESPONDER_DIR)
    assert directory.user == RESPONDER_USER and directory.mode == 0o700
    assert "PRIVATE KEY" in m.sh(responder, "head -n1 %s/ocsp.key" % RESPONDER_DIR)


def test_responder_certificate_is_an_ocsp_signer():
    responder = m.get_host(RESPONDER)
    text = m.sh(responder, "openssl x509 -noout -text -in %s/ocsp.crt" % RESPONDER_DIR)
    assert "OCSP Signing" in text and "OCSP No Check" in text
    m.sh(responder, "openssl verify -CAfile %s/issuer.crt -purpose ocsphelper %s/ocsp.crt"
         % (RESPONDER_DIR, RESPONDER_DIR))


def test_responder_serves_the_controllers_index():
    responder = m.get_host(RESPONDER)
    with open(os.path.join(m.PKI_DIR, "ca.index.txt")) as handle:
        controller = handle.read()
    assert m.sh(responder, "cat %s/index.txt" % RESPONDER_DIR) == controller


def test_alice_was_good_before_the_revocation():
    node = m.get_host(NODE)
    text = m.sh(node, "cat /root/ocsp-before-revoke.txt")
    assert "Response verify OK" in text, text
    assert re.search(r"^%s: good$" % re.escape(BEFORE), text, re.M), text


def test_revoked_certificate_is_revoked():
    state, text = query(BEFORE)
    assert state == "revoked", text
    assert "Response verify OK" in text, text
    assert "Reason: keyCompromise" in text, text
    with open(os.path.join(m.PKI_DIR, "ca.index.txt")) as handle:
        rows = [line.split("\t") for line in handle.read().splitlines()]
    old = serial(m.get_host(NODE), BEFORE)
    assert [r[0] for r in rows if r[3].upper() == old] == ["R"], rows


@pytest.mark.parametrize("name", ["client.alice.crt", "client.root.crt", "node.crt"])
def test_certificates_in_use_are_good(name):
    state, text = query("%s/%s" % (CERTS, name))
    assert state == "good", text
    assert "Response verify OK" in text, text


def test_alice_has_a_replacement():
    node = m.get_host(NODE)
    assert serial(node, BEFORE) != serial(node, CERTS + "/client.alice.crt")
    old_key = m.sh(node, "openssl x509 -noout -pubkey -in %s" % BEFORE)
    new_key = m.sh(node, "openssl x509 -noout -pubkey -in %s/client.alice.crt" % CERTS)
    assert old_key != new_key


def test_answers_do_not_verify_against_another_ca():
    node = m.get_host(NODE)
    m.sh(node, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=Other "
               "-keyout /tmp/other.key -out /tmp/other.crt -days 1 2>/dev/null")
    result = node.run("openssl ocsp -issuer %s/ca.crt -CAfile /tmp/other.crt -cert %s/node.crt -url %s -timeout 10 2>&1"
                      % (CERTS, CERTS, URL))
    assert "Response verify OK" not in result.stdout
    assert "Response Verify Failure" in result.stdout, result.stdout
