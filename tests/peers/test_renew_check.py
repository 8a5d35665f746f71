# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/check.yml and playbooks/renew.yml against a fleet on this machine.

Three "nodes" and a client, all local connections with a certs dir each (as
``make demo``), deployed by playbooks/site.yml. Each node runs the stand-in
``cockroach`` (tests/fixtures/standin, a TEST FIXTURE) on its own certs dir,
under a process name of its own, so each host's reload signals only its own
stand-in and never another test's. The tests run in order on one fleet:

1. healthy fleet: check.yml exits 0, JSON and textfiles say ok;
2. node2's node.crt made to expire in 10 days: check.yml exits non-zero, the
   table row and JSON entry of that file say why, everything else is ok;
3. renew.yml renews node2's node.crt only, reloads node2's stand-in, which
   serves the new certificate; a second run changes nothing;
4. phased mode: node2 and node3 due again, node2's process name wrong (its
   reload reaches nothing): renew.yml stops at node2's check, node3 is not
   touched;
5. fleet mode (the default with no CA rotation open): every node due, node2's
   reload reaching nothing: node1 and node3 are renewed, reloaded and
   verified all the same, and the run fails at the end naming node2;
6. a CA inside its window is warned about, never rotated.
"""

import getpass
import grp
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys

import pytest
from peerlib import ROOT, ansible_tool, collections_path, fingerprint, wait_for

STANDIN = os.path.join(ROOT, "tests", "fixtures", "standin", "cockroach")
PLAYBOOK_TIMEOUT = 600
NODES = ("node1", "node2", "node3")
READY_RE = re.compile(r"stand-in ready: sql=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+) pid=(\d+)")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux (/proc)")


class Fleet:
    """The fleet's directories, inventory and stand-ins."""

    def __init__(self, base):
        self.base = base
        self.pki = os.path.join(base, "pki")
        self.report = os.path.join(base, "expiry.json")
        self.tag = "ren" + secrets.token_hex(3)
        self.process_names = dict((n, "%s%s" % (self.tag, n[-1])) for n in NODES)
        self.standins = {}
        self.ports = {}
        self.env = dict(os.environ)
        self.env.update({
            "ANSIBLE_COLLECTIONS_PATH": collections_path(),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            "ANSIBLE_FORKS": "5",
        })
        for name in ("PYTHONPATH", "CRDB_TLS_COLLECTIONS_PATH"):
            self.env.pop(name, None)

    def certs_dir(self, host):
        return os.path.join(self.base, host)

    def textfile(self, host):
        return os.path.join(self.base, "prom", host, "crdb_tls.prom")

    def write_inventory(self, process_names=None, extra_clients=None):
        """Inventory (JSON is YAML); ``process_names`` overrides a host's crdb_tls_process_name."""
        names = dict(self.process_names, **(process_names or {}))
        user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
        nodes = {}
        for index, host in enumerate(NODES, 1):
            nodes[host] = {"ansible_host": "127.0.0.%d" % index,
                           "crdb_tls_process_name": names[host],
                           "crdb_tls_certs_dir": self.certs_dir(host),
                           "crdb_tls_check_textfile_dir": os.path.dirname(self.textfile(host))}
            if host in self.ports:
                nodes[host]["crdb_tls_reload_verify_address"] = "127.0.0.1:%d" % self.ports[host]
        inventory = {"all": {
            "children": {
                "cockroachdb_nodes": {"hosts": nodes},
                "cockroachdb_clients": {"hosts": {"client1": {
                    "ansible_host": "127.0.0.1",
                    "crdb_tls_client_users": [{"name": "root", "os_user": user,
                                               "dir": os.path.join(self.base, "client")}],
                    "crdb_tls_check_textfile_dir": os.path.dirname(self.textfile("client1"))},
                    **(extra_clients or {})}},
            },
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
                "crdb_tls_layout": "standard",
                "crdb_tls_pki_dir": self.pki,
                "crdb_tls_owner": user,
                "crdb_tls_group": group,
                "crdb_tls_sans_from_facts": False,
                "crdb_tls_key_type": "ecdsa",
                "crdb_tls_check_served_timeout": 3,
                "crdb_tls_check_report": self.report,
                # A fixed window: make_due issues a 10-day certificate that must be due at once (a share
                # of the lifetime never is, right after issue; tests/peers/test_short_lived.py has those).
                "crdb_tls_renew_before": "30d",
            },
        }}
        for host in NODES + ("client1",):
            os.makedirs(os.path.dirname(self.textfile(host)), exist_ok=True)
        with open(os.path.join(self.base, "inventory.yml"), "w") as handle:
            json.dump(inventory, handle, indent=1)

    def playbook(self, name, *extra, timeout=PLAYBOOK_TIMEOUT):
        cmd = [ansible_tool(), "-i", os.path.join(self.base, "inventory.yml"),
               os.path.join(ROOT, "playbooks", name)] + list(extra)
        proc = subprocess.run(cmd, env=self.env, cwd=self.base, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
        return proc.returncode, proc.stdout.decode("utf-8", "replace")

    # --- stand-ins -------------------------------------------------------------------------

    def start(self, host):
        log = os.path.join(self.base, "%s.log" % host)
        err = open(os.path.join(self.base, "%s.stderr" % host), "w")
        proc = subprocess.Popen(
            [sys.executable, STANDIN, "start", "--certs-dir", self.certs_dir(host), "--listen-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", "--log-file", log, "--process-name", self.process_names[host],
             "--collections-path", collections_path().split(os.pathsep)[0]],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=self.env)
        err.close()
        self.standins[host] = proc

        def ready():
            if proc.poll() is not None:
                raise AssertionError("stand-in of %s exited: %s" % (host, self.log(host)))
            return READY_RE.search(self.log(host))
        match = wait_for("the stand-in of %s" % host, ready, timeout=20.0, interval=0.1)
        self.ports[host] = int(match.group(2))

    def log(self, host):
        try:
            with open(os.path.join(self.base, "%s.log" % host)) as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def status(self, host):
        """The stand-in's status JSON (GET / on its HTTPS port, certificate not verified: only read)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.ports[host]), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                data = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        return json.loads(data.partition(b"\r\n\r\n")[2])

    def stop(self):
        for proc in self.standins.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)

    # --- making a certificate due ------------------------------------------------------------

    def make_due(self, host, days=10):
        """Re-issue ``host``'s node.crt for ``days`` days (issued dir and certs dir), and reload its stand-in."""
        play = os.path.join(self.base, "make_due.yml")
        with open(play, "w") as handle:
            handle.write(MAKE_DUE)
        rc, out = self.playbook(play, "-e", json.dumps({"due_host": host, "due_lifetime": "%dd" % days,
                                                        "due_dir": self.certs_dir(host)}))
        assert rc == 0, out[-4000:]
        new = fingerprint(os.path.join(self.certs_dir(host), "node.crt"))
        os.kill(self.standins[host].pid, signal.SIGHUP)
        wait_for("%s to serve its short-lived node.crt" % host,
                 lambda: self.status(host)["served_cert_sha256"] == new, timeout=20.0, interval=0.1)
        return new


# Re-issue one host's node.crt with a short lifetime, with the collection's own
# module, in the controller's issued dir, then install it (install validates it).
MAKE_DUE = """\
---
- name: Make one node certificate due
  hosts: "{{ due_host }}"
  gather_facts: false
  tasks:
    - name: Re-issue node.crt with a short lifetime
      crdb.tls.certificate:
        certs_dir: "{{ crdb_tls_pki_dir }}/issued/{{ inventory_hostname }}"
        profile: node
        hosts: "{{ [inventory_hostname, ansible_host, 'localhost', '127.0.0.1'] | unique }}"
        ca_path: "{{ crdb_tls_pki_dir }}"
        key_type: ecdsa
        lifetime: "{{ due_lifetime }}"
        force: true
      delegate_to: localhost
    - name: Install it
      crdb.tls.install:
        src: "{{ crdb_tls_pki_dir }}/issued/{{ inventory_hostname }}"
        dest: "{{ due_dir }}"
        owner: "{{ crdb_tls_owner }}"
        group: "{{ crdb_tls_group }}"
        layout: standard
"""


def recap(output):
    """``{host: {"changed": n, "failed": n, ...}}`` from the PLAY RECAP."""
    out = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        out[host] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", fields))
    return out


def node_fps(fleet):
    return dict((h, fingerprint(os.path.join(fleet.certs_dir(h), "node.crt"))) for h in NODES)


def rows_by_file(report):
    return dict(((r["host"], r["file"]), r) for r in report["certificates"])


def read_report(fleet):
    with open(fleet.report) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(str(tmp_path_factory.mktemp("renew-fleet")))
    fleet.write_inventory()
    rc, out = fleet.playbook("site.yml")
    assert rc == 0, out[-6000:]
    try:
        for host in NODES:
            fleet.start(host)
        fleet.write_inventory()     # now with each stand-in's DB Console address
        yield fleet
    finally:
        fleet.stop()


# ------------------------------------------------------------------------------------ tests

def test_check_healthy_fleet(fleet):
    rc, out = fleet.playbook("check.yml")
    assert rc == 0, out[-6000:]
    report = read_report(fleet)
    assert report["ok"] is True and report["problems"] == []
    rows = rows_by_file(report)
    for host in NODES:
        for name, kind in (("ca.crt", "ca"), ("node.crt", "node"), ("client.root.crt", "client")):
            row = rows[(host, os.path.join(fleet.certs_dir(host), name))]
            assert (row["kind"], row["status"], row["why"]) == (kind, "ok", [])
        assert rows[(host, os.path.join(fleet.certs_dir(host), "node.crt"))]["days_left"] >= 1829
    client = rows[("client1", os.path.join(fleet.base, "client", "client.root.crt"))]
    assert (client["kind"], client["status"], client["window_days"]) == ("client", "ok", 30)
    ca = rows[("controller", os.path.join(fleet.pki, "ca.signer.pem"))]
    assert (ca["kind"], ca["status"], ca["window_days"]) == ("ca", "ok", 180)
    assert report["summary"] == {"ok": len(report["certificates"]), "due": 0, "expired": 0, "broken": 0}
    # The table on stdout has a row per certificate.
    assert re.search(r"node2\s+\| %s\s+\| node\s+\| \S+ \S+\s+\| 18\d\dd\s+\| 30d\s+\| ok" %
                     re.escape(os.path.join(fleet.certs_dir("node2"), "node.crt")), out), out[-4000:]
    # Prometheus textfile per host, written atomically (no temporary file left).
    with open(fleet.textfile("node1")) as handle:
        prom = handle.read()
    node_crt = os.path.join(fleet.certs_dir("node1"), "node.crt")
    assert "# TYPE crdb_tls_cert_expiry_timestamp_seconds gauge" in prom
    assert 'crdb_tls_cert_problems{host="node1",file="%s",kind="node"} 0\n' % node_crt in prom
    match = re.search(r'crdb_tls_cert_days_left\{host="node1",file="%s",kind="node"\} (\d+)' % re.escape(node_crt),
                      prom)
    assert match and int(match.group(1)) == rows[("node1", node_crt)]["days_left"]
    assert os.listdir(os.path.dirname(fleet.textfile("node1"))) == ["crdb_tls.prom"]
    assert os.path.exists(fleet.textfile("client1"))


def test_check_flags_the_cert_about_to_expire(fleet):
    fleet.make_due("node2", days=10)
    rc, out = fleet.playbook("check.yml")
    assert rc != 0, out[-6000:]
    due_file = os.path.join(fleet.certs_dir("node2"), "node.crt")
    report = read_report(fleet)
    assert report["ok"] is False
    rows = rows_by_file(report)
    row = rows[("node2", due_file)]
    assert row["status"] == "due" and row["kind"] == "node" and row["days_left"] == 9
    assert len(row["why"]) == 1 and "(9d left of 11d), inside its 30d node renewal window" in row["why"][0]
    others = [r for key, r in rows.items() if key != ("node2", due_file)]
    assert others and all(r["status"] == "ok" for r in others), [r for r in others if r["status"] != "ok"]
    assert report["summary"]["due"] == 1 and report["summary"]["ok"] == len(others)
    # Table row, and the failure message naming host, file and why.
    assert re.search(r"node2\s+\| %s\s+\| node\s+\| \S+ \S+\s+\| 9d\s+\| 30d\s+\| DUE\s+\| expires on "
                     % re.escape(due_file), out), out[-4000:]
    assert "node2 %s: expires on" % due_file in out
    with open(fleet.textfile("node2")) as handle:
        assert 'crdb_tls_cert_problems{host="node2",file="%s",kind="node"} 1\n' % due_file in handle.read()


def test_renew_renews_only_the_due_cert_and_reloads(fleet):
    before = node_fps(fleet)
    client_before = fingerprint(os.path.join(fleet.base, "client", "client.root.crt"))
    reloads = dict((h, fleet.status(h)["reloads"]) for h in NODES)
    rc, out = fleet.playbook("renew.yml")
    assert rc == 0, out[-6000:]
    after = node_fps(fleet)
    assert after["node2"] != before["node2"]
    assert after["node1"] == before["node1"] and after["node3"] == before["node3"]
    assert fingerprint(os.path.join(fleet.base, "client", "client.root.crt")) == client_before
    counts = recap(out)
    # One pass: the controller's run_once issue of node2's certificate (once per cluster) counts on the
    # host the cluster's step ran for; nothing else changes on node1 and node3 (fingerprints and reloads).
    assert counts["node1"]["changed"] + counts["node3"]["changed"] <= 1, counts
    assert re.search(r"TASK \[crdb\.tls\.node : Issue every certificate of each cluster's nodes in one call per "
                     r"cluster\] \*+\nchanged: \[node\d -> localhost\]", out), out[-6000:]
    assert counts["node2"]["changed"] >= 1 and counts["client1"]["changed"] == 0, counts
    # node2's stand-in got SIGHUP from this user and serves the new certificate; the others got nothing.
    status = fleet.status("node2")
    assert status["served_cert_sha256"] == after["node2"]
    assert status["reloads"] == reloads["node2"] + 1 and status["last_reload_sender_uid"] == os.getuid()
    assert [fleet.status(h)["reloads"] for h in ("node1", "node3")] == [reloads["node1"], reloads["node3"]]
    # No CA rotation open: the fleet mode, every node in one play (the phased plays match no host).
    assert out.count("PLAY [Renew node certificates across the fleet in one pass]") == 1
    assert re.search(r"PLAY \[Renew node certificates, one batch of hosts at a time\] \*+\nskipping: no hosts matched",
                     out), out[-6000:]

    rc, again = fleet.playbook("renew.yml")
    assert rc == 0, again[-6000:]
    assert all(v["changed"] == 0 for v in recap(again).values()), recap(again)
    assert node_fps(fleet) == after
    assert fleet.status("node2")["reloads"] == reloads["node2"] + 1

    rc, out = fleet.playbook("check.yml")
    assert rc == 0, out[-6000:]


def test_failing_host_stops_the_run(fleet):
    fleet.make_due("node2", days=10)
    due3 = fleet.make_due("node3", days=10)
    fleet.write_inventory(process_names={"node2": "nosuchprocess"})
    try:
        reloads3 = fleet.status("node3")["reloads"]
        issued3 = fingerprint(os.path.join(fleet.pki, "issued", "node3", "node.crt"))
        rc, out = fleet.playbook("renew.yml", "-e", "crdb_tls_renew_mode=phased")
    finally:
        fleet.write_inventory()
    # One host per batch, in the inventory's order: node1 and node2 went, node3 never started.
    batches = out.split("PLAY [Renew node certificates, one batch of hosts at a time]")[1:]
    assert len(batches) == 2, out[-6000:]
    assert [sorted(set(re.findall(r"^(?:ok|changed|fatal|skipping): \[(node\d)", b, re.M))) for b in batches] == [
        ["node1"], ["node2"]], out[-6000:]
    assert rc != 0, out[-6000:]
    new2 = fingerprint(os.path.join(fleet.certs_dir("node2"), "node.crt"))
    assert re.search(r"1 certificate problem\(s\) on node2:\s+node2 %s: 127\.0\.0\.1:%d serves sha256 \w+, not %s "
                     r"\(sha256 %s\): the running process did not reload it"
                     % (re.escape(os.path.join(fleet.certs_dir("node2"), "node.crt")), fleet.ports["node2"],
                        re.escape(os.path.join(fleet.certs_dir("node2"), "node.crt")), new2), out), out[-6000:]
    # node3 comes after node2: nothing of it was touched, on the controller or on the host.
    assert fingerprint(os.path.join(fleet.pki, "issued", "node3", "node.crt")) == issued3
    assert fingerprint(os.path.join(fleet.certs_dir("node3"), "node.crt")) == due3
    assert fleet.status("node3")["reloads"] == reloads3
    assert "node3" not in recap(out) or recap(out)["node3"]["changed"] == 0
    assert not re.search(r"^(ok|changed): \[node3\]", out.split("PLAY [Renew node certificates, one batch")[1], re.M)

    # With the right process name the run goes through: node2's missed reload is made up for
    # (its process still served the older certificate), node3 is renewed.
    reloads2 = fleet.status("node2")["reloads"]
    rc, out = fleet.playbook("renew.yml", "-e", "crdb_tls_renew_mode=phased")
    assert rc == 0, out[-6000:]
    assert fleet.status("node2")["served_cert_sha256"] == new2
    assert fleet.status("node2")["reloads"] == reloads2 + 1
    assert fleet.status("node3")["served_cert_sha256"] == fingerprint(os.path.join(fleet.certs_dir("node3"),
                                                                                   "node.crt")) != due3


def test_fleet_mode_a_failing_host_does_not_stop_the_others(fleet):
    due = dict((host, fleet.make_due(host, days=10)) for host in NODES)
    fleet.write_inventory(process_names={"node2": "nosuchprocess"})
    try:
        reloads = dict((h, fleet.status(h)["reloads"]) for h in NODES)
        rc, out = fleet.playbook("renew.yml")
    finally:
        fleet.write_inventory()
    assert rc != 0, out[-6000:]
    flat = " ".join(out.split())
    # One pass: every node in the same play, node2's failure reported where it happened and at the end.
    assert out.count("PLAY [Renew node certificates across the fleet in one pass]") == 1
    assert re.search(r"1 certificate problem\(s\) on node2:\s+node2 %s: 127\.0\.0\.1:%d serves sha256 \w+, not "
                     % (re.escape(os.path.join(fleet.certs_dir("node2"), "node.crt")), fleet.ports["node2"]), out), \
        out[-6000:]
    assert "renewal did not complete on 1 host(s): node2 (their errors are above; the other hosts were renewed " \
           "and verified)" in flat, out[-3000:]
    counts = recap(out)
    assert counts["node2"]["failed"] == 1 and counts["node1"]["failed"] == 0 and counts["node3"]["failed"] == 0
    # node1 and node3: new certificates, installed, reloaded once, served.
    for host in ("node1", "node3"):
        served = fingerprint(os.path.join(fleet.certs_dir(host), "node.crt"))
        assert served != due[host]
        assert fleet.status(host)["served_cert_sha256"] == served
        assert fleet.status(host)["reloads"] == reloads[host] + 1
    # node2 got its new files but its process was never told: it still serves the old certificate.
    assert fingerprint(os.path.join(fleet.certs_dir("node2"), "node.crt")) != due["node2"]
    assert fleet.status("node2")["served_cert_sha256"] == due["node2"]

    # Fixed, the next run reloads node2 and touches nothing else.
    rc, out = fleet.playbook("renew.yml")
    assert rc == 0, out[-6000:]
    assert fleet.status("node2")["served_cert_sha256"] == fingerprint(os.path.join(fleet.certs_dir("node2"),
                                                                                   "node.crt"))
    assert [fleet.status(h)["reloads"] for h in ("node1", "node3")] == [reloads["node1"] + 1, reloads["node3"] + 1]


def test_ca_inside_its_window_is_warned_never_rotated(fleet):
    with open(os.path.join(fleet.pki, "ca.signer.pem"), "rb") as handle:
        ca_before = handle.read()
    fps = node_fps(fleet)
    # No textfile here: it would change (the CA rows' problem counts), and this run must change nothing.
    rc, out = fleet.playbook("renew.yml", "-e", "crdb_tls_renew_before_ca=4000d", "-e", "crdb_tls_check_textfile_dir=")
    assert rc == 0, out[-6000:]
    flat = " ".join(out.split())
    assert re.search(r"\[WARNING\]: controller: the CA %s expires on \S+, in 36\d\d days, inside its 4000d renewal "
                     r"window; renew.yml does not rotate a CA: run playbooks/rotate_ca.yml"
                     % re.escape(os.path.join(fleet.pki, "ca.signer.pem")), flat), out[-6000:]
    with open(os.path.join(fleet.pki, "ca.signer.pem"), "rb") as handle:
        assert handle.read() == ca_before
    assert node_fps(fleet) == fps
    assert all(v["changed"] == 0 for v in recap(out).values()), recap(out)

    rc, out = fleet.playbook("check.yml", "-e", "crdb_tls_renew_before_ca=4000d")
    assert rc != 0
    report = read_report(fleet)
    due = sorted((r["host"], os.path.basename(r["file"])) for r in report["certificates"] if r["status"] != "ok")
    assert due == sorted([("controller", "ca.signer.pem"), ("client1", "ca.crt")]
                         + [(h, "ca.crt") for h in NODES])
    assert all("run playbooks/rotate_ca.yml" in r["why"][0] for r in report["certificates"] if r["status"] == "due")


def test_check_reports_a_host_it_could_not_check(fleet):
    """A host whose check fails (here: its client dir's owner does not exist) is a broken row, and the run fails."""
    client_dir = os.path.join(fleet.base, "client")
    fleet.write_inventory(extra_clients={"client2": {
        "ansible_host": "127.0.0.1",
        "crdb_tls_client_users": [{"name": "root", "os_user": "crdbtls-nosuchuser", "dir": client_dir}]}})
    try:
        rc, out = fleet.playbook("check.yml")
    finally:
        fleet.write_inventory()
    assert rc != 0, out[-6000:]
    report = read_report(fleet)
    broken = [r for r in report["certificates"] if r["status"] != "ok"]
    assert [(r["host"], r["file"], r["status"]) for r in broken] == [("client2", "-", "broken")], broken
    assert broken[0]["why"] == ["the check could not run: process_user 'crdbtls-nosuchuser': no such user on this host"]
    assert "client2 -: the check could not run: process_user 'crdbtls-nosuchuser': no such user on this host" in out
    assert sum(1 for r in report["certificates"] if r["host"] == "client1" and r["status"] == "ok") == 2
