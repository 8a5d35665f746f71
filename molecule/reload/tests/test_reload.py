"""The reload scenario: each stand-in `cockroach` (a TEST FIXTURE) reloaded
once, on a SIGHUP sent by the cockroach uid, and serves the new ui.crt; the
deliberately broken runs of side_effect.yml failed as expected, changed
nothing in the certs dir and sent no signal.
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))

import crdb_molecule as m  # noqa: E402  (after the sys.path line)

LOG = m.STANDIN_LOG
STATUS = m.STANDIN_STATUS
BROKEN_CASES = {
    "mismatched_ui_key": "does not match the DB Console certificate",
    "key_group_refused": "the new set would not work",
}


def cockroach_uid(host):
    return int(m.sh(host, "id -u cockroach").strip())


@pytest.mark.parametrize("name", m.NODES)
def test_standin_runs_as_cockroach(name):
    host = m.get_host(name)
    owners = m.sh(host, "ps -o user= -p \"$(pgrep -d, -x cockroach)\"").split()
    assert owners == ["cockroach"], owners


@pytest.mark.parametrize("name", m.NODES)
def test_one_reload_signalled_by_the_cockroach_uid(name):
    host = m.get_host(name)
    uid = cockroach_uid(host)
    log = m.sh(host, "cat %s" % LOG)
    # One for the converge; none for the idempotence run or the broken runs.
    assert [hup_uid for hup_uid, _pid in m.hangups(log)] == [str(uid)], log
    assert "certificate reload succeeded" in log, log
    assert "reload failed" not in log, log
    status = json.loads(m.sh(host, STATUS))
    assert status["reloads"] == 1, status
    assert status["reload_failures"] == 0, status
    assert status["last_reload_sender_uid"] == uid, status


@pytest.mark.parametrize("name", m.NODES)
def test_db_console_serves_the_installed_ui_cert(name):
    host = m.get_host(name)
    ui_fp = m.certs_dir(name)["ui.crt"]["fingerprint"]
    status = json.loads(m.sh(host, STATUS))
    assert status["served_cert_file"] == "ui.crt", status
    assert status["served_cert_sha256"].replace(":", "").lower() == ui_fp, status
    assert status["ui_cert_sha256"].replace(":", "").lower() == ui_fp, status
    # What a TLS client sees, verified against ca.crt and the address.
    out = m.sh(host, "cd %s && openssl s_client -connect 127.0.0.1:8080 -CAfile ca.crt -verify_return_error "
               "-verify_ip 127.0.0.1 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256" % m.CERTS_DIR)
    assert out.strip().split("=", 1)[1].replace(":", "").lower() == ui_fp, out


@pytest.mark.parametrize("name", m.NODES)
def test_sql_port_accepts_the_installed_client_cert(name):
    host = m.get_host(name)
    out = m.sh(host, "cd %s && openssl s_client -connect 127.0.0.1:26257 -cert client.root.crt -key client.root.key "
               "-CAfile ca.crt -verify_return_error -verify_ip 127.0.0.1 -quiet </dev/null 2>/dev/null" % m.CERTS_DIR)
    assert "OK cn=root server_sha256=%s" % m.certs_dir(name)["node.crt"]["fingerprint"] in out.replace(":", ""), out


def broken_result(name, what):
    with open(os.path.join(m.EPHEMERAL, "broken", "%s.%s" % (name, what))) as handle:
        return handle.read()


@pytest.mark.parametrize("name", m.NODES)
@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_broken_run_failed_with_the_expected_message(name, case):
    seen = json.loads(broken_result(name, case + ".json"))
    assert seen["failed"], seen
    if case == "mismatched_ui_key":
        # Refused on the controller by a run_once task: the message is on the
        # host it ran for, every host failed.
        messages = [json.loads(broken_result(n, case + ".json"))["msg"] for n in m.NODES]
        assert any(BROKEN_CASES[case] in msg for msg in messages), messages
        assert seen["msg"] in ("", [msg for msg in messages if msg][0]), seen
    else:
        assert BROKEN_CASES[case] in seen["msg"], seen


@pytest.mark.parametrize("name", m.NODES)
def test_broken_runs_changed_nothing_and_signalled_nothing(name):
    before = broken_result(name, "before")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "snapshot.sh")) as handle:
        after = m.sh(m.get_host(name), "sh -c %s" % m.q(handle.read()))
    assert before.strip() == after.strip()
    assert "hangups=1" in after and "reloads=1 failures=0" in after, after
