# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificates issued by the collection, checked by real TLS peers.

Everything is issued once by tests/peers/playbooks/issue_layouts.yml through
crdb.tls.ca and crdb.tls.certificate (fixture ``peer_certs``), for the three
layouts of CockroachDB's "custom CA" page. Then:

* ``openssl verify`` with the purpose Go's TLS stack needs of each file
  (sslserver for node.crt and ui.crt, sslclient for node.crt in the standard
  layout, client.node.crt and client.<user>.crt) against the CA file a node
  uses for it (client certificates: ca-client.crt in split_ca, else ca.crt);
* mutual TLS between two nodes of each layout with ``openssl s_server`` (node2,
  client certificate required and verified against the client CA) and
  ``openssl s_client`` (node1, presenting client.node.crt when there, else
  node.crt, verifying node2's name), and refusals of another CA's certificates;
* a real PostgreSQL 15 server with ``cert`` authentication (CN = user) and
  psql with ``sslmode=verify-full``, for the standard and split_ca layouts.

Skipped only when the openssl CLI or the PostgreSQL server binaries are missing.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

OPENSSL = shutil.which("openssl")

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl CLI is not installed")

LAYOUTS = ("standard", "split_node", "split_ca")
NODES = ("node1", "node2")
HTTP_REQUEST = b"GET / HTTP/1.0\r\n\r\n"


def postgres_bindir():
    """Directory with initdb, postgres and pg_ctl (Debian keeps them off PATH), or None."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port):
    """True when something listens on 127.0.0.1:port (read from /proc: no connection is made,
    so a one-shot s_server is not used up by the check)."""
    wanted = "0100007F:%04X" % port
    try:
        with open("/proc/net/tcp") as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[1] == wanted and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def wait_for(what, predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def run(cmd, timeout=30, **kwargs):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False,
                          **kwargs)


def text(proc):
    return (proc.stdout + proc.stderr).decode("utf-8", "replace")


def node_dir(root, layout, node):
    return os.path.join(root, layout, node)


def clients_dir(root, layout):
    return os.path.join(root, layout, "clients")


def client_ca(directory):
    """The file a node verifies client certificates with: ca-client.crt when present, else ca.crt."""
    split = os.path.join(directory, "ca-client.crt")
    return split if os.path.exists(split) else os.path.join(directory, "ca.crt")


def outgoing_cert(directory):
    """What a node presents when dialing a peer: client.node.crt when present, else node.crt."""
    split = os.path.join(directory, "client.node.crt")
    name = "client.node" if os.path.exists(split) else "node"
    return os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")


def openssl_verify(purpose, cafile, cert, untrusted=None):
    cmd = [OPENSSL, "verify", "-purpose", purpose, "-CAfile", cafile]
    if untrusted:
        cmd += ["-untrusted", untrusted]
    return run(cmd + [cert])


def assert_verifies(purpose, cafile, cert):
    proc = openssl_verify(purpose, cafile, cert)
    assert proc.returncode == 0 and text(proc).strip().endswith(": OK"), \
        "openssl verify -purpose %s -CAfile %s %s:\n%s" % (purpose, cafile, cert, text(proc))


def assert_refused(purpose, cafile, cert, why):
    proc = openssl_verify(purpose, cafile, cert)
    assert proc.returncode != 0, "%s verified against %s but must not" % (cert, cafile)
    assert why in text(proc), text(proc)


# --------------------------------------------------------------------------- openssl verify

@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_node_and_ui_certs_verify_as_servers(peer_certs, layout, node):
    d = node_dir(peer_certs, layout, node)
    assert_verifies("sslserver", os.path.join(d, "ca.crt"), os.path.join(d, "node.crt"))
    if node == "node1":  # the playbook gives node1 a ui.crt; it is optional
        assert_verifies("sslserver", os.path.join(d, "ca.crt"), os.path.join(d, "ui.crt"))


@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_node_client_side_verifies_against_the_client_ca(peer_certs, layout, node):
    d = node_dir(peer_certs, layout, node)
    if layout == "standard":
        # node.crt is dual-use: serverAuth and clientAuth, CN=node.
        assert_verifies("sslclient", os.path.join(d, "ca.crt"), os.path.join(d, "node.crt"))
        assert not os.path.exists(os.path.join(d, "client.node.crt"))
    else:
        assert_verifies("sslclient", client_ca(d), os.path.join(d, "client.node.crt"))
        # The split node.crt is a server certificate only.
        assert_refused("sslclient", os.path.join(d, "ca.crt"), os.path.join(d, "node.crt"),
                       "unsuitable certificate purpose")
    assert os.path.basename(client_ca(d)) == ("ca-client.crt" if layout == "split_ca" else "ca.crt")


@pytest.mark.parametrize("user", ("root", "alice"))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_client_certs_verify_as_clients(peer_certs, layout, user):
    c = clients_dir(peer_certs, layout)
    cafile = os.path.join(peer_certs, "pki", "ca-client.crt" if layout == "split_ca" else "ca.crt")
    assert_verifies("sslclient", cafile, os.path.join(c, "client.%s.crt" % user))
    # A client certificate is not a server certificate.
    assert_refused("sslserver", cafile, os.path.join(c, "client.%s.crt" % user), "unsuitable certificate purpose")


def test_split_ca_client_certs_do_not_verify_against_ca_crt(peer_certs):
    ca_crt = os.path.join(peer_certs, "pki", "ca.crt")
    for cert in (os.path.join(clients_dir(peer_certs, "split_ca"), "client.alice.crt"),
                 os.path.join(node_dir(peer_certs, "split_ca", "node1"), "client.node.crt")):
        assert_refused("sslclient", ca_crt, cert, "unable to get local issuer certificate")


def test_other_ca_client_cert_does_not_verify(peer_certs):
    other = os.path.join(peer_certs, "other", "clients", "client.alice.crt")
    assert_verifies("sslclient", os.path.join(peer_certs, "other", "clients", "ca.crt"), other)
    for layout in LAYOUTS:
        assert_refused("sslclient", client_ca(node_dir(peer_certs, layout, "node2")), other,
                       "unable to get local issuer certificate")


# --------------------------------------------------------------------------- mutual TLS

class Handshake(object):
    def __init__(self, rc, client, server):
        self.rc = rc
        self.client = client
        self.server = server

    def __repr__(self):
        return "client rc %s\n--- client ---\n%s\n--- server ---\n%s" % (
            self.rc, self.client[-3000:], self.server[-3000:])

    @property
    def ok(self):
        return (self.rc == 0 and "Verify return code: 0 (ok)" in self.client
                and "HTTP/1.0 200 ok" in self.client and "Client certificate" in self.client)


def handshake(processes, tmp_path, server_cert, server_key, server_ca, client_cert, client_key, client_cafile,
              hostname="localhost"):
    """One connection from s_client to an s_server that requires and verifies a client certificate.

    The server (-www, -naccept 1) answers one HTTP request with a status page
    that lists the client certificate it accepted, then exits.
    """
    port = free_port()
    log_path = str(tmp_path / ("s_server.%d.log" % port))
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [OPENSSL, "s_server", "-accept", "127.0.0.1:%d" % port, "-naccept", "1",
             "-cert", server_cert, "-key", server_key, "-CAfile", server_ca,
             "-Verify", "1", "-verify_return_error", "-www"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    processes.append(server)
    wait_for("openssl s_server on port %d" % port, lambda: listening(port) or server.poll() is not None)
    assert server.poll() is None, open(log_path, errors="replace").read()
    client = run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", hostname,
                  "-verify_return_error", "-verify_hostname", hostname, "-CAfile", client_cafile,
                  "-cert", client_cert, "-key", client_key, "-ign_eof"],
                 input=HTTP_REQUEST, timeout=20)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=5)
    with open(log_path, errors="replace") as log:
        return Handshake(client.returncode, text(client), log.read())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mutual_tls_between_two_nodes(peer_certs, processes, tmp_path, layout):
    n1, n2 = node_dir(peer_certs, layout, "node1"), node_dir(peer_certs, layout, "node2")
    cert, key = outgoing_cert(n1)
    assert os.path.basename(cert) == ("node.crt" if layout == "standard" else "client.node.crt")
    result = handshake(processes, tmp_path, os.path.join(n2, "node.crt"), os.path.join(n2, "node.key"),
                       client_ca(n2), cert, key, os.path.join(n1, "ca.crt"))
    assert result.ok, result
    # The server saw and verified node1's certificate, CN=node, against its client CA.
    assert "O = Cockroach, CN = node\nverify return:1" in result.server, result


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mutual_tls_refuses_a_client_cert_of_another_ca(peer_certs, processes, tmp_path, layout):
    n1, n2 = node_dir(peer_certs, layout, "node1"), node_dir(peer_certs, layout, "node2")
    other = os.path.join(peer_certs, "other", "clients")
    result = handshake(processes, tmp_path, os.path.join(n2, "node.crt"), os.path.join(n2, "node.key"),
                       client_ca(n2), os.path.join(other, "client.alice.crt"),
                       os.path.join(other, "client.alice.key"), os.path.join(n1, "ca.crt"))
    assert not result.ok, result
    assert "HTTP/1.0 200 ok" not in result.client, result
    assert "certificate verify failed" in result.server, result
    assert "alert unknown ca" in result.client, result


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mutual_tls_refuses_a_server_of_another_ca(peer_certs, processes, tmp_path, layout):
    n1, n2 = node_dir(peer_certs, layout, "node1"), node_dir(peer_certs, layout, "node2")
    cert, key = outgoing_cert(n1)
    result = handshake(processes, tmp_path, os.path.join(n2, "node.crt"), os.path.join(n2, "node.key"),
                       client_ca(n2), cert, key, os.path.join(peer_certs, "other", "clients", "ca.crt"))
    assert not result.ok, result
    assert "certificate verify failed" in result.client, result


def test_mutual_tls_checks_the_node_name(peer_certs, processes, tmp_path):
    n1, n2 = node_dir(peer_certs, "standard", "node1"), node_dir(peer_certs, "standard", "node2")
    result = handshake(processes, tmp_path, os.path.join(n2, "node.crt"), os.path.join(n2, "node.key"),
                       client_ca(n2), os.path.join(n1, "node.crt"), os.path.join(n1, "node.key"),
                       os.path.join(n1, "ca.crt"), hostname="node1")
    assert not result.ok, result
    assert "hostname mismatch" in result.client, result


def test_split_ca_node_refuses_client_node_cert_when_verifying_with_ca_crt(peer_certs, processes, tmp_path):
    """Why split_ca needs ca-client.crt: client.node.crt does not chain to ca.crt."""
    n1, n2 = node_dir(peer_certs, "split_ca", "node1"), node_dir(peer_certs, "split_ca", "node2")
    cert, key = outgoing_cert(n1)
    result = handshake(processes, tmp_path, os.path.join(n2, "node.crt"), os.path.join(n2, "node.key"),
                       os.path.join(n2, "ca.crt"), cert, key, os.path.join(n1, "ca.crt"))
    assert not result.ok, result
    assert "certificate verify failed" in result.server, result


# --------------------------------------------------------------------------- PostgreSQL

class PostgresCluster(object):
    """A throw-away PostgreSQL cluster with TLS and cert authentication only."""

    def __init__(self, bindir, layout, node, server_ca):
        self.bindir = bindir
        self.layout = layout
        self.port = free_port()
        # Under /tmp, not pytest's 0700 tmp tree: the postgres user must reach it.
        self.workdir = tempfile.mkdtemp(prefix="crdb-peers-pg-")
        self.data = os.path.join(self.workdir, "data")
        self.as_postgres = []
        self.owner = None
        if os.geteuid() == 0:
            self.owner = pwd.getpwnam("postgres")
            os.chown(self.workdir, self.owner.pw_uid, self.owner.pw_gid)
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.workdir, 0o700)
        self.files = {}
        for name, source, mode in (("server.crt", os.path.join(node, "node.crt"), 0o644),
                                   ("server.key", os.path.join(node, "node.key"), 0o600),
                                   ("ca.crt", server_ca, 0o644)):
            path = os.path.join(self.workdir, name)
            shutil.copyfile(source, path)
            os.chmod(path, mode)
            if self.owner is not None:
                os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
            self.files[name] = path

    def _run(self, args, timeout=60, **kwargs):
        proc = run(self.as_postgres + [os.path.join(self.bindir, args[0])] + list(args[1:]),
                   timeout=timeout, cwd=self.workdir, **kwargs)
        assert proc.returncode == 0, "%s failed:\n%s" % (args[0], text(proc))
        return proc

    def start(self):
        self._run(["initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync",
                   "-E", "UTF8", "--locale=C"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write("\n".join([
                "port = %d" % self.port,
                "listen_addresses = '127.0.0.1'",
                "unix_socket_directories = '%s'" % self.workdir,
                "ssl = on",
                "ssl_cert_file = '%s'" % self.files["server.crt"],
                "ssl_key_file = '%s'" % self.files["server.key"],
                "ssl_ca_file = '%s'" % self.files["ca.crt"],
                "fsync = off",
                "log_connections = on",
                "",
            ]))
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as hba:
            hba.write("hostssl all all 127.0.0.1/32 cert\n")
        # Roles are made in single-user mode, so pg_hba.conf needs no other line.
        self._run(["postgres", "--single", "-D", self.data, "postgres"],
                  input=b"CREATE ROLE alice LOGIN;\nCREATE ROLE root LOGIN;\n")
        self._run(["pg_ctl", "-D", self.data, "-l", os.path.join(self.workdir, "server.log"),
                   "-w", "-t", "30", "start"])
        wait_for("PostgreSQL on port %d" % self.port, lambda: listening(self.port), timeout=30)

    def stop(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                run(self.as_postgres + [os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                                        "-m", "immediate", "-w", "-t", "30", "stop"], timeout=40)
            finally:
                self._kill_leftover()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill_leftover(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as handle:
                pid = int(handle.readline().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 9)
        except OSError:
            pass

    def log(self):
        try:
            with open(os.path.join(self.workdir, "server.log"), errors="replace") as handle:
                return handle.read()[-3000:]
        except OSError:
            return ""


def psql(host, user, cert_dir, cert_user, rootcert, hostaddr=None, port=None):
    psql_bin = shutil.which("psql") or os.path.join(postgres_bindir() or "", "psql")
    conninfo = ("host=%s port=%d dbname=postgres user=%s sslmode=verify-full sslrootcert=%s "
                "sslcert=%s sslkey=%s connect_timeout=10"
                % (host, port, user, rootcert, os.path.join(cert_dir, "client.%s.crt" % cert_user),
                   os.path.join(cert_dir, "client.%s.key" % cert_user)))
    if hostaddr:
        conninfo += " hostaddr=%s" % hostaddr
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PG"))
    return run([psql_bin, "-X", "-A", "-t", "-d", conninfo, "-c", "select current_user"], env=env, timeout=30)


@pytest.fixture(scope="module", params=["standard", "split_ca"])
def postgres(request, peer_certs):
    """A PostgreSQL server with node1's node.crt of the layout, verifying clients with its client CA."""
    bindir = postgres_bindir()
    missing = [b for b in ("initdb", "postgres", "pg_ctl") if not bindir or not os.path.exists(os.path.join(bindir, b))]
    if missing or not (shutil.which("psql") or os.path.exists(os.path.join(bindir, "psql"))):
        pytest.skip("the PostgreSQL server binaries are not installed (initdb, postgres, pg_ctl, psql)")
    if os.geteuid() == 0 and not _user_exists("postgres"):
        pytest.skip("running as root and there is no postgres user to run the server as")
    layout = request.param
    node = node_dir(peer_certs, layout, "node1")
    cluster = PostgresCluster(bindir, layout, node, client_ca(node))
    try:
        cluster.start()
        cluster.clients = clients_dir(peer_certs, layout)
        cluster.rootcert = os.path.join(cluster.clients, "ca.crt")
        yield cluster
    finally:
        cluster.stop()


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_postgres_serves_the_layouts_node_cert(postgres):
    with open(postgres.files["ca.crt"]) as handle:
        ca = handle.read()
    expected = "ca-client.crt" if postgres.layout == "split_ca" else "ca.crt"
    with open(os.path.join(os.path.dirname(postgres.clients), "node1", expected)) as handle:
        assert handle.read() == ca


@pytest.mark.parametrize("user", ("alice", "root"))
def test_postgres_accepts_each_user_with_its_own_cert(postgres, user):
    proc = psql("localhost", user, postgres.clients, user, postgres.rootcert, port=postgres.port)
    assert proc.returncode == 0 and proc.stdout.decode().strip() == user, text(proc) + postgres.log()


def test_postgres_verify_full_by_ip_address(postgres):
    proc = psql("127.0.0.1", "alice", postgres.clients, "alice", postgres.rootcert, port=postgres.port)
    assert proc.returncode == 0 and proc.stdout.decode().strip() == "alice", text(proc) + postgres.log()


def test_postgres_refuses_another_users_cert(postgres):
    proc = psql("localhost", "root", postgres.clients, "alice", postgres.rootcert, port=postgres.port)
    assert proc.returncode != 0
    assert 'certificate authentication failed for user "root"' in text(proc), text(proc)


def test_postgres_refuses_a_client_cert_of_another_ca(postgres, peer_certs):
    other = os.path.join(peer_certs, "other", "clients")
    proc = psql("localhost", "alice", other, "alice", postgres.rootcert, port=postgres.port)
    assert proc.returncode != 0
    assert "alert unknown ca" in text(proc), text(proc)


def test_postgres_refuses_a_server_name_not_in_the_sans(postgres):
    proc = psql("wrong.example", "alice", postgres.clients, "alice", postgres.rootcert, hostaddr="127.0.0.1",
                port=postgres.port)
    assert proc.returncode != 0
    assert 'does not match host name "wrong.example"' in text(proc), text(proc)


def test_postgres_refuses_a_client_cert_of_the_other_cluster_ca(postgres, peer_certs):
    """The server trusts only its layout's client CA.

    standard: ca.crt, so client.alice.crt signed by the client CA (split_ca) is refused;
    split_ca: ca-client.crt, so client.alice.crt signed by the node CA (standard) is refused.
    """
    other_layout = "standard" if postgres.layout == "split_ca" else "split_ca"
    proc = psql("localhost", "alice", clients_dir(peer_certs, other_layout), "alice", postgres.rootcert,
                port=postgres.port)
    assert proc.returncode != 0
    assert "alert unknown ca" in text(proc), text(proc)
