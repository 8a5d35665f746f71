# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several clusters from one inventory, end to end.

One inventory, two clusters: groups ``cluster_a`` (standard layout) and
``cluster_b`` (split_ca), each with its own ``crdb_tls_pki_dir`` in group vars,
both under ``cockroachdb_nodes`` / ``cockroachdb_clients``, converged by one
play per role (tests/peers/playbooks/several_clusters.yml, local connection).
Then, with real peers:

* every host's chains end at its own cluster's CA(s) (``openssl verify``), and
  not at the other cluster's;
* cluster B's node refuses cluster A's client certificate and accepts its own
  (``openssl s_server`` requiring a client certificate, ``s_client``, both
  ``-verify_return_error``), and likewise a PostgreSQL server with B's node
  certificate and client CA (``cert`` authentication);
* a rerun changes nothing;
* hosts that share a PKI dir but not its layout fail the run before anything
  is written, with a message naming the PKI dir, the setting, the values and
  the hosts.
"""

import grp
import os
import pwd
import re
import subprocess

import pytest
from peerlib import OPENSSL, ansible_tool, collections_path, ROOT
from test_real_peers import PostgresCluster, handshake, postgres_bindir, psql, text, _user_exists

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl CLI")

PLAYBOOK = os.path.join(ROOT, "tests", "peers", "playbooks", "several_clusters.yml")
TIMEOUT = 600
CLUSTERS = {"a": "standard", "b": "split_ca"}


def inventory(root, layouts=None, shared_pki=False, extra_b=()):
    """Two clusters of two nodes and one client host each; ``shared_pki`` gives both the same PKI dir,
    ``extra_b`` adds group vars lines to cluster_b."""
    layouts = layouts or CLUSTERS
    lines = ["all:", "  vars:",
             "    ansible_connection: local",
             "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
             "    crdb_tls_owner: %s" % _me()[0],
             "    crdb_tls_group: %s" % _me()[1],
             "    crdb_tls_reload: false",
             "    crdb_tls_sans_from_facts: false",
             "    crdb_tls_key_type: ecdsa",
             "  children:"]
    for name, layout in sorted(layouts.items()):
        pki = os.path.join(root, "pki-shared" if shared_pki else "pki-" + name)
        lines += ["    cluster_%s:" % name, "      vars:",
                  "        crdb_tls_pki_dir: %s" % pki,
                  "        crdb_tls_layout: %s" % layout]
        lines += ["        %s" % line for line in (extra_b if name == "b" else ())]
        lines += ["      children:",
                  "        cluster_%s_nodes:" % name, "          hosts:"]
        for i in (1, 2):
            host = "%snode%d" % (name, i)
            lines += ["            %s:" % host,
                      "              ansible_host: 127.0.0.1",
                      "              crdb_tls_certs_dir: %s" % os.path.join(root, host)]
        lines += ["        cluster_%s_clients:" % name, "          hosts:",
                  "            %sclient:" % name,
                  "              crdb_tls_client_users:"]
        for user in ("root", "alice"):
            lines += ["                - name: %s" % user,
                      "                  os_user: %s" % _me()[0],
                      "                  dir: %s" % os.path.join(root, "%sclient" % name, user)]
    lines += ["cockroachdb_nodes:", "  children:"]
    lines += ["    cluster_%s_nodes:" % n for n in sorted(layouts)]
    lines += ["cockroachdb_clients:", "  children:"]
    lines += ["    cluster_%s_clients:" % n for n in sorted(layouts)]
    path = os.path.join(root, "inventory%s.yml" % ("-shared" if shared_pki else ""))
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _me():
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def converge(root, inv):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_FORKS": "8",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    })
    proc = subprocess.run([ansible_tool(), "-i", inv, PLAYBOOK], env=env, cwd=root, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=TIMEOUT, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def recap(output):
    """{host: {ok: n, changed: n, failed: n, ...}} from the PLAY RECAP."""
    hosts = {}
    for match in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.M):
        hosts[match.group(1)] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2)))
    return hosts


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("several-clusters"))
    inv = inventory(root)
    rc, out = converge(root, inv)
    assert rc == 0, "first run failed (rc %d):\n%s" % (rc, out[-8000:])
    return {"root": root, "inventory": inv, "first": out}


def path(clusters, *parts):
    return os.path.join(clusters["root"], *parts)


def verify(purpose, cafile, cert):
    proc = subprocess.run([OPENSSL, "verify", "-purpose", purpose, "-CAfile", cafile, cert],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def test_each_cluster_has_its_own_pki_dir_and_issued_sets(clusters):
    for name, other in (("a", "b"), ("b", "a")):
        issued = sorted(os.listdir(path(clusters, "pki-" + name, "issued")))
        assert "%snode1" % name in issued and "%snode2" % name in issued, issued
        assert not [h for h in issued if h.startswith(other)], \
            "cluster %s's PKI dir holds cluster %s's hosts: %s" % (name, other, issued)
        users = sorted(os.listdir(path(clusters, "pki-" + name, "issued", "_users")))
        assert users == ["alice", "node", "root"] or users == ["alice", "root"], users
    assert os.path.exists(path(clusters, "pki-b", "ca-client.crt"))
    assert not os.path.exists(path(clusters, "pki-a", "ca-client.crt"))
    with open(path(clusters, "pki-a", "ca.crt")) as a, open(path(clusters, "pki-b", "ca.crt")) as b:
        assert a.read() != b.read(), "the two clusters share one CA"


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_every_hosts_chain_ends_at_its_own_clusters_cas(clusters, name):
    other = "b" if name == "a" else "a"
    own_ca = path(clusters, "pki-" + name, "ca.crt")
    other_ca = path(clusters, "pki-" + other, "ca.crt")
    own_client_ca = path(clusters, "pki-" + name, "ca-client.crt" if CLUSTERS[name] == "split_ca" else "ca.crt")
    for node in ("%snode1" % name, "%snode2" % name):
        d = path(clusters, node)
        with open(os.path.join(d, "ca.crt")) as got, open(own_ca) as want:
            assert got.read() == want.read(), "%s's ca.crt is not cluster %s's CA" % (node, name)
        rc, out = verify("sslserver", own_ca, os.path.join(d, "node.crt"))
        assert rc == 0 and out.strip().endswith(": OK"), out
        rc, out = verify("sslserver", other_ca, os.path.join(d, "node.crt"))
        assert rc != 0 and "unable to get local issuer certificate" in out, out
        if CLUSTERS[name] == "split_ca":
            rc, out = verify("sslclient", own_client_ca, os.path.join(d, "client.node.crt"))
            assert rc == 0, out
    for user in ("root", "alice"):
        cert = path(clusters, "%sclient" % name, user, "client.%s.crt" % user)
        rc, out = verify("sslclient", own_client_ca, cert)
        assert rc == 0 and out.strip().endswith(": OK"), out
        rc, out = verify("sslclient", other_ca, cert)
        assert rc != 0 and "unable to get local issuer certificate" in out, out


def test_cluster_b_node_refuses_cluster_a_client_certs_openssl(clusters, processes, tmp_path):
    b1 = path(clusters, "bnode1")
    server = (os.path.join(b1, "node.crt"), os.path.join(b1, "node.key"), os.path.join(b1, "ca-client.crt"))
    for user in ("root", "alice"):
        a_dir = path(clusters, "aclient", user)
        refused = handshake(processes, tmp_path, *server,
                            client_cert=os.path.join(a_dir, "client.%s.crt" % user),
                            client_key=os.path.join(a_dir, "client.%s.key" % user),
                            client_cafile=os.path.join(path(clusters, "bclient", user), "ca.crt"))
        assert not refused.ok, refused
        assert "certificate verify failed" in refused.server, refused
        assert "alert unknown ca" in refused.client, refused
        b_dir = path(clusters, "bclient", user)
        accepted = handshake(processes, tmp_path, *server,
                             client_cert=os.path.join(b_dir, "client.%s.crt" % user),
                             client_key=os.path.join(b_dir, "client.%s.key" % user),
                             client_cafile=os.path.join(b_dir, "ca.crt"))
        assert accepted.ok, accepted
        assert "CN = %s\nverify return:1" % user in accepted.server, accepted


def test_cluster_a_node_refuses_cluster_b_client_certs_openssl(clusters, processes, tmp_path):
    a1 = path(clusters, "anode1")
    server = (os.path.join(a1, "node.crt"), os.path.join(a1, "node.key"), os.path.join(a1, "ca.crt"))
    b_dir = path(clusters, "bclient", "root")
    refused = handshake(processes, tmp_path, *server, client_cert=os.path.join(b_dir, "client.root.crt"),
                        client_key=os.path.join(b_dir, "client.root.key"),
                        client_cafile=os.path.join(path(clusters, "aclient", "root"), "ca.crt"))
    assert not refused.ok, refused
    assert "alert unknown ca" in refused.client, refused


@pytest.fixture(scope="module")
def postgres_b(clusters):
    """PostgreSQL with cluster B's bnode1 node.crt, verifying clients with B's client CA."""
    bindir = postgres_bindir()
    if not bindir or not all(os.path.exists(os.path.join(bindir, b)) for b in ("initdb", "postgres", "pg_ctl")):
        pytest.skip("the PostgreSQL server binaries are not installed")
    if os.geteuid() == 0 and not _user_exists("postgres"):
        pytest.skip("running as root and there is no postgres user to run the server as")
    b1 = path(clusters, "bnode1")
    cluster = PostgresCluster(bindir, "split_ca", b1, os.path.join(b1, "ca-client.crt"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("user", ("root", "alice"))
def test_cluster_b_postgres_refuses_cluster_a_client_certs(clusters, postgres_b, user):
    rootcert = os.path.join(path(clusters, "bclient", user), "ca.crt")
    own = psql("localhost", user, path(clusters, "bclient", user), user, rootcert, port=postgres_b.port)
    assert own.returncode == 0 and own.stdout.decode().strip() == user, text(own) + postgres_b.log()
    other = psql("localhost", user, path(clusters, "aclient", user), user, rootcert, port=postgres_b.port)
    assert other.returncode != 0, "cluster B's server let in cluster A's client.%s.crt" % user
    assert "alert unknown ca" in text(other), text(other)


def test_rerun_changes_nothing(clusters):
    rc, out = converge(clusters["root"], clusters["inventory"])
    assert rc == 0, out[-8000:]
    hosts = recap(out)
    assert sorted(hosts) == ["aclient", "anode1", "anode2", "bclient", "bnode1", "bnode2"], out[-3000:]
    changed = dict((h, r["changed"]) for h, r in hosts.items() if r["changed"])
    assert not changed, "the rerun changed something: %s\n%s" % (changed, out[-8000:])


def test_hosts_sharing_a_pki_dir_must_agree_on_the_layout(tmp_path):
    root = str(tmp_path)
    inv = inventory(root, shared_pki=True)
    rc, out = converge(root, inv)
    assert rc != 0, out[-4000:]
    flat = " ".join(out.split())
    pki = os.path.join(root, "pki-shared")
    assert "the hosts of PKI dir %s disagree on crdb_tls_layout:" % pki in flat, out[-4000:]
    assert '"standard" on anode1, anode2; "split_ca" on bnode1, bnode2' in flat, out[-4000:]
    assert not os.path.exists(pki), "the PKI dir was written before the check failed"
    for host in ("anode1", "bnode1"):
        assert not os.path.exists(os.path.join(root, host)), "%s's certs dir was written" % host


def test_hosts_sharing_a_pki_dir_must_agree_on_a_secret_which_is_never_shown(tmp_path):
    root = str(tmp_path)
    secret = "Not-In-Any-Log-7f3a9c"
    inv = inventory(root, layouts={"a": "standard", "b": "standard"}, shared_pki=True,
                    extra_b=["crdb_tls_ca_passphrase: %s" % secret])
    rc, out = converge(root, inv)
    assert rc != 0, out[-4000:]
    flat = " ".join(out.split())
    assert ("disagree on crdb_tls_ca_passphrase: value 1 on anode1, anode2; value 2 on bnode1, bnode2 "
            "(secret values not shown)") in flat, out[-4000:]
    assert "crdb_tls_layout" not in flat, out[-4000:]
    assert secret not in out
    assert not os.path.exists(os.path.join(root, "pki-shared"))
