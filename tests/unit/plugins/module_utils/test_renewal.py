# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""renewal: windows per kind, the rows of a certs dir and a PKI dir, the served check, the report formats."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import socket
import ssl
import threading

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import authority, durations, pki, renewal
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

# Fixed windows, as before issue 13; the fractional defaults have tests of their own.
WINDOWS = renewal.windows(None, {"ca": "180d", "node": "30d", "client": "30d", "ui": "30d"})


@pytest.mark.parametrize("name,kind", [
    ("ca.crt", "ca"), ("ca-client.crt", "ca"), ("ca-ui.crt", "ca"),
    ("node.crt", "node"), ("client.node.crt", "node"),
    ("ui.crt", "ui"),
    ("client.root.crt", "client"), ("client.app.crt", "client"), ("/var/lib/cockroach/certs/client.app.crt", "client"),
    ("node.key", None), ("ca.old.crt", None), ("client.Root.crt", "client"),
])
def test_kind_of(name, kind):
    assert renewal.kind_of(name) == kind


def _fixed(days):
    return durations.Window(fixed=datetime.timedelta(days=days))


def test_windows_default_and_per_kind():
    assert renewal.windows("30d") == {"ca": _fixed(30), "node": _fixed(30), "client": _fixed(30), "ui": _fixed(30)}
    assert renewal.windows("30d", {"ca": "180d", "ui": "", "node": None, "client": "2w"}) == {
        "ca": _fixed(180), "node": _fixed(30), "client": _fixed(14), "ui": _fixed(30)}
    assert renewal.windows(None, {"node": "10d"}) == {"ca": None, "node": _fixed(10), "client": None, "ui": None}
    assert renewal.window_for(renewal.windows(None, {"node": "10d"}), "client.node.crt") == _fixed(10)
    assert renewal.window_for(None, "node.crt") is None
    third = durations.Window(fraction=0.33)
    assert renewal.windows("33%", {"ca": "180d"}) == {"ca": _fixed(180), "node": third, "client": third, "ui": third}
    # The defaults: leaves in the last third of their lifetime, the CA 180 days ahead.
    assert renewal.windows(None, renewal.DEFAULT_WINDOWS) == {"ca": _fixed(180), "node": third, "client": third,
                                                              "ui": third}


@pytest.mark.parametrize("value,fixed,fraction,text", [
    ("33%", None, 0.33, "33%"), (" 12.5 % ", None, 0.125, "12.5%"), ("30d", datetime.timedelta(days=30), None, "30d"),
    ("36h", datetime.timedelta(hours=36), None, "36h"), ("90m", datetime.timedelta(minutes=90), None, "90m"),
    (8, datetime.timedelta(hours=8), None, "8h"), ("2w", datetime.timedelta(days=14), None, "14d"),
])
def test_parse_window(value, fixed, fraction, text):
    window = durations.parse_window(value, "w")
    assert (window.fixed, window.fraction, window.text()) == (fixed, fraction, text)


def test_parse_window_no_window_and_refusals():
    assert durations.parse_window(None, "w") is None
    assert durations.parse_window("", "w") is None
    assert durations.parse_window("0d", "w") is None
    with pytest.raises(CrdbTlsError, match=r"^crdb_tls_renew_before '100%' would make every run re-issue: a window "
                                           r"of 100% of the lifetime or more is always open"):
        durations.parse_window("100%", "crdb_tls_renew_before")
    with pytest.raises(CrdbTlsError, match=r"^w '150%' would make every run re-issue"):
        durations.parse_window("150%", "w")
    with pytest.raises(CrdbTlsError, match=r"^w '0%' is no window: give a percentage above 0%"):
        durations.parse_window("0%", "w")
    with pytest.raises(CrdbTlsError, match=r"^w '-5%' is neither a duration nor a percentage"):
        durations.parse_window("-5%", "w")


def test_fraction_window_length_and_description():
    window = durations.parse_window("33%", "w")
    day = datetime.timedelta(hours=24)
    assert window.length(day) == datetime.timedelta(hours=7, minutes=55, seconds=12)
    assert window.describe(day) == "33% (7h)"
    assert window.describe() == "33%" and window.length() is None
    assert durations.describe_window(durations.parse_window("30d", "w"), day) == "30d"


def test_check_window_refuses_a_window_always_open():
    """The one check of a window against the lifetime asked (issue_fleet, certificate, ca and the roles use it)."""
    assert renewal.check_window("33%", "1h") == durations.Window(fraction=0.33)
    assert renewal.check_window("59m", "1h") == durations.Window(fixed=datetime.timedelta(minutes=59))
    assert renewal.check_window(None, "1h") is None
    with pytest.raises(CrdbTlsError, match=r"^renew_before 30d is not shorter than lifetime 48h: every run would "
                                           r"re-issue the certificate \(give a shorter window, or a share of the "
                                           r"lifetime such as 33%\)$"):
        renewal.check_window("30d", "48h")
    with pytest.raises(CrdbTlsError, match=r"^crdb_tls_renew_before_node 120m is not shorter than crdb_tls_lifetime 2h"):
        renewal.check_window("120m", "2h", "crdb_tls_renew_before_node", "crdb_tls_lifetime")
    with pytest.raises(CrdbTlsError, match=r"^renewal window for client 48h is not shorter than lifetime 24h"):
        renewal.check_leaf_windows(renewal.windows("33%", {"client": "48h", "ca": "180d"}), "24h")


def test_windows_refuse_bad_input():
    with pytest.raises(CrdbTlsError, match=r"renewal window for 'server': not a kind of certificate"):
        renewal.windows("30d", {"server": "1d"})
    with pytest.raises(CrdbTlsError, match=r"renewal window for node '3 months' is neither a duration nor a "
                                           r"percentage of the lifetime \(examples: 30d, 12h, 90m, 33%\)"):
        renewal.windows(None, {"node": "3 months"})
    with pytest.raises(CrdbTlsError, match=r"renew_before 'x' is neither a duration nor a percentage"):
        renewal.windows("x")


def test_judge_statuses():
    now = pki.utcnow()
    soon, later = now + datetime.timedelta(days=5), now + datetime.timedelta(days=400)
    assert renewal.judge(later, "node", WINDOWS, [], now) == ("ok", [])
    status, why = renewal.judge(soon, "node", WINDOWS, [], now)
    assert status == "due" and why == ["expires on %s (5d left), inside its 30d node renewal window"
                                       % soon.strftime("%Y-%m-%d %H:%M UTC")]
    status, why = renewal.judge(soon, "ca", WINDOWS, [], now)
    assert status == "due" and why[0].endswith("inside its 180d ca renewal window; renew.yml does not rotate a CA: "
                                               "run playbooks/rotate_ca.yml")
    status, why = renewal.judge(soon, "node", WINDOWS, ["key node.key does not match the certificate"], now)
    assert status == "broken" and why[0] == "key node.key does not match the certificate" and "renewal window" in why[1]
    past = now - datetime.timedelta(hours=1)
    status, why = renewal.judge(past, "client", WINDOWS, [], now)
    assert status == "expired" and why == ["expired on %s" % past.strftime("%Y-%m-%d %H:%M UTC")]
    assert renewal.judge(None, "", WINDOWS, ["ca.crt: missing"], now) == ("broken", ["ca.crt: missing"])


def test_window_judged_as_of_the_issue_step_agrees_with_the_issuer(mk, ca, certs_dir):
    """The issue step and the check that closes a run judge a window at one instant (the race issue 13 hit).

    A 6m node certificate with a 33% (2m) window, judged by the issuer (pki.renewal_reason) a moment before it
    enters its window: not due. The check a second later finds it due unless it is given that instant.
    """
    windows = renewal.windows(None, {"node": "33%"})
    issued_at = pki.utcnow() - datetime.timedelta(minutes=10)
    cert, key, _spec = mk.leaf(ca, "node", hosts=["node1.example.com"], now=issued_at, lifetime="6m")
    # pki.issue backdates not_before; the window is a share of the real lifetime, so take the edge from it.
    lifetime = pki.not_after(cert) - pki.not_before(cert)
    edge = pki.not_after(cert) - durations.window_length(windows["node"], lifetime)
    judged_at = edge - datetime.timedelta(seconds=1)
    assert pki.renewal_reason(cert, windows["node"], judged_at) is None
    check_now = edge + datetime.timedelta(seconds=1)
    assert pki.not_after(cert) > check_now
    assert renewal.judge(pki.not_after(cert), "node", windows, [], check_now, pki.not_before(cert))[0] == "due"
    assert renewal.judge(pki.not_after(cert), "node", windows, [], check_now, pki.not_before(cert),
                         window_now=judged_at) == ("ok", [])
    # The check's clock behind the issuer's: its own now, never a later instant.
    assert renewal.judge(pki.not_after(cert), "node", windows, [], check_now, pki.not_before(cert),
                         window_now=check_now + datetime.timedelta(hours=1))[0] == "due"
    # Expiry is judged now whatever the instant given.
    after = pki.not_after(cert) + datetime.timedelta(seconds=1)
    assert renewal.judge(pki.not_after(cert), "node", windows, [], after, pki.not_before(cert),
                         window_now=judged_at)[0] == "expired"
    # Through a certs dir, as crdb.tls.expiry_check reads one.
    mk.install_ca(certs_dir, "ca.crt", ca)
    mk.install(certs_dir, "node.crt", cert, key)
    node = [r for r in renewal.assess_dir("node1", certs_dir, windows, layout="standard", now=check_now,
                                          window_now=judged_at) if r["file"].endswith("node.crt")][0]
    assert node["status"] == "ok", node["why"]


def test_rows_of_an_issued_dir_shown_as_the_hosts_files(mk, ca, certs_dir):
    mk.install_ca(certs_dir, "ca.crt", ca)
    cert, key, _spec = mk.leaf(ca, "node", hosts=["node1.example.com"])
    mk.install(certs_dir, "node.crt", cert, key)
    rows = renewal.assess_dir("node1", certs_dir, WINDOWS, layout="standard", expected_hosts=["node1.example.com"])
    shown = renewal.shown_as(rows, certs_dir, "/var/lib/cockroach/certs")
    assert sorted(r["file"] for r in shown) == sorted("/var/lib/cockroach/certs/" + os.path.basename(r["file"])
                                                      for r in rows)
    assert [dict(r, file=None) for r in shown] == [dict(r, file=None) for r in rows]
    # A row of no file of that dir keeps its name; the rows given are not changed.
    other = dict(rows[0], file="/elsewhere/x.crt")
    assert renewal.shown_as([other], certs_dir, "/var/lib/cockroach/certs")[0]["file"] == "/elsewhere/x.crt"
    assert all(r["file"].startswith(certs_dir) for r in rows)


def test_instants_round_trip_and_bad_ones_are_named():
    instant = datetime.datetime(2026, 12, 2, 13, 5, 3, tzinfo=datetime.timezone.utc)
    text = durations.instant_text(instant)
    assert text == "2026-12-02T13:05:03.000000+00:00"
    assert durations.parse_instant(text, "renew_as_of") == instant
    assert durations.parse_instant("2026-12-02T14:05:03+01:00", "renew_as_of") == instant
    later = durations.instant_text(instant + datetime.timedelta(microseconds=1))
    assert sorted([later, text]) == [text, later]
    for bad in ("yesterday", "2026-12-02T13:05:03", ""):
        with pytest.raises(CrdbTlsError) as err:
            durations.parse_instant(bad, "renew_as_of")
        assert str(err.value) == ("renew_as_of %r is not an ISO 8601 instant with a UTC offset "
                                  "(example: 2026-12-02T13:05:03+00:00)" % bad)


def _certs_dir(mk, certs_dir, ca, node_lifetime="400d"):
    mk.install_ca(certs_dir, "ca.crt", ca)
    cert, key, _spec = mk.leaf(ca, "node", hosts=["node1.example.com", "127.0.0.1"], lifetime=node_lifetime)
    mk.install(certs_dir, "node.crt", cert, key)
    cert, key, _spec = mk.leaf(ca, "client", user="root", lifetime="400d")
    mk.install(certs_dir, "client.root.crt", cert, key)
    return certs_dir


def test_assess_dir_rows(mk, ca, certs_dir):
    _certs_dir(mk, certs_dir, ca, node_lifetime="10d")
    rows = dict((os.path.basename(r["file"]), r)
                for r in renewal.assess_dir("node1", certs_dir, WINDOWS, layout="standard",
                                            expected_hosts=["node1.example.com"]))
    assert sorted(rows) == ["ca.crt", "client.root.crt", "node.crt"]
    node = rows["node.crt"]
    assert (node["host"], node["file"], node["kind"], node["status"]) == (
        "node1", os.path.join(certs_dir, "node.crt"), "node", "due")
    assert node["days_left"] == 9 and node["window_days"] == 30 and node["window"] == "30d"
    assert node["left"] == "9d" and 9 * 86400 < node["seconds_left"] <= 10 * 86400
    assert node["expiry_timestamp"] == int(datetime.datetime.fromisoformat(node["not_after"]).timestamp())
    assert "(9d left of 11d), inside its 30d node renewal window" in node["why"][0]
    assert (rows["client.root.crt"]["kind"], rows["client.root.crt"]["status"]) == ("client", "ok")
    assert (rows["ca.crt"]["kind"], rows["ca.crt"]["status"], rows["ca.crt"]["window_days"]) == ("ca", "ok", 180)


def test_assess_dir_problems_from_the_validator(mk, ca, other_ca, certs_dir):
    _certs_dir(mk, certs_dir, ca)
    os.chmod(os.path.join(certs_dir, "client.root.key"), 0o644)
    cert, key, _spec = mk.leaf(other_ca, "ui", hosts=["console.example.com"])
    mk.install(certs_dir, "ui.crt", cert)      # its key is missing
    rows = dict((os.path.basename(r["file"]), r)
                for r in renewal.assess_dir("node1", certs_dir, WINDOWS, layout="split_node"))
    assert rows["client.root.crt"]["status"] == "broken"
    assert rows["client.root.crt"]["why"] == ["key client.root.key: mode 0644 exceeds -rwx------ (CockroachDB "
                                              "refuses group or world access to keys)"]
    assert rows["ui.crt"]["status"] == "broken" and rows["ui.crt"]["why"] == ["key ui.key is missing"]
    # A file the layout needs: a row of its own, no expiry.
    missing = rows["client.node.crt"]
    assert (missing["status"], missing["kind"], missing["not_after"]) == ("broken", "node", None)
    assert missing["why"] == ["missing (required by the split_node layout)"]
    assert rows["node.crt"]["status"] == "ok"

    gone = renewal.assess_dir("node1", os.path.join(certs_dir, "nope"), WINDOWS)
    assert [(r["file"], r["status"], r["why"]) for r in gone] == [
        (os.path.join(certs_dir, "nope"), "broken", ["the certs dir does not exist"])]


def test_assess_dir_expired(mk, ca, certs_dir):
    _certs_dir(mk, certs_dir, ca)
    past = pki.utcnow() - datetime.timedelta(days=3)
    cert, key, _spec = mk.leaf(ca, "client", user="app", lifetime="1d", now=past)
    mk.install(certs_dir, "client.app.crt", cert, key)
    row = [r for r in renewal.assess_dir("n", certs_dir, WINDOWS) if r["file"].endswith("client.app.crt")][0]
    assert row["status"] == "expired" and -3 <= row["days_left"] <= -2
    assert row["why"] == ["does not verify against ca.crt as clientAuth: CN=app,O=Cockroach expired on %s"
                          % pki.not_after(cert).strftime("%Y-%m-%d %H:%M UTC")]


def test_assess_pki_ca_window(pki_dir):
    authority.ensure(pki_dir, "ca", key_type="ecdsa")
    rows = renewal.assess_pki("controller", pki_dir, WINDOWS)
    assert [(r["file"], r["kind"], r["status"]) for r in rows] == [
        (authority.paths(pki_dir, "ca")["signer"], "ca", "ok")]
    assert rows[0]["days_left"] >= 3659
    due = renewal.assess_pki("controller", pki_dir, renewal.windows(None, {"ca": "4000d"}))[0]
    assert due["status"] == "due" and due["ca_role"] == "ca"
    assert due["why"][0].endswith("inside its 4000d ca renewal window; renew.yml does not rotate a CA: "
                                  "run playbooks/rotate_ca.yml")
    assert renewal.assess_pki("controller", os.path.join(pki_dir, "none"), WINDOWS) == []


class _TlsServer(object):
    """A local TLS server presenting one certificate (a real handshake for served_check)."""

    def __init__(self, cert_path, key_path):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_path, key_path)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def test_served_check(mk, ca, certs_dir):
    _certs_dir(mk, certs_dir, ca)
    node_crt = os.path.join(certs_dir, "node.crt")
    other = os.path.join(certs_dir, "client.root.crt")
    # Nothing answers and no such process runs: not checked.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        address = "127.0.0.1:%d" % free.getsockname()[1]
    row, note = renewal.served_check("n1", address, node_crt, "crdbtls-none", timeout=0)
    assert row is None and note.startswith("nothing answers at %s" % address)
    assert "no crdbtls-none process runs: the served certificate was not checked" in note

    server = _TlsServer(node_crt, os.path.join(certs_dir, "node.key"))
    try:
        row, note = renewal.served_check("n1", server.address, node_crt, "crdbtls-none", timeout=0)
        assert row is None and note == "%s serves %s (sha256 %s)" % (
            server.address, node_crt, pki.fingerprint(pki.load_certificates(open(node_crt, "rb").read(), "x")[0]))
        # Something answers with another certificate: broken, whatever the process name.
        row, note = renewal.served_check("n1", server.address, other, "crdbtls-none", timeout=0)
    finally:
        server.close()
    assert row["status"] == "broken" and row["file"] == other and row["kind"] == "client"
    assert row["why"] == [note]
    assert note.startswith("%s serves sha256 " % server.address)
    assert note.endswith("not %s (sha256 %s): the running process did not reload it"
                         % (other, pki.fingerprint(pki.load_certificates(open(other, "rb").read(), "x")[0])))


def _rows(mk, ca, certs_dir):
    _certs_dir(mk, certs_dir, ca, node_lifetime="10d")
    return renewal.assess_dir('no"de\\1', certs_dir, WINDOWS) + [renewal.failed_host_row("node9", "unreachable")]


def test_report_table_and_json(mk, ca, certs_dir, tmp_path):
    rows = _rows(mk, ca, certs_dir)
    document = renewal.report(rows)
    assert document["ok"] is False
    assert document["summary"] == {"ok": 2, "due": 1, "expired": 0, "broken": 1}
    assert document["problems"] == [
        'no"de\\1 %s: %s (due)' % (os.path.join(certs_dir, "node.crt"), rows[2]["why"][0]),
        "node9 -: the check could not run: unreachable (broken)"]
    table = renewal.format_table(rows).splitlines()
    assert table[0].split(" | ")[:7] == ["Host   ", "File".ljust(len(os.path.join(certs_dir, "client.root.crt"))),
                                         "Kind  ", "Expires         ", "Left ", "Window", "Status"]
    due_line = [line for line in table if "node.crt" in line][0]
    assert [c.strip() for c in due_line.split(" | ")][2:7] == ["node", rows[2]["not_after"][:16].replace("T", " "),
                                                               "9d", "30d", "DUE"]
    assert table[-1] == "(4 certificates: 2 ok, 1 due, 0 expired, 1 broken)"
    path = str(tmp_path / "report.json")
    assert renewal.write_report(path, document) is True
    with open(path) as handle:
        assert json.load(handle) == json.loads(json.dumps(document))
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert renewal.report([])["ok"] is True


def test_prometheus_textfile(mk, ca, certs_dir, tmp_path):
    rows = _rows(mk, ca, certs_dir)
    text = renewal.prometheus_text(rows).decode()
    node = os.path.join(certs_dir, "node.crt")
    host = 'no\\"de\\\\1'
    assert "# TYPE crdb_tls_cert_expiry_timestamp_seconds gauge\n" in text
    assert 'crdb_tls_cert_days_left{host="%s",file="%s",kind="node"} 9\n' % (host, node) in text
    assert 'crdb_tls_cert_problems{host="%s",file="%s",kind="node"} 1\n' % (host, node) in text
    assert 'crdb_tls_cert_expiry_timestamp_seconds{host="%s",file="%s",kind="node"} %d\n' % (
        host, node, rows[2]["expiry_timestamp"]) in text
    assert 'crdb_tls_cert_problems{host="node9",file="-",kind=""} 1\n' in text
    assert 'crdb_tls_cert_days_left{host="node9"' not in text

    directory = str(tmp_path / "textfiles")
    os.mkdir(directory)
    assert renewal.write_textfile(directory, rows, check_mode=True) == (True, os.path.join(directory, "crdb_tls.prom"))
    assert os.listdir(directory) == []
    assert renewal.write_textfile(directory, rows) == (True, os.path.join(directory, "crdb_tls.prom"))
    assert os.listdir(directory) == ["crdb_tls.prom"]
    assert os.stat(os.path.join(directory, "crdb_tls.prom")).st_mode & 0o777 == 0o644
    with open(os.path.join(directory, "crdb_tls.prom"), "rb") as handle:
        assert handle.read() == text.encode()
    assert renewal.write_textfile(directory, rows)[0] is False
    with pytest.raises(CrdbTlsError, match=r"textfile name 'crdb.txt' must be a file name ending in .prom"):
        renewal.write_textfile(directory, rows, name="crdb.txt")
    with pytest.raises(CrdbTlsError, match=r"textfile directory"):
        renewal.write_textfile(os.path.join(directory, "none"), rows)


# --------------------------------------------------------------------------- short-lived certificates

def test_short_lived_rows_in_hours(mk, ca, certs_dir):
    """A 24-hour node certificate with the default 33% window: hours in the row, the rule that fired in why."""
    mk.install_ca(certs_dir, "ca.crt", ca)
    now = pki.utcnow()
    cert, key, _spec = mk.leaf(ca, "node", hosts=["node1.example.com"], lifetime="24h", now=now)
    mk.install(certs_dir, "node.crt", cert, key)
    windows = renewal.windows(None, renewal.DEFAULT_WINDOWS)
    # Back-dated by a tenth of its lifetime (2.4h), not 24h: 26.4h of validity, 33% of it is 8.7h.
    assert pki.not_after(cert) - pki.not_before(cert) == datetime.timedelta(hours=26, minutes=24)

    def row(at):
        rows = renewal.assess_dir("node1", certs_dir, windows, layout="standard", now=at)
        return [r for r in rows if r["file"].endswith("node.crt")][0]
    fresh = row(now)
    assert (fresh["status"], fresh["left"], fresh["window"], fresh["window_days"]) == ("ok", "23h", "33% (8h)", 0)
    assert fresh["window_seconds"] == int(0.33 * 26.4 * 3600)
    later = row(now + datetime.timedelta(hours=15, minutes=30))
    assert later["status"] == "due" and later["left"] == "8h" and later["days_left"] == 0
    assert later["why"] == ["expires on %s (8h left of 26h), inside its 33%% (8h) node renewal window"
                            % pki.not_after(cert).strftime("%Y-%m-%d %H:%M UTC")]
    assert row(now + datetime.timedelta(hours=15))["status"] == "ok"
    assert row(now + datetime.timedelta(hours=24, minutes=1))["status"] == "expired"
    # The textfile carries the expiry time (alert on it minus time()), never a count of seconds that would
    # rewrite it on every run.
    text = renewal.prometheus_text([later]).decode()
    assert 'crdb_tls_cert_expiry_timestamp_seconds{host="node1",file="%s",kind="node"} %d\n' % (
        later["file"], later["expiry_timestamp"]) in text
    assert "seconds_left" not in text
    table = renewal.format_table([later])
    assert "| 8h   | 33% (8h) | DUE" in table, table


@pytest.mark.parametrize("lifetime,back", [("1h", datetime.timedelta(minutes=6)), ("2h", datetime.timedelta(minutes=12)),
                                           ("10d", datetime.timedelta(hours=24)), ("1830d", datetime.timedelta(hours=24))])
def test_back_dating_is_a_tenth_of_the_lifetime_at_most(ca, lifetime, back):
    now = pki.utcnow().replace(microsecond=0)
    spec = pki.build_spec("node", hosts=["n1.example.com"], lifetime=lifetime)
    key = pki.generate_key("ecdsa", None)
    cert = pki.issue(spec, key.public_key(), ca, now=now)
    assert pki.not_before(cert) == now - back
    assert pki.not_after(cert) == now + pki.parse_duration(lifetime, "lifetime")
    # Just issued: outside a 33% window, whatever the lifetime.
    assert pki.renewal_reason(cert, pki.parse_window("33%", "w"), now) is None


@pytest.mark.parametrize("lifetime", ["1h", "2h", "24h", "48h", "1830d"])
def test_a_share_of_the_lifetime_decides_at_two_thirds(mk, ca, certs_dir, lifetime):
    """The decision at points along a certificate's life, the clock given to the decision only (real certificates):
    ok until the last 33% of its validity, due inside it, expired after; never due right after issue."""
    mk.install_ca(certs_dir, "ca.crt", ca)
    issued = pki.utcnow()
    cert, key, _spec = mk.leaf(ca, "node", hosts=["node1.example.com"], lifetime=lifetime, now=issued)
    mk.install(certs_dir, "node.crt", cert, key)
    windows = renewal.windows(None, renewal.DEFAULT_WINDOWS)
    start, end = pki.not_before(cert), pki.not_after(cert)
    validity = end - start
    opens = end - datetime.timedelta(seconds=validity.total_seconds() * 0.33)
    assert start < issued < opens < end

    def decide(at):
        row = [r for r in renewal.assess_dir("n1", certs_dir, windows, layout="standard", now=at)
               if r["file"].endswith("node.crt")][0]
        reason = pki.renewal_reason(cert, windows["node"], at)
        return row["status"], reason
    second = datetime.timedelta(seconds=1)
    assert decide(issued) == ("ok", None)
    assert decide(opens - second) == ("ok", None)
    status, reason = decide(opens + second)
    assert status == "due" and reason.startswith("expires on %s: " % end.strftime("%Y-%m-%d %H:%M UTC"))
    assert reason.endswith(", inside the 33%% (%s) window" % durations.format_span(windows["node"].length(validity)))
    assert decide(end - second)[0] == "due"
    assert decide(end)[0] == "expired" and decide(end)[1].startswith("expired on ")
