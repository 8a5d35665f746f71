# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Short-lived certificates renewed without anyone at the keyboard (issue 13).

1. roles/renew_timer renders a service and a timer that ``systemd-analyze
   verify`` accepts, and refuses a missing inventory by name.
2. The wrapper script: a second run while one holds the lock exits 75 and
   does not run the playbook; a run exits with the playbook's status and
   writes the Prometheus textfile of the last run (a failed run keeps the last
   success).
3. A local fleet (3 nodes running the stand-in, 1 client host; as
   test_renew_check.py) with 6-minute certificates and the default 33%
   window, renewed by the wrapper repeatedly, in real time: no certificate on
   disk or served ever expires, no certificate is re-issued before its window
   opens or left alone once it was open when the run started, and every
   reload is verified (each stand-in serves what is on disk).
   The lifetime is minutes, not hours, so that the clock really runs through
   a window or two in one test; the decision at points along a 1 to 48-hour
   lifetime, with the clock given to the decision only, is in
   tests/unit/plugins/module_utils/test_renewal.py.
"""

import datetime
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from peerlib import ROOT, ansible_tool, fingerprint
from test_renew_check import NODES, Fleet

from cryptography import x509

WRAPPER = os.path.join(ROOT, "roles", "renew_timer", "files", "crdb-tls-renew")
LIFETIME = "6m"
SHARE = 0.33
# Runs of the wrapper, one after the other, over more than a lifetime: every leaf is renewed at least once.
RUN_FOR = 7 * 60


def cert_times(path):
    with open(path, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def now():
    return datetime.datetime.now(datetime.timezone.utc)


class ShortFleet(Fleet):
    """test_renew_check's fleet with short-lived certificates and the default (fractional) windows."""

    def write_inventory(self, process_names=None, extra_clients=None):
        super().write_inventory(process_names, extra_clients)
        path = os.path.join(self.base, "inventory.yml")
        with open(path) as handle:
            inventory = json.load(handle)
        variables = inventory["all"]["vars"]
        variables.pop("crdb_tls_renew_before")          # the role's default: 33%
        variables["crdb_tls_lifetime"] = LIFETIME
        with open(path, "w") as handle:
            json.dump(inventory, handle, indent=1)

    def leaves(self):
        """``{(host, file): path}`` of every leaf certificate on the fleet."""
        out = {}
        for host in NODES:
            for name in ("node.crt", "client.root.crt"):
                out[(host, name)] = os.path.join(self.certs_dir(host), name)
        out[("client1", "client.root.crt")] = os.path.join(self.base, "client", "client.root.crt")
        return out


def wrapper_env(base, inventory, playbook, textfile=None, ansible_playbook=None, env=None):
    out = dict(env or os.environ)
    out.update({
        "CRDB_TLS_RENEW_INVENTORY": inventory,
        "CRDB_TLS_RENEW_PLAYBOOK": playbook,
        "CRDB_TLS_RENEW_ANSIBLE_PLAYBOOK": ansible_playbook or ansible_tool(),
        "CRDB_TLS_RENEW_LOCK": os.path.join(base, "renew.lock"),
        "CRDB_TLS_RENEW_NAME": "crdb-tls-renew-test",
    })
    if textfile:
        out["CRDB_TLS_RENEW_TEXTFILE"] = textfile
    return out


def run_wrapper(env, *args, timeout=900):
    return subprocess.run([WRAPPER] + list(args), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, check=False)


def metrics(path):
    with open(path) as handle:
        text = handle.read()
    return dict((m.group(1), int(m.group(2)))
                for m in re.finditer(r'^(crdb_tls_renew_\w+)\{name="crdb-tls-renew-test"\} (-?\d+)$', text, re.M))


# ------------------------------------------------------------------------------- the role's units

ROLE_PLAY = """\
---
- name: Install the renewal timer into a scratch root
  hosts: localhost
  gather_facts: false
  roles:
    - role: crdb.tls.renew_timer
      vars:
        crdb_tls_renew_timer_enable: false
"""


def test_timer_units_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    if os.geteuid() != 0:
        pytest.skip("the role installs root-owned files")
    units, base = tmp_path / "units", tmp_path
    units.mkdir()
    (base / "inventory.yml").write_text("{}\n")
    play = base / "play.yml"
    play.write_text(ROLE_PLAY)
    fleet = Fleet(str(base))
    extra = {"crdb_tls_renew_timer_inventory": str(base / "inventory.yml"),
             "crdb_tls_renew_timer_unit_dir": str(units),
             "crdb_tls_renew_timer_script": str(base / "crdb-tls-renew"),
             "crdb_tls_renew_timer_extra_args": ["-e", "crdb_tls_renew_mode=fleet", "--forks", "20"],
             "crdb_tls_renew_timer_textfile_dir": "/var/lib/node_exporter/textfile_collector",
             "crdb_tls_renew_timer_environment": {"ANSIBLE_FORKS": "20"}}
    local = ["-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable]
    cmd = [ansible_tool()] + local + [str(play), "-e", json.dumps(extra)]
    proc = subprocess.run(cmd, env=fleet.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300, check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out[-4000:]
    service = (units / "crdb-tls-renew.service").read_text()
    timer = (units / "crdb-tls-renew.timer").read_text()
    assert "ExecStart=%s -e crdb_tls_renew_mode=fleet --forks 20\n" % (base / "crdb-tls-renew") in service
    assert 'Environment="CRDB_TLS_RENEW_INVENTORY=%s"' % (base / "inventory.yml") in service
    assert ('Environment="CRDB_TLS_RENEW_TEXTFILE=/var/lib/node_exporter/textfile_collector/crdb-tls-renew.prom"'
            in service)
    assert 'Environment="ANSIBLE_FORKS=20"' in service and "SuccessExitStatus=75\n" in service
    assert "Type=oneshot\n" in service and "User=root\n" in service
    assert "OnCalendar=hourly\n" in timer and "RandomizedDelaySec=15min\n" in timer
    assert "Persistent=true\n" in timer and "Unit=crdb-tls-renew.service\n" in timer
    assert os.stat(base / "crdb-tls-renew").st_mode & 0o777 == 0o755
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "crdb-tls-renew.service"),
                             str(units / "crdb-tls-renew.timer")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    text = verify.stdout.decode()
    # Complaints about the host's own units (this container has no booted systemd) are not ours.
    ours = [line for line in text.splitlines() if "crdb-tls-renew" in line]
    assert verify.returncode == 0 and ours == [], text
    # Unchanged on a second run.
    again = subprocess.run(cmd, env=fleet.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=300, check=False)
    assert again.returncode == 0 and re.search(r"localhost\s+:.*changed=0 ", again.stdout.decode()), \
        again.stdout.decode()[-3000:]

    # No inventory: refused by name before anything is written.
    del extra["crdb_tls_renew_timer_inventory"]
    no_inventory = json.dumps(dict(extra, crdb_tls_renew_timer_unit_dir=str(base / "nothing")))
    missing = subprocess.run([ansible_tool()] + local + [str(play), "-e", no_inventory],
                             env=fleet.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=300, check=False)
    assert missing.returncode != 0
    flat = " ".join(missing.stdout.decode().split())
    assert "crdb_tls_renew_timer_inventory" in flat, flat[-3000:]
    assert not os.path.exists(base / "nothing")


# ------------------------------------------------------------------------------- the wrapper

MARK_PLAY = """\
---
- name: Leave a mark (stands for renew.yml in the wrapper's tests)
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Mark
      ansible.builtin.copy:
        content: "ran\\n"
        dest: "{{ mark }}"
        mode: "0644"
    - name: Fail when asked
      ansible.builtin.fail:
        msg: asked to fail
      when: fail | default(false) | bool
"""


def test_wrapper_lock_status_and_textfile(tmp_path):
    base = str(tmp_path)
    play = tmp_path / "mark.yml"
    play.write_text(MARK_PLAY)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    mark, textfile = tmp_path / "mark", tmp_path / "prom" / "renew.prom"
    textfile.parent.mkdir()
    env = wrapper_env(base, str(inventory), str(play), str(textfile), env=Fleet(base).env)

    # Another run holds the lock: this one is skipped, the playbook does not run, the textfile is not written.
    with open(env["CRDB_TLS_RENEW_LOCK"], "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = run_wrapper(env, "-e", "mark=%s" % mark)
    assert skipped.returncode == 75, skipped.stderr.decode()
    assert ("another run holds %s: this run is skipped (exit 75), the playbook is not run"
            % env["CRDB_TLS_RENEW_LOCK"]) in skipped.stderr.decode()
    assert not mark.exists() and not textfile.exists()

    # Two at once for real: the first holds the lock while the playbook runs; the second is skipped.
    first = subprocess.Popen([WRAPPER, "-e", "mark=%s" % mark], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock_path = env["CRDB_TLS_RENEW_LOCK"]
    deadline = time.monotonic() + 60
    while True:          # until the first run holds the lock
        with open(lock_path, "a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                break
            fcntl.flock(probe, fcntl.LOCK_UN)
        assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.02)
    second = run_wrapper(env, "-e", "mark=%s" % (tmp_path / "second-mark"))
    out, err = first.communicate(timeout=300)
    assert second.returncode == 75 and not (tmp_path / "second-mark").exists(), second.stderr.decode()
    assert first.returncode == 0, (out + err).decode()[-3000:]
    assert mark.read_text() == "ran\n"
    ok = metrics(str(textfile))
    assert ok["crdb_tls_renew_last_run_exit_status"] == 0
    assert ok["crdb_tls_renew_last_success_timestamp_seconds"] >= ok["crdb_tls_renew_last_run_timestamp_seconds"]
    assert 0 <= ok["crdb_tls_renew_last_run_duration_seconds"] < 300
    assert abs(ok["crdb_tls_renew_last_run_timestamp_seconds"] - time.time()) < 600
    assert os.listdir(str(textfile.parent)) == ["renew.prom"]     # no temporary file left
    assert os.stat(str(textfile)).st_mode & 0o777 == 0o644

    # A failing playbook: its exit status, in the textfile too; the last success is kept.
    failed = run_wrapper(env, "-e", "mark=%s" % mark, "-e", "fail=true")
    assert failed.returncode == 2, failed.stderr.decode()
    bad = metrics(str(textfile))
    assert bad["crdb_tls_renew_last_run_exit_status"] == 2
    assert bad["crdb_tls_renew_last_success_timestamp_seconds"] == ok["crdb_tls_renew_last_success_timestamp_seconds"]
    assert bad["crdb_tls_renew_last_run_timestamp_seconds"] >= ok["crdb_tls_renew_last_run_timestamp_seconds"]

    # Configuration mistakes: 64, named.
    for change, message in (({"CRDB_TLS_RENEW_INVENTORY": ""}, "CRDB_TLS_RENEW_INVENTORY is not set"),
                            ({"CRDB_TLS_RENEW_INVENTORY": base + "/none.yml"}, "inventory %s/none.yml does not exist"
                             % base),
                            ({"CRDB_TLS_RENEW_TEXTFILE": base + "/renew.txt"}, "must end in .prom")):
        proc = run_wrapper(dict(env, **change))
        assert proc.returncode == 64 and message in proc.stderr.decode(), proc.stderr.decode()


# ------------------------------------------------------------------------------- the fleet, in real time

@pytest.fixture(scope="module")
def short_fleet(tmp_path_factory):
    fleet = ShortFleet(str(tmp_path_factory.mktemp("short-fleet")))
    fleet.write_inventory()
    rc, out = fleet.playbook("site.yml")
    assert rc == 0, out[-6000:]
    try:
        for host in NODES:
            fleet.start(host)
        fleet.write_inventory()
        yield fleet
    finally:
        fleet.stop()


def test_short_lived_fleet_renewed_by_the_wrapper(short_fleet):
    fleet = short_fleet
    textfile = os.path.join(fleet.base, "renew.prom")
    env = wrapper_env(fleet.base, os.path.join(fleet.base, "inventory.yml"), os.path.join(ROOT, "playbooks",
                                                                                          "renew.yml"),
                      textfile, env=fleet.env)
    leaves = fleet.leaves()
    first = dict((key, cert_times(path)) for key, path in leaves.items())
    for (host, name), (start, end) in first.items():
        # 6 minutes, back-dated a tenth of that (36 s), not 24 hours.
        assert end - start == datetime.timedelta(minutes=6, seconds=36), (host, name, start, end)
    renewals = dict((key, 0) for key in leaves)
    runs = 0
    began = time.monotonic()
    previous = dict((key, (fingerprint(path),) + cert_times(path)) for key, path in leaves.items())
    while time.monotonic() - began < RUN_FOR or min(renewals.values()) < 1:
        assert time.monotonic() - began < RUN_FOR + 300, "some certificate was never renewed: %s" % renewals
        run_start = now()
        proc = run_wrapper(env, "-e", "crdb_tls_renew_mode=fleet")
        run_end = now()
        runs += 1
        assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()[-6000:]
        assert metrics(textfile)["crdb_tls_renew_last_run_exit_status"] == 0
        for key, path in leaves.items():
            fp, start, end = (fingerprint(path),) + cert_times(path)
            old_fp, old_start, old_end = previous[key]
            window = datetime.timedelta(seconds=(old_end - old_start).total_seconds() * SHARE)
            if fp != old_fp:
                renewals[key] += 1
                # Re-issued: the old one was inside its window by the time the run decided (at the latest
                # when the run ended), and still valid when the run began.
                assert old_end - window <= run_end, (key, "re-issued before its window opened", old_end, run_end)
                assert run_start < old_end, (key, "the old certificate had expired", old_end, run_start)
            else:
                # Kept: its window had not opened when the run began.
                assert run_start < old_end - window, (key, "inside its window at the start and not renewed",
                                                      old_end, window, run_start)
            # Nothing on disk is expired after a run, with a lifetime's worth of margin (the next run).
            assert run_end < end, (key, "expired", end, run_end)
            previous[key] = (fp, start, end)
        for host in NODES:
            status = fleet.status(host)
            assert status["served_cert_sha256"] == previous[(host, "node.crt")][0], (host, status)
        assert all(cert_times(p)[1] > now() for p in leaves.values())
    # Renewed in its window only: more runs than renewals (most runs find nothing due).
    assert min(renewals.values()) >= 1 and runs > max(renewals.values()), (runs, renewals)
