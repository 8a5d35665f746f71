"""Checks every scenario shares: the nodes' and client hosts' files (owner,
group, mode, exact set), the certificates' names, usages and chains (openssl in
the containers), no CA key on any host, and a mutual TLS handshake between two
nodes with their installed files.
"""

import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import crdb_molecule as m  # noqa: E402  (after the sys.path line)

D = m.CERTS_DIR
CLIENT_CA = "ca-client.crt" if m.LAYOUT == "split_ca" else "ca.crt"  # what verifies client certs


# --- controller -------------------------------------------------------------------

def test_controller_pki_dir_keeps_the_ca_keys():
    assert oct(os.stat(m.PKI_DIR).st_mode & 0o777) == "0o700"
    if m.EXTERNAL_SIGNER:
        # The organisation's CA signs: the PKI dir holds its trust bundle and no CA key at all.
        assert not [n for n in os.listdir(m.PKI_DIR) if n.endswith(".key")], os.listdir(m.PKI_DIR)
        return
    for prefix in ["ca", "ca-client"] if m.LAYOUT == "split_ca" else ["ca"]:
        key = os.path.join(m.PKI_DIR, prefix + ".key")
        assert os.path.isfile(key), key
        assert oct(os.stat(key).st_mode & 0o777) == "0o600", key


# --- hosts ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", m.NODES + m.CLIENTS)
def test_host_python_has_cryptography_only_where_keys_are_made(name):
    """The test image is a minimal host (python3, no python3-cryptography); only with keys made on the hosts does
    the role install the package there (from the local repository molecule/resources/local-apt.yml points apt at)."""
    host = m.get_host(name)
    has = host.run("python3 -c 'import cryptography'").rc == 0
    assert has == (m.KEY_LOCATION == "node"), (name, has, m.KEY_LOCATION)
    if has:
        assert m.sh(host, "dpkg-query -W -f '${Status}' python3-cryptography") == "install ok installed"
        # From the local repository, apt's only source there: nothing else could have provided it.
        assert m.sh(host, "cat /etc/apt/sources.list").strip() == "deb [trusted=yes] file:/var/lib/crdb-tls-debs ./"


# --- nodes ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", m.NODES)
def test_node_ca_bundles_are_the_controllers(name):
    listing = m.certs_dir(name)
    for bundle in ["ca.crt"] + (["ca-client.crt"] if m.LAYOUT == "split_ca" else []):
        assert listing[bundle]["sha256"] == m.sha256_controller(os.path.join(m.PKI_DIR, bundle)), bundle


@pytest.mark.parametrize("name", m.NODES)
def test_node_certs_dir_owners_and_modes(name):
    listing = m.certs_dir(name)
    if m.KEY_OWNER == "root":
        m.check_listing(name, listing, m.node_files(), m.OWNER, m.GROUP,
                        key_owner="root", key_group=m.GROUP, key_mode="0640")
    else:
        m.check_listing(name, listing, m.node_files(), m.OWNER, m.GROUP)


@pytest.mark.parametrize("name", m.NODES)
def test_node_cert_names_and_usages(name):
    listing = m.certs_dir(name)
    node = m.CertInfo(listing["node.crt"])
    wanted_sans = {("DNS", name), ("DNS", "localhost"), ("IP", "127.0.0.1")}
    wanted_sans |= set(("IP", ip) for ip in m.inspect(name)["ips"])
    assert wanted_sans <= node.sans, (wanted_sans - node.sans, node.text)
    if m.LAYOUT == "standard":
        assert node.cn == "node", node.subject
        assert node.ekus == {m.SERVER_AUTH, m.CLIENT_AUTH}, node.text
    else:
        assert m.SERVER_AUTH in node.ekus, node.text
        client_node = m.CertInfo(listing["client.node.crt"])
        assert client_node.cn == "node", client_node.subject
        assert client_node.ekus == {m.CLIENT_AUTH}, client_node.text
    for user in m.NODE_USERS:
        client = m.CertInfo(listing["client.%s.crt" % user])
        assert client.cn == user, client.subject
        assert client.ekus == {m.CLIENT_AUTH}, client.text
    if m.EXPECT_UI:
        ui = m.CertInfo(listing["ui.crt"])
        assert m.SERVER_AUTH in ui.ekus, ui.text
        assert {("DNS", name), ("IP", "127.0.0.1")} <= ui.sans, ui.text
    # An organisational intermediate follows the leaf; otherwise a leaf is alone.
    leaves = ["node.crt"] + (["client.node.crt"] if m.LAYOUT != "standard" else [])
    leaves += ["client.%s.crt" % u for u in m.NODE_USERS]
    for leaf in leaves:
        assert listing[leaf]["count"] == (2 if m.ORG_CA else 1), leaf


@pytest.mark.parametrize("name", m.NODES)
def test_node_chains(name):
    listing = m.certs_dir(name)
    server_files = ["node.crt"] + (["ui.crt"] if m.EXPECT_UI else [])
    client_files = ["client.%s.crt" % u for u in m.NODE_USERS]
    client_files += ["client.node.crt"] if m.LAYOUT != "standard" else []
    for cert in server_files:
        assert m.CertInfo(listing[cert]).verified_by("ca.crt"), (cert, listing[cert]["verify"])
    for cert in client_files:
        info = m.CertInfo(listing[cert])
        assert info.verified_by(CLIENT_CA), (cert, listing[cert]["verify"])
        if m.LAYOUT == "split_ca":
            # Signed by the client CA, not by the CA in ca.crt.
            assert not info.verified_by("ca.crt"), (cert, listing[cert]["verify"])


@pytest.mark.parametrize("name", m.NODES)
def test_node_keys_match_their_certs(name):
    facts = m.inspect(name)
    listing = m.certs_dir(name)
    for key in sorted(n for n in m.node_files() if n.endswith(".key")):
        cert = key[:-len(".key")] + ".crt"
        assert facts["keys"][D + "/" + key] == listing[cert]["pubkey"], key


@pytest.mark.parametrize("name", m.NODES + m.CLIENTS)
def test_no_ca_key_on_any_host(name):
    facts = m.inspect(name)
    assert facts["ca_key_files"] == [], facts["ca_key_files"]
    # No key file, whatever its name, is a CA's key.
    ca_pubkeys = m.controller_ca_pubkeys()
    assert ca_pubkeys
    assert facts["keys"], "no key files found at all on %s" % name
    for path, pubkey in sorted(facts["keys"].items()):
        assert "PUBLIC KEY" in pubkey, (path, pubkey)
        assert pubkey not in ca_pubkeys, "%s on %s is a CA key" % (path, name)


def test_mutual_tls_between_two_nodes():
    """node2 serves with its node.crt and requires a client cert (verified with
    ca-client.crt, else ca.crt); node1 connects to node2's container address with
    client.node.crt (else node.crt), verifying node2 against ca.crt and its IP."""
    assert len(m.NODES) >= 2
    client, server = m.get_host(m.NODES[0]), m.get_host(m.NODES[1])
    ip = m.inspect(m.NODES[1])["ips"][0]
    port = 26999
    log = "/tmp/crdb-s_server.log"
    # -cert sends only a file's first certificate; -cert_chain adds the ones
    # after it (an organisational intermediate), as CockroachDB sends them.
    chain = ("awk '/BEGIN CERT/{n++} n>=2' %s > /tmp/crdb-chain.pem; chain=; "
             "[ -s /tmp/crdb-chain.pem ] && chain='-cert_chain /tmp/crdb-chain.pem'; ")
    m.sh(server, "rm -f %s; cd %s && " % (log, D) + chain % "node.crt" +
         "(sleep 20 | timeout 20 openssl s_server -accept %d -naccept 1 $chain -cert node.crt -key node.key "
         "-CAfile %s -Verify 1 -verify_return_error >%s 2>&1 &) </dev/null; "
         "for i in $(seq 50); do ss -ltnH 'sport = :%d' | grep -q LISTEN && exit 0; sleep 0.1; done; "
         "exit 1" % (port, CLIENT_CA, log, port))
    ident = "client.node" if m.LAYOUT != "standard" else "node"
    out = m.sh(client, "cd %s && " % D + chain % (ident + ".crt") +
               "openssl s_client -connect %s:%d $chain -cert %s.crt -key %s.key -CAfile ca.crt "
               "-verify_return_error -verify_ip %s -brief </dev/null 2>&1" % (ip, port, ident, ident, ip))
    assert "Verification: OK" in out, out
    # node.crt's CN: "node" in the standard layout; the server cert of the split
    # layouts takes the node's first name (its inventory name).
    server_cn = "node" if m.LAYOUT == "standard" else m.NODES[1]
    assert re.search(r"^Peer certificate: .*CN = %s$" % re.escape(server_cn), out, re.M), out
    served = m.sh(server, "for i in $(seq 50); do grep -q 'CONNECTION CLOSED' {log} && break; sleep 0.1; done; "
                  "cat {log}".format(log=log))
    assert "1 server accepts that finished" in served, served
    assert "verify error" not in served, served
    assert "subject=O = Cockroach, CN = node" in served, served


# --- client hosts -----------------------------------------------------------------

@pytest.mark.parametrize("name", m.CLIENTS)
@pytest.mark.parametrize("user", m.CLIENT_USERS)
def test_client_host_user_certs(name, user):
    facts = m.inspect(name)
    listing = m.certs_dir(name, "~%s/.cockroach-certs" % user)
    home = facts["users"][user]["home"]
    cert, key = "client.%s.crt" % user, "client.%s.key" % user
    m.check_listing("%s:~%s" % (name, user), listing, {"ca.crt", cert, key}, user, facts["users"][user]["group"])
    info = m.CertInfo(listing[cert])
    assert info.cn == user, info.subject
    assert info.ekus == {m.CLIENT_AUTH}, info.text
    assert facts["keys"]["%s/.cockroach-certs/%s" % (home.rstrip("/"), key)] == listing[cert]["pubkey"]
    assert listing["ca.crt"]["sha256"] == m.sha256_controller(os.path.join(m.PKI_DIR, "ca.crt"))
    cafile = "controller-ca-client.crt" if m.LAYOUT == "split_ca" else "ca.crt"
    assert info.verified_by(cafile), listing[cert]["verify"]
