"""The ssh scenario: minimal hosts reached over SSH as deploy with sudo.

What is checked here, on each host, through testinfra's SSH backend (the
connection the plays used, read from molecule's inventory):
  - the host is minimal (no cryptography for its python3, no openssl) and the
    login user is deploy, not root;
  - the certs dir: exactly the files of a standard node with a DB Console
    certificate, owned by cockroach, the dir 0700, keys 0600, certificates
    0644; no CA key anywhere on the host;
  - the certificates chain to the controller's CA (the openssl CLI on the
    controller), node.crt names the host's address;
  - the stand-in (a TEST FIXTURE, not CockroachDB) runs as cockroach, got two
    SIGHUPs (converge, then the pipelined side effect), both from the
    cockroach uid, and serves the installed ui.crt (python3's ssl on the host);
  - the site playbook's own handler ran, last with pipelining on;
  - ssh-client1, a minimal SQL client host (client role, user app): its certs
    dir holds ca.crt and app's pair only, owned by app, chained to the CA;
  - playbooks/check.yml through the controller names the file tampered with
    on a node and on the client host, and nothing else.
"""

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile

import pytest
import testinfra

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))

import crdb_molecule as m  # noqa: E402  (after the sys.path line)

INVENTORY = m.INVENTORY
PKI_DIR = m.PKI_DIR
CERTS_DIR = m.CERTS_DIR
LOG = m.STANDIN_LOG
FILES = {"ca.crt", "node.crt", "node.key", "client.root.crt", "client.root.key", "ui.crt", "ui.key"}
STATUS = m.STANDIN_STATUS
SERVED = "python3 -c 'import ssl; print(ssl.get_server_certificate((\"127.0.0.1\", 8080)))'"
LISTING = r"""python3 -c '
import grp, json, os, pwd, stat, sys
d = sys.argv[1]
def one(p):
    s = os.lstat(p)
    return [pwd.getpwuid(s.st_uid).pw_name, grp.getgrgid(s.st_gid).gr_name, "%04o" % stat.S_IMODE(s.st_mode),
            "directory" if stat.S_ISDIR(s.st_mode) else "file" if stat.S_ISREG(s.st_mode) else "other"]
out = {".": one(d)}
out.update((n, one(os.path.join(d, n))) for n in os.listdir(d))
print(json.dumps(out))' """


NODES = m.NODES
CLIENTS = m.CLIENTS
CLIENT_DIR = "/home/app/.cockroach-certs"
CLIENT_FILES = {"ca.crt", "client.app.crt", "client.app.key"}
_HOSTS = {}


def get_host(name):
    """The host over SSH as the inventory says (user, port, key), with sudo for the checks."""
    if name not in _HOSTS:
        _HOSTS[name] = testinfra.get_host("ansible://%s" % name, ansible_inventory=os.path.dirname(INVENTORY))
    return _HOSTS[name]


def sh(host, command, sudo=True):
    if sudo:
        with host.sudo():
            result = host.run(command)
    else:
        result = host.run(command)
    assert result.rc == 0, "%s\nrc=%d\nstdout: %s\nstderr: %s" % (command, result.rc, result.stdout, result.stderr)
    return result.stdout


def der_sha256(pem):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def test_the_scenario_has_its_hosts():
    assert NODES == ["ssh-node1", "ssh-node2"], NODES
    assert CLIENTS == ["ssh-client1"], CLIENTS


@pytest.mark.parametrize("name", NODES + CLIENTS)
def test_minimal_host_reached_as_deploy(name):
    host = get_host(name)
    assert sh(host, "id -un", sudo=False).strip() == "deploy"
    assert sh(host, "id -un").strip() == "root"
    assert host.run("python3 -c 'import cryptography'").rc != 0
    assert host.run("command -v openssl").rc != 0


@pytest.mark.parametrize("name", NODES)
def test_certs_dir_files_owners_and_modes(name):
    listing = json.loads(sh(get_host(name), LISTING + CERTS_DIR))
    assert listing["."] == ["cockroach", "cockroach", "0700", "directory"], listing["."]
    assert set(listing) - {"."} == FILES, sorted(listing)
    for file_name in sorted(FILES):
        mode = "0600" if file_name.endswith(".key") else "0644"
        assert listing[file_name] == ["cockroach", "cockroach", mode, "file"], (file_name, listing[file_name])


@pytest.mark.parametrize("name", CLIENTS)
def test_client_certs_dir_holds_the_users_pair_only(name):
    host = get_host(name)
    listing = json.loads(sh(host, LISTING + CLIENT_DIR))
    assert listing["."] == ["app", "app", "0700", "directory"], listing["."]
    assert set(listing) - {"."} == CLIENT_FILES, sorted(listing)
    for file_name in sorted(CLIENT_FILES):
        mode = "0600" if file_name.endswith(".key") else "0644"
        assert listing[file_name] == ["app", "app", mode, "file"], (file_name, listing[file_name])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "client.app.crt")
        with open(path, "w") as handle:
            handle.write(sh(host, "cat %s/client.app.crt" % CLIENT_DIR))
        proc = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(PKI_DIR, "ca.crt"), "-purpose",
                               "sslclient", path], capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), (proc.stdout, proc.stderr)
        subject = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-subject", "-nameopt", "RFC2253"],
                                 capture_output=True, text=True, check=True).stdout
        assert "CN=app" in subject, subject


@pytest.mark.parametrize("name", NODES + CLIENTS)
def test_no_ca_key_on_the_host(name):
    out = sh(get_host(name), "find / -xdev \\( -name 'ca*.key' -o -name '*.signer.key' \\) -print")
    assert out.strip() == "", out
    # The controller does hold it: the search would find it if it were here.
    assert os.path.exists(os.path.join(PKI_DIR, "ca.key"))


@pytest.mark.parametrize("name", NODES)
def test_certificates_chain_to_the_controllers_ca(name):
    host = get_host(name)
    with tempfile.TemporaryDirectory() as tmp:
        for file_name in ("node.crt", "client.root.crt", "ui.crt"):
            path = os.path.join(tmp, file_name)
            with open(path, "w") as handle:
                handle.write(sh(host, "cat %s/%s" % (CERTS_DIR, file_name)))
            proc = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(PKI_DIR, "ca.crt"), path],
                                  capture_output=True, text=True, check=False)
            verified = proc.returncode == 0 and proc.stdout.strip().endswith(": OK")
            assert verified, (file_name, proc.stdout, proc.stderr)
        text = subprocess.run(["openssl", "x509", "-in", os.path.join(tmp, "node.crt"), "-noout", "-ext",
                               "subjectAltName"], capture_output=True, text=True, check=True).stdout
        assert "DNS:%s" % name in text, text
        # side_effect's extra name: ui.crt was re-issued then.
        text = subprocess.run(["openssl", "x509", "-in", os.path.join(tmp, "ui.crt"), "-noout", "-ext",
                               "subjectAltName"], capture_output=True, text=True, check=True).stdout
        assert "DNS:console.crdb-tls.test" in text and "DNS:%s" % name in text, text


@pytest.mark.parametrize("name", NODES)
def test_two_reloads_signalled_by_the_cockroach_uid(name):
    host = get_host(name)
    uid = int(sh(host, "id -u cockroach").strip())
    log = sh(host, "cat %s" % LOG)
    hangups = [hup_uid for hup_uid, _pid in m.hangups(log)]
    # converge (a new ui.crt) and side_effect (ui.crt with one more name, pipelining on); none for idempotence.
    assert hangups == [str(uid)] * 2, log
    assert "reload failed" not in log, log
    status = json.loads(sh(host, STATUS))
    assert (status["reloads"], status["reload_failures"], status["last_reload_sender_uid"]) == (2, 0, uid), status
    # The stand-in runs as cockroach.
    owners = sh(host, "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = cockroach ] && "
                      "stat -c %U $p; done; true")
    assert owners.split() == ["cockroach"], owners


@pytest.mark.parametrize("name", NODES)
def test_db_console_serves_the_installed_ui_cert(name):
    host = get_host(name)
    installed = der_sha256(sh(host, "cat %s/ui.crt" % CERTS_DIR))
    served = der_sha256(sh(host, SERVED))
    assert served == installed
    status = json.loads(sh(host, STATUS))
    assert status["served_cert_file"] == "ui.crt", status
    assert status["served_cert_sha256"].replace(":", "").lower() == installed, status


@pytest.mark.parametrize("name", NODES)
def test_the_sites_own_handler_ran_last_with_pipelining(name):
    host = get_host(name)
    assert sh(host, "cat /var/lib/site-handler-ran", sudo=False).strip() == "ran with pipelining True"
    assert "(pipelining True)" in sh(host, "cat /etc/motd", sudo=False)


def test_check_through_the_controller_names_a_tampered_file():
    """side_effect.yml: playbooks/check.yml after ssh-node1's node.crt and ssh-client1's client.app.crt were made 0664
    (hosts without cryptography: judged through the controller)."""
    with open(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "check-tampered.out")) as handle:
        out = handle.read()
    assert out.startswith("rc=2\n"), out[-3000:]
    for host, where, file_name in (("ssh-node1", CERTS_DIR, "node.crt"), ("ssh-client1", CLIENT_DIR, "client.app.crt")):
        assert re.search(r"%s %s: not the set validated on the controller \([^)]*%s[^)]*\) \(broken\)"
                         % (host, re.escape(where), re.escape(file_name)), out), (host, out[-3000:])
    with open(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "check-tampered.json")) as handle:
        report = json.load(handle)
    broken = sorted((r["host"], r["file"]) for r in report["certificates"] if r["status"] != "ok")
    assert broken == [("ssh-client1", CLIENT_DIR), ("ssh-node1", CERTS_DIR)], broken
    # Every certificate file of every host is in the report, named as the host's file, judged on the controller.
    files = set((r["host"], r["file"]) for r in report["certificates"])
    for name in NODES:
        for file_name in ("ca.crt", "node.crt", "client.root.crt", "ui.crt"):
            assert (name, "%s/%s" % (CERTS_DIR, file_name)) in files, (name, file_name, sorted(files))
    for name in CLIENTS:
        for file_name in ("ca.crt", "client.app.crt"):
            assert (name, "%s/%s" % (CLIENT_DIR, file_name)) in files, (name, file_name, sorted(files))
