"""Shared helpers of the crdb.tls molecule verifiers (testinfra).

What the scenario expects comes from the verifier's environment (set in each
molecule.yml under verifier.env):

  CRDB_TLS_LAYOUT      standard | split_node | split_ca
  CRDB_TLS_KEY_OWNER   "" (keys cockroach:cockroach 0600) or root (root:cockroach 0640)
  CRDB_TLS_EXPECT_UI   "1" when the nodes must hold ui.crt/ui.key
  CRDB_TLS_ORG_CA      "1" when the CA is an organisational intermediate (leaf files carry it)
  CRDB_TLS_EXTERNAL_SIGNER "1" when that CA signs through a signer command (no CA key on the controller)
  CRDB_TLS_KEY_LOCATION controller (default) or node (keys made on the hosts, which then need python3-cryptography)

and from molecule itself: MOLECULE_INVENTORY_FILE, MOLECULE_EPHEMERAL_DIRECTORY
(the controller's PKI dir is <ephemeral>/pki, as the scenarios' group_vars say).

Every check on a host runs inside its container (openssl, stat, find), mostly
in one `podman exec` per host (inspect_host.py), cached for the session.
"""

import hashlib
import json
import os
import re
import shlex

from concurrent.futures import ThreadPoolExecutor

import testinfra
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
EPHEMERAL = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
PKI_DIR = os.environ.get("CRDB_TLS_PKI_DIR") or os.path.join(EPHEMERAL, "pki")
LAYOUT = os.environ.get("CRDB_TLS_LAYOUT", "standard")
KEY_OWNER = os.environ.get("CRDB_TLS_KEY_OWNER", "")
EXPECT_UI = os.environ.get("CRDB_TLS_EXPECT_UI", "") == "1"
ORG_CA = os.environ.get("CRDB_TLS_ORG_CA", "") == "1"
EXTERNAL_SIGNER = os.environ.get("CRDB_TLS_EXTERNAL_SIGNER", "") == "1"
KEY_LOCATION = os.environ.get("CRDB_TLS_KEY_LOCATION", "controller")

CERTS_DIR = "/var/lib/cockroach/certs"
OWNER = GROUP = "cockroach"
NODE_USERS = ["root"]          # crdb_tls_client_users on the nodes (role default)
CLIENT_USERS = ["root", "app"]  # crdb_tls_client_users on the client hosts

# The stand-in cockroach (tests/go: a TEST FIXTURE, not CockroachDB): its log,
# its status as JSON (hangups, reloads, the certificates it serves) from the
# DB Console address, verified against the node's ca.crt, and the SIGHUPs it
# logged as (uid, pid) pairs.
STANDIN_LOG = "/var/log/cockroach-standin.log"
STANDIN_STATUS = (
    "python3 -c 'import json, ssl, urllib.request; "
    "ctx = ssl.create_default_context(cafile=\"%s/ca.crt\"); "
    "print(json.dumps(json.load(urllib.request.urlopen(\"https://127.0.0.1:8080/\", context=ctx, timeout=10))))'"
    % CERTS_DIR
)
_HANGUP = re.compile(r'received signal "hangup", triggering certificate reload \(from uid=(\d+) pid=(\d+)\)')


def hangups(log):
    """``[(uid, pid)]`` of every SIGHUP the stand-in logged, as strings."""
    return _HANGUP.findall(log)


SERVER_AUTH = "TLS Web Server Authentication"
CLIENT_AUTH = "TLS Web Client Authentication"

_HOSTS = {}
_FACTS = {}


def group_hosts(group):
    """Inventory names of a group, sorted (read from molecule's generated
    inventory file, where each group lists its hosts: quicker than
    ansible-inventory)."""
    with open(INVENTORY) as handle:
        inventory = yaml.safe_load(handle) or {}
    return sorted(((inventory.get(group) or {}).get("hosts") or {}).keys())


NODES = group_hosts("cockroachdb_nodes")
CLIENTS = group_hosts("cockroachdb_clients")


def get_host(name):
    """The container of an inventory host, through `podman exec`.

    testinfra's ansible backend does not map ansible_connection=podman to its
    podman backend and would run every command as an Ansible task (seconds
    each); molecule names each container after its inventory host.
    """
    if name not in _HOSTS:
        _HOSTS[name] = testinfra.get_host("podman://%s" % name)
    return _HOSTS[name]


def sh(host, command):
    """Run a shell command in the container; fail the test unless it exits 0."""
    result = host.run(command)
    assert result.rc == 0, "%s\nrc=%d\nstdout: %s\nstderr: %s" % (
        command, result.rc, result.stdout, result.stderr)
    return result.stdout


def q(value):
    return shlex.quote(value)


def read_controller(path):
    with open(path, "rb") as handle:
        return handle.read()


def sha256_controller(path):
    return hashlib.sha256(read_controller(path)).hexdigest()


# --- one-exec inspection of a host ------------------------------------------------

def inspect(name, refresh=False):
    """What inspect_host.py reports for a host: its certs dirs (nodes: CERTS_DIR;
    client hosts: each CLIENT_USERS' ~/.cockroach-certs), keys, CA key files, IPs.
    The first call inspects every host of the scenario at once, in parallel."""
    if not _FACTS and not refresh:
        with ThreadPoolExecutor(max_workers=8) as pool:
            for host, facts in zip(NODES + CLIENTS, pool.map(_inspect, NODES + CLIENTS)):
                _FACTS[host] = facts
    if refresh or name not in _FACTS:
        _FACTS[name] = _inspect(name)
    return _FACTS[name]


def _inspect(name):
    if name in CLIENTS:
        dirs = ["~%s/.cockroach-certs" % user for user in CLIENT_USERS]
        users = list(CLIENT_USERS)
        cafiles = {}
        if LAYOUT == "split_ca":
            # Client hosts do not get the client CA: verify with the controller's.
            cafiles["controller-ca-client.crt"] = read_controller(
                os.path.join(PKI_DIR, "ca-client.crt")).decode()
    else:
        dirs, users, cafiles = [CERTS_DIR], [OWNER], {}
    with open(os.path.join(HERE, "inspect_host.py")) as handle:
        source = handle.read()
    request = json.dumps({"dirs": dirs, "users": users, "cafiles": cafiles})
    out = sh(get_host(name), "python3 -c %s %s" % (q(source), q(request)))
    return json.loads(out)


def certs_dir(name, directory=CERTS_DIR, refresh=False):
    facts = inspect(name, refresh)
    path = directory
    if directory.startswith("~"):
        user = directory[1:].split("/", 1)[0]
        path = facts["users"][user]["home"] + directory[len(user) + 1:]
    listing = facts["dirs"].get(path)
    assert listing is not None, "%s: no dir %s" % (name, path)
    return listing


# --- files ----------------------------------------------------------------------

def node_files():
    """Names a node's certs dir must hold, exactly (hidden files included)."""
    files = {"ca.crt", "node.crt", "node.key"}
    if LAYOUT in ("split_node", "split_ca"):
        files |= {"client.node.crt", "client.node.key"}
    if LAYOUT == "split_ca":
        files.add("ca-client.crt")
    for user in NODE_USERS:
        files |= {"client.%s.crt" % user, "client.%s.key" % user}
    if EXPECT_UI:
        files |= {"ui.crt", "ui.key"}
    return files


def check_listing(where, listing, expected, owner, group, key_owner=None, key_group=None, key_mode="0600"):
    """Exact file set, owner, group and mode of every file and of the dir itself."""
    def short(entry):
        return (entry["owner"], entry["group"], entry["mode"], entry["type"])

    assert short(listing["."]) == (owner, group, "0700", "directory"), (where, listing["."])
    names = set(listing) - {"."}
    assert names == set(expected), "%s holds %s, expected %s" % (where, sorted(names), sorted(expected))
    for name in sorted(names):
        if name.endswith(".key"):
            want = (key_owner or owner, key_group or group, key_mode, "file")
        else:
            want = (owner, group, "0644", "file")
        assert short(listing[name]) == want, "%s/%s is %s, expected %s" % (where, name, short(listing[name]), want)


# --- certificates ---------------------------------------------------------------

class CertInfo(object):
    """Subject, SANs and EKUs of a certificate from `openssl x509 -subject -ext ...` output."""

    def __init__(self, entry):
        text = entry["x509"]
        self.entry = entry
        self.text = text
        self.count = entry["count"]
        self.fingerprint = entry["fingerprint"]
        match = re.search(r"^subject=(.*)$", text, re.M)
        self.subject = match.group(1).strip() if match else ""
        match = re.search(r"(?:^|,)CN=([^,]*)", self.subject)
        self.cn = match.group(1) if match else None
        self.sans = set()
        self.ekus = set()
        lines = text.splitlines()
        for index, line in enumerate(lines):
            if "Subject Alternative Name" in line and index + 1 < len(lines):
                for item in lines[index + 1].split(","):
                    kind, _sep, value = item.strip().partition(":")
                    self.sans.add(("IP" if kind.startswith("IP") else kind, value.strip()))
            if "Extended Key Usage" in line and index + 1 < len(lines):
                self.ekus = set(x.strip() for x in lines[index + 1].split(","))

    def verified_by(self, cafile):
        rc, out = self.entry["verify"][cafile]
        return rc == 0 and out.rstrip().endswith(": OK")


def controller_ca_pubkeys():
    """PEM public keys of every CA certificate the controller's PKI dir holds (bundles and signer chains)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    keys = set()
    for name in sorted(os.listdir(PKI_DIR)):
        if not (name.endswith(".crt") or name.endswith(".pem")):
            continue
        for cert in x509.load_pem_x509_certificates(read_controller(os.path.join(PKI_DIR, name))):
            keys.add(cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    return keys
