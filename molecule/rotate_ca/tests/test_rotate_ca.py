"""The rotate_ca scenario: zero failed handshakes while both CAs of a split_ca
cluster were rotated (phases 1, 2, 3 of playbooks/rotate_ca.yml), and the
final state: every bundle holds the new CA only, every leaf comes from it.

The client loop (handshake_loop.py, started by side_effect.yml on the client
host) is stopped here first; its counts are printed (molecule runs pytest
with -s) and kept in <ephemeral>/handshake-counts.json.
"""

import json
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))

import crdb_molecule as m  # noqa: E402  (after the sys.path line)

STATE = "/var/tmp/rot-loop"
LABELS = ["baseline", "phase1", "after1", "phase2", "after2", "phase3", "after3"]
# Handshakes each node must have had while each rotation phase ran (a phase
# run takes several seconds; the loop makes several handshakes a second).
MIN_DURING_PHASE = 5
MIN_BETWEEN = 20
LOG = m.STANDIN_LOG
STATUS = m.STANDIN_STATUS

_COUNTS = {}


def counts():
    """Stop the loop (once), wait for its final write and return its counts."""
    if not _COUNTS:
        host = m.get_host(m.CLIENTS[0])
        m.sh(host, "touch %s/stop" % STATE)
        data = {}
        for _attempt in range(300):
            data = json.loads(m.sh(host, "cat %s/counts.json" % STATE))
            if data.get("stopped"):
                break
            time.sleep(0.1)
        assert data.get("stopped"), "the client loop did not stop: %s" % data
        _COUNTS.update(data)
        with open(os.path.join(m.EPHEMERAL, "handshake-counts.json"), "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        print("\n=== client loop (%s, user %s, %s) ===" % (m.CLIENTS[0], data["user"], data["certs_dir"]))
        print("%-8s %-22s %7s %7s %7s" % ("label", "node", "ok", "failed", "torn"))
        for label in LABELS + sorted(set(data["phases"]) - set(LABELS)):
            for address, c in sorted(data["phases"].get(label, {}).items()):
                print("%-8s %-22s %7d %7d %7d" % (label, address, c["ok"], c["failed"], c["torn"]))
        print("errors: %s" % (data["errors"] or "none"))
        print("torn reads (cert and key read from disk did not match; retried, not a handshake): %s"
              % (data["torn_examples"] or "none"))
    return _COUNTS


def test_zero_failed_handshakes():
    data = counts()
    failed = dict(((label, address), c["failed"]) for label, nodes in data["phases"].items()
                  for address, c in nodes.items() if c["failed"])
    assert failed == {}, "failed handshakes: %s; first errors: %s" % (failed, data["errors"])
    assert data["errors"] == []


def test_handshakes_with_every_node_in_every_phase():
    data = counts()
    assert len(data["addresses"]) == len(m.NODES)
    for label in LABELS:
        want = MIN_DURING_PHASE if label.startswith("phase") else MIN_BETWEEN
        for address in data["addresses"]:
            got = data["phases"].get(label, {}).get(address, {}).get("ok", 0)
            assert got >= want, "%s: %d handshakes with %s, want at least %d" % (label, got, address, want)


def _controller_state(prefix):
    with open(os.path.join(m.PKI_DIR, prefix + ".rotation.json")) as handle:
        return json.load(handle)


@pytest.mark.parametrize("prefix", ["ca", "ca-client"])
def test_controller_rotation_finished(prefix):
    state = _controller_state(prefix)
    assert state["state"] == "finished", state
    assert state["history"] == [], state   # one rotation: phase 1 made one new CA
    assert len(state["previous"]) == 1 and state["new"] not in state["previous"], state
    bundle = m.read_controller(os.path.join(m.PKI_DIR, prefix + ".crt")).decode()
    assert bundle.count("BEGIN CERTIFICATE") == 1


def _fingerprints(host, path):
    out = m.sh(host, "python3 -c %s %s" % (m.q(
        "import sys, ssl, hashlib, re\n"
        "pem = open(sys.argv[1]).read()\n"
        "for block in re.findall(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----', pem, re.S):\n"
        "    print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(block)).hexdigest())\n"), m.q(path)))
    return out.split()


@pytest.mark.parametrize("name", m.NODES)
def test_node_bundles_hold_only_the_new_cas(name):
    host = m.get_host(name)
    assert _fingerprints(host, m.CERTS_DIR + "/ca.crt") == [_controller_state("ca")["new"]]
    assert _fingerprints(host, m.CERTS_DIR + "/ca-client.crt") == [_controller_state("ca-client")["new"]]


@pytest.mark.parametrize("name", m.CLIENTS)
@pytest.mark.parametrize("user", m.CLIENT_USERS)
def test_client_bundles_hold_only_the_new_ca(name, user):
    host = m.get_host(name)
    home = m.sh(host, "getent passwd %s | cut -d: -f6" % user).strip()
    assert _fingerprints(host, home + "/.cockroach-certs/ca.crt") == [_controller_state("ca")["new"]]


def _verify(host, cafile, cert):
    """openssl verify with only ``cafile`` as trust (the old CAs are gone from every file)."""
    result = host.run("openssl verify -CAfile %s %s" % (m.q(cafile), m.q(cert)))
    return result.rc == 0 and result.stdout.rstrip().endswith(": OK"), result.stdout + result.stderr


@pytest.mark.parametrize("name", m.NODES)
def test_node_leaves_come_from_the_new_cas(name):
    host = m.get_host(name)
    d = m.CERTS_DIR
    for cafile, cert in (("ca.crt", "node.crt"), ("ca-client.crt", "client.node.crt"),
                         ("ca-client.crt", "client.root.crt")):
        ok, out = _verify(host, "%s/%s" % (d, cafile), "%s/%s" % (d, cert))
        assert ok, "%s: %s not verified by the new %s alone: %s" % (name, cert, cafile, out)


@pytest.mark.parametrize("name", m.CLIENTS)
@pytest.mark.parametrize("user", m.CLIENT_USERS)
def test_client_leaves_come_from_the_new_client_ca(name, user):
    host = m.get_host(name)
    home = m.sh(host, "getent passwd %s | cut -d: -f6" % user).strip()
    m.sh(host, "cat > /tmp/rot-new-ca-client.crt <<'EOF'\n%s\nEOF"
         % m.read_controller(os.path.join(m.PKI_DIR, "ca-client.crt")).decode().strip())
    ok, out = _verify(host, "/tmp/rot-new-ca-client.crt", "%s/.cockroach-certs/client.%s.crt" % (home, user))
    assert ok, out


@pytest.mark.parametrize("name", m.NODES)
def test_standin_reloaded_every_phase_and_serves_the_new_cert(name):
    host = m.get_host(name)
    status = json.loads(m.sh(host, STATUS))
    log = m.sh(host, "cat %s" % LOG)
    hangups = m.hangups(log)
    # A sender outside the container's pid namespace shows as pid 0: a process on
    # the machine running the containers that signals every `cockroach` it sees
    # (a local-connection playbook with crdb_tls_reload: true does). Reported, not ours.
    ours = [uid for uid, pid in hangups if pid != "0"]
    print("\n%s: SIGHUPs from the rotation %d, from outside the container %d, reloads %d, failures %d"
          % (name, len(ours), len(hangups) - len(ours), status["reloads"], status["reload_failures"]))
    # Phase 1 (bundles), phase 2 (leaves), phase 3 (bundles): one SIGHUP each, sent as cockroach.
    assert ours == [m.sh(host, "id -u cockroach").strip()] * 3, log
    assert status["reload_failures"] == 0, (status, log)
    assert status["reloads"] == len(hangups) == len(re.findall("certificate reload succeeded", log)), (status, log)
    node_fp = m.sh(host, "openssl x509 -in %s/node.crt -noout -fingerprint -sha256" % m.CERTS_DIR)
    node_fp = node_fp.strip().split("=", 1)[1].replace(":", "").lower()
    assert status["served_cert_sha256"].replace(":", "").lower() == node_fp, status
    # What the client loop saw last from this node is that certificate too.
    address = _address(host)
    assert counts()["served"][address].replace(":", "").lower() == node_fp, counts()["served"]


def _address(host):
    ips = m.sh(host, "hostname -I").split()
    found = [a for a in counts()["addresses"] if a.rsplit(":", 1)[0] in ips]
    assert len(found) == 1, (ips, counts()["addresses"])
    return found[0]


def _reloads_in_log(host):
    return m.sh(host, "cat %s" % LOG).count("certificate reload succeeded")


def _wait(what, predicate, attempts=100):
    for _attempt in range(attempts):
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % what)


def test_standin_takes_a_mismatched_pair_on_reload_as_cockroachdb_does():
    """A node.key that does not match node.crt (what a torn set would be): CockroachDB's
    reload does not check pairs, so the set is taken and every handshake with node.crt
    fails until a good pair is back; the role must never let that happen (it validates
    before SIGHUP). Runs last: it adds reloads."""
    name = m.NODES[-1]
    host = m.get_host(name)
    before = json.loads(m.sh(host, STATUS))
    reloads_before = _reloads_in_log(host)
    d = m.CERTS_DIR
    client = m.get_host(m.CLIENTS[0])
    s_client = ("cd /root/.cockroach-certs && openssl s_client -connect %s -cert client.root.crt "
                "-key client.root.key -CAfile ca.crt -verify_return_error -quiet </dev/null 2>/dev/null" % _address(host))
    m.sh(host, "set -e; cd %s; cp -p node.key /root/node.key.saved; "
               "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out /root/other.key 2>/dev/null; "
               "install -o cockroach -g cockroach -m 0600 /root/other.key node.key; "
               "setpriv --reuid=cockroach --regid=cockroach --init-groups kill -HUP $(pgrep -x cockroach)" % d)
    try:
        # (>=: a stray SIGHUP from outside the container may land in the same window)
        _wait("the reload to be taken", lambda: _reloads_in_log(host) >= reloads_before + 1)
        # The DB Console serves node.crt here: it cannot any more.
        assert host.run(STATUS).rc != 0
        assert _wait("the refusal in the log", lambda: "cannot serve the DB Console" in m.sh(host, "cat %s" % LOG))
        assert "private key does not match public key" in m.sh(host, "cat %s" % LOG)
        out = client.run(s_client).stdout
        assert not out.startswith("OK cn="), out
    finally:
        m.sh(host, "install -o cockroach -g cockroach -m 0600 /root/node.key.saved %s/node.key; "
                   "setpriv --reuid=cockroach --regid=cockroach --init-groups kill -HUP $(pgrep -x cockroach)" % d)
    # The good pair again: served again, after two reloads taken and none refused.
    status = _wait("the DB Console to serve again",
                   lambda: host.run(STATUS).rc == 0 and json.loads(m.sh(host, STATUS)))
    assert status["reloads"] >= before["reloads"] + 2, status
    assert status["reload_failures"] == before["reload_failures"], status
    assert status["served_cert_sha256"] == before["served_cert_sha256"], status
    assert m.sh(client, s_client).startswith("OK cn=root "), "SQL port after the good pair"
