# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 14 on the controller side, through playbooks/site.yml on a local fleet.

Two "nodes" (split_node layout) and a client, all local connections with a
certs dir each, as an operator runs the collection:

* careless input (a string where a list is needed, an integer user, ``node``
  as a client user, an IP with a zone, a key owner the process cannot read
  as, a renewal window not shorter than the lifetime, no PKI dir, a PKI dir
  inside an installed collection) is refused with a message naming the value,
  before anything is written: the PKI dir is never created;
* the CA key is never lost: a PKI dir that issued certificates but lost its
  CA fails, naming it; an organisation CA that expires before the leaves it
  would sign is refused before any CA file is replaced; a CA key that is
  replaced is kept beside it (0600);
* node identity stays on nodes: the client's certs dir holds no node file;
* check mode tells the truth: a first deploy, a SAN change, a new user and an
  organisation change show as changed with a diff under ``--check --diff``,
  write nothing (every file under the test's base dir is compared before and
  after), and the real run then changes the same hosts.

Every ansible-playbook run is bounded by a timeout.
"""

import datetime
import getpass
import grp
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
from peerlib import ROOT, ansible_tool, collections_path

PLAYBOOK_TIMEOUT = 300
NODES = ("node1", "node2")


class Fleet:
    """A local fleet: inventory, certs dirs, PKI dir, all under ``base``."""

    def __init__(self, base, layout="split_node"):
        self.base = str(base)
        os.makedirs(self.base, exist_ok=True)
        self.pki = os.path.join(self.base, "pki")
        self.layout = layout
        self.env = dict(os.environ)
        self.env.update({
            "ANSIBLE_COLLECTIONS_PATH": collections_path(),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        })
        for name in ("PYTHONPATH", "CRDB_TLS_COLLECTIONS_PATH"):
            self.env.pop(name, None)
        self.write_inventory()

    def certs_dir(self, host):
        return os.path.join(self.base, host)

    @property
    def client_dir(self):
        return os.path.join(self.base, "client")

    def write_inventory(self, **extra_vars):
        user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
        nodes = dict((h, {"ansible_host": "127.0.0.%d" % i, "crdb_tls_certs_dir": self.certs_dir(h)})
                     for i, h in enumerate(NODES, 1))
        variables = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "ansible_become": False,
            "crdb_tls_layout": self.layout,
            "crdb_tls_pki_dir": self.pki,
            "crdb_tls_owner": user,
            "crdb_tls_group": group,
            "crdb_tls_sans_from_facts": False,
            "crdb_tls_key_type": "ecdsa",
            "crdb_tls_reload": False,
        }
        variables.update(extra_vars)
        inventory = {"all": {"children": {
            "cockroachdb_nodes": {"hosts": nodes},
            "cockroachdb_clients": {"hosts": {"client1": {
                "ansible_host": "127.0.0.1",
                "crdb_tls_client_users": [{"name": "root", "os_user": user, "dir": self.client_dir}]}}},
        }, "vars": variables}}
        with open(os.path.join(self.base, "inventory.json"), "w") as handle:
            json.dump(inventory, handle, indent=1)

    def site(self, *extra, check=False):
        cmd = [ansible_tool(), "-i", os.path.join(self.base, "inventory.json"),
               os.path.join(ROOT, "playbooks", "site.yml")]
        if check:
            cmd += ["--check", "--diff"]
        for value in extra:
            cmd += ["-e", value if isinstance(value, str) else json.dumps(value)]
        proc = subprocess.run(cmd, env=self.env, cwd=self.base, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=PLAYBOOK_TIMEOUT, check=False)
        return proc.returncode, proc.stdout.decode("utf-8", "replace")

    def tree(self):
        """Every path under base (but the inventory) with its mode, owner and content digest."""
        out = {}
        for top, dirs, files in os.walk(self.base):
            for name in dirs + files:
                path = os.path.join(top, name)
                st = os.lstat(path)
                digest = None
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as handle:
                        digest = hashlib.sha256(handle.read()).hexdigest()
                out[os.path.relpath(path, self.base)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, digest)
        return out


def changed_hosts(output):
    """``{host: changed count}`` from the PLAY RECAP."""
    return dict((m.group(1), int(m.group(2))) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M))


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


# --- careless input ------------------------------------------------------------------------------

CARELESS = [
    ("string users", {"crdb_tls_client_users": "root"},
     r"crdb_tls_client_users must be a list, got \\?\"root\\?\" \(str\): write it as a YAML list, for example \[root\]"),
    ("integer user", {"crdb_tls_client_users": ["root", 7]},
     r"crdb_tls_client_users entry 7 \(int\) is refused: an entry is a SQL user name \(a string\) or a mapping "
     r"with name"),
    ("node user", {"crdb_tls_client_users": ["root", "node"]},
     r"client user 'node' is refused: it is CockroachDB's node identity"),
    ("zone", {"crdb_tls_node_sans": ["fe80::1%eth0"]},
     r"SANs of node node1 entry 'fe80::1%eth0' carries a zone \(%eth0\): an IP SAN cannot hold one"),
    ("string sans", {"crdb_tls_node_sans": "lb.example.com"},
     r"crdb_tls_node_sans must be a list, got \\?\"lb.example.com\\?\" \(str\)"),
    ("key owner", {"crdb_tls_key_owner": "nobody"},
     r"crdb_tls_key_owner \\?\"nobody\\?\" is refused: cockroach runs as crdb_tls_owner \\?\"%s\\?\" and could not read "
     r"a key owned by \\?\"nobody\\?\"" % re.escape(getpass.getuser())),
    ("window", {"crdb_tls_renew_before": "43920h"},
     r"renewal window for (client|node|ui) 43920h is not shorter than lifetime 43920h"),
]


@pytest.mark.parametrize("what,extra,message", CARELESS, ids=[c[0] for c in CARELESS])
def test_careless_input_refused_before_anything_is_written(tmp_path, what, extra, message):
    fleet = Fleet(tmp_path)
    before = fleet.tree()
    rc, out = fleet.site(extra)
    assert rc != 0, out[-3000:]
    assert re.search(message, out), out[-3000:]
    assert not os.path.exists(fleet.pki), "%s: the PKI dir was created before the input was refused" % what
    assert fleet.tree() == before


def test_pki_dir_is_required_and_never_inside_a_collection(tmp_path):
    fleet = Fleet(tmp_path)
    rc, out = fleet.site({"crdb_tls_pki_dir": ""})
    assert rc != 0
    assert "crdb_tls_pki_dir is not set: it has no default" in out, out[-3000:]
    inside = os.path.join(fleet.base, "coll", "ansible_collections", "crdb", "tls", "playbooks", "crdb-pki")
    rc, out = fleet.site({"crdb_tls_pki_dir": inside})
    assert rc != 0
    assert re.search(r"PKI directory %s is inside the installed collections tree %s: `ansible-galaxy collection "
                     r"install --force` deletes it" % (re.escape(inside),
                                                       re.escape(os.path.join(fleet.base, "coll", "ansible_collections"))),
                     out), out[-3000:]
    assert not os.path.exists(os.path.join(fleet.base, "coll"))


# --- the CA key is never lost ---------------------------------------------------------------------

def _org_ca(directory, days):
    """A self-signed organisation CA (cert, key paths) valid ``days`` days, made with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Example Org CA %dd" % days)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, "org-%d.crt" % days)
    key_path = os.path.join(directory, "org-%d.key" % days)
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def test_ca_key_never_lost(tmp_path):
    fleet = Fleet(tmp_path / "fleet")
    rc, out = fleet.site()
    assert rc == 0, out[-4000:]
    ca_key, bundle = os.path.join(fleet.pki, "ca.key"), os.path.join(fleet.pki, "ca.crt")
    old_key, old_bundle = read(ca_key), read(bundle)

    # An organisation CA that expires before a certificate of crdb_tls_lifetime (1830d) would.
    short_cert, short_key = _org_ca(str(tmp_path), 100)
    rc, out = fleet.site({"crdb_tls_ca_cert": short_cert, "crdb_tls_ca_key": short_key})
    assert rc != 0
    assert re.search(r"a certificate of lifetime 1830d issued by the provided CA %s would be valid until "
                     r"\S+ \S+ UTC, after its CA expires" % re.escape(short_cert), out), out[-4000:]
    assert read(ca_key) == old_key and read(bundle) == old_bundle
    assert not [n for n in os.listdir(fleet.pki) if n.endswith(".bak")]

    # A good one replaces the generated CA; the replaced key stays beside it, 0600.
    good_cert, good_key = _org_ca(str(tmp_path), 7300)
    rc, out = fleet.site({"crdb_tls_ca_cert": good_cert, "crdb_tls_ca_key": good_key})
    assert rc == 0, out[-4000:]
    backups = [n for n in os.listdir(fleet.pki) if re.fullmatch(r"ca\.key\.\d{8}T\d{6}Z(-\d+)?\.bak", n)]
    assert len(backups) == 1, os.listdir(fleet.pki)
    backup = os.path.join(fleet.pki, backups[0])
    assert read(backup) == old_key
    assert stat.S_IMODE(os.lstat(backup).st_mode) == 0o600
    assert read(ca_key) == read(good_key)

    # The CA files lost (say, a reinstall wiped them): a loud failure, no new CA.
    issued_bundle = read(os.path.join(fleet.certs_dir("node1"), "ca.crt"))
    for name in ("ca.key", "ca.signer.pem"):
        os.unlink(os.path.join(fleet.pki, name))
    rc, out = fleet.site()
    assert rc != 0
    assert re.search(r"PKI directory %s lost its CA ca \(.*ca\.signer\.pem, .*ca\.key missing\) but holds what it "
                     r"issued \(issued sets in %s" % (re.escape(fleet.pki), re.escape(os.path.join(fleet.pki, "issued"))),
                     out), out[-4000:]
    assert "refusing to make a new CA" in out
    assert not os.path.exists(ca_key)
    assert read(os.path.join(fleet.certs_dir("node1"), "ca.crt")) == issued_bundle


# --- node identity stays on nodes, check mode tells the truth -------------------------------------

def test_check_mode_tells_the_truth(tmp_path):
    fleet = Fleet(tmp_path)

    # First deploy: no PKI dir yet.
    before = fleet.tree()
    rc, out = fleet.site(check=True)
    assert rc == 0, out[-4000:]
    assert fleet.tree() == before, "check mode wrote files"
    assert not os.path.exists(fleet.pki)
    changed = changed_hosts(out)
    assert all(changed[h] > 0 for h in NODES + ("client1",)), changed
    assert "node.crt: not issued yet, no CA in %s yet (first deploy)" % fleet.pki in out
    assert "+client.node.crt: as crdb.tls.issue_fleet would issue it" in out
    assert "--- before: %s" % fleet.certs_dir("node1") in out

    rc, out = fleet.site()
    assert rc == 0, out[-4000:]
    # Node identity stays on nodes: the client's dir has its user's files and the CA only.
    assert sorted(os.listdir(fleet.client_dir)) == ["ca.crt", "client.root.crt", "client.root.key"]
    assert "client.node.key" in os.listdir(fleet.certs_dir("node1"))

    rc, out = fleet.site(check=True)
    assert rc == 0, out[-4000:]
    assert set(changed_hosts(out).values()) == {0}, out[-3000:]

    nodes_vars = {"crdb_tls_client_users": ["root"]}
    cases = [
        ("SAN change", {"crdb_tls_node_sans": ["lb.example.com"]},
         [r"\+node\.crt: CN=node1,O=Cockroach; SANs node1, 127\.0\.0\.1, localhost, lb\.example\.com;",
          r"# node\.crt: SANs differ \(missing lb\.example\.com\)",
          r"\+node\.crt: as crdb\.tls\.issue_fleet would issue it"]),
        ("new user", None,
         [r"\+client\.app\.crt: as crdb\.tls\.issue_fleet would issue it",
          r"\+client\.app\.key: as crdb\.tls\.issue_fleet would issue it"]),
        ("organisation change", {"crdb_tls_organization": "Acme"},
         [r"\+node\.crt: CN=node1,O=Acme;", r"\+client\.node\.crt: CN=node,O=Acme;",
          r"\+client\.root\.crt: CN=root,O=Acme;"]),
    ]
    for what, extra, patterns in cases:
        if extra is None:
            # A new SQL user for the nodes (the client host keeps its own list).
            fleet.write_inventory()
            with open(os.path.join(fleet.base, "inventory.json")) as handle:
                inventory = json.load(handle)
            inventory["all"]["children"]["cockroachdb_nodes"]["vars"] = {"crdb_tls_client_users": ["root", "app"]}
            with open(os.path.join(fleet.base, "inventory.json"), "w") as handle:
                json.dump(inventory, handle)
            args = ()
        else:
            fleet.write_inventory(**nodes_vars)
            args = (extra,)
        before = fleet.tree()
        rc, out = fleet.site(*args, check=True)
        assert rc == 0, "%s: check mode failed:\n%s" % (what, out[-4000:])
        assert fleet.tree() == before, "%s: check mode wrote files" % what
        planned = changed_hosts(out)
        assert all(planned[h] > 0 for h in NODES), (what, planned)
        for pattern in patterns:
            assert re.search(pattern, out), "%s: no %r in:\n%s" % (what, pattern, out[-6000:])
        # The real run then changes what check mode said it would.
        rc, out = fleet.site(*args)
        assert rc == 0, "%s: real run failed:\n%s" % (what, out[-4000:])
        done = changed_hosts(out)
        assert set(h for h in done if done[h]) == set(h for h in planned if planned[h]), (what, planned, done)
        rc, out = fleet.site(*args, check=True)
        assert rc == 0 and set(changed_hosts(out).values()) == {0}, "%s: not settled:\n%s" % (what, out[-3000:])


@pytest.fixture(autouse=True)
def _no_stray_collections_dir(tmp_path):
    yield
    shutil.rmtree(str(tmp_path), ignore_errors=True)
