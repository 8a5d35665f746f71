# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""External signers and the offline hand-off (signer.py), against a REAL signer.

The organisational CA here is made by the openssl CLI (a root and an
intermediate under it) and signs through ``openssl ca`` called from a small
bash signer script, exactly as docs/external-signers.md tells users to. Policy
variants of that CA (a SAN forced, clientAuth dropped, CSR extensions not
copied, the CA's own subject, CN=node refused) provoke the vetting errors.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import subprocess
import textwrap
import time

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ansible_collections.crdb.tls.plugins.module_utils import pki, signer
from ansible_collections.crdb.tls.plugins.plugin_utils import commands
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("bash") is None,
                                reason="the openssl CLI (the real external signer) and bash are needed")

HOSTS = ["node2.example.com", "10.0.0.12"]

REQ_CNF = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = placeholder
[ v3_root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_inter ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

CA_CNF = """\
[ ca ]
default_ca = CA_default

[ CA_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/inter.crt
private_key = $dir/inter.key
default_md = sha256
default_days = 30
policy = policy_cn
unique_subject = no
email_in_dn = no
# SANs and EKU come from the CSR (crdb.tls puts them there)
copy_extensions = copy
x509_extensions = leaf_ext

# A CA that ignores the CSR's extensions: no SAN, no EKU.
[ CA_nocopy ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/inter.crt
private_key = $dir/inter.key
default_md = sha256
default_days = 30
policy = policy_cn
unique_subject = no
copy_extensions = none
x509_extensions = leaf_ext

[ policy_cn ]
organizationName = optional
organizationalUnitName = optional
commonName = supplied

[ leaf_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

# Policy: the CA decides the SANs itself (only the DNS name): the IP is dropped.
[ leaf_dns_only ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
subjectAltName = DNS:node2.example.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

# Policy: server certs only: clientAuth is dropped.
[ leaf_server_only ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

# The signer as a user would write it: CSR on stdin, PEM chain on stdout.
SIGN_SH = """\
#!/bin/bash
# usage: sign.sh <openssl ca config> [openssl ca options...]
set -euo pipefail
conf="$1"; shift
dir="$(dirname "$conf")"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/req.csr"
if [ -n "${ENV_DUMP:-}" ]; then env | grep '^CRDB_TLS_' | sort > "$ENV_DUMP"; fi
if [ -n "${REFUSE_CN_NODE:-}" ]; then
  # The organisation's policy: CN=node is not a host name, refused for server certs.
  if openssl req -in "$tmp/req.csr" -noout -subject -nameopt multiline | grep -Eq 'commonName += node$'; then
    echo "policy violation: CN=node is refused, request CN=<host name>" >&2
    exit 1
  fi
fi
openssl ca -batch -config "$conf" -in "$tmp/req.csr" -out "$tmp/leaf.crt" -notext "$@" 2> "$tmp/err" \\
  || { cat "$tmp/err" >&2; exit 1; }
cat "$tmp/leaf.crt" "$dir/inter.crt"
if [ -n "${WITH_ROOT:-}" ]; then cat "$dir/root.crt"; fi
"""


def _run(args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def _load(path):
    with open(path, "rb") as handle:
        return handle.read()


class OrgCA(object):
    """An openssl-made root + intermediate, and the signer script that uses ``openssl ca``."""

    def __init__(self, base):
        self.dir = str(base)
        os.makedirs(os.path.join(self.dir, "newcerts"))
        with open(os.path.join(self.dir, "index.txt"), "w"):
            pass
        with open(os.path.join(self.dir, "serial"), "w") as handle:
            handle.write("1000\n")
        req = os.path.join(self.dir, "req.cnf")
        with open(req, "w") as handle:
            handle.write(REQ_CNF)
        self.conf = os.path.join(self.dir, "ca.cnf")
        with open(self.conf, "w") as handle:
            handle.write(CA_CNF.format(dir=self.dir))
        self.script = os.path.join(self.dir, "sign.sh")
        with open(self.script, "w") as handle:
            handle.write(SIGN_SH)
        os.chmod(self.script, stat.S_IRWXU)
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        _run(["openssl", "req", "-x509", "-config", req, "-extensions", "v3_root"] + newkey
             + ["-keyout", "root.key", "-out", "root.crt", "-days", "3650",
                "-subj", "/O=Org/CN=Org Root CA"], self.dir)
        _run(["openssl", "req", "-new", "-config", req] + newkey
             + ["-keyout", "inter.key", "-out", "inter.csr", "-subj", "/O=Org/CN=Org Issuing CA"], self.dir)
        _run(["openssl", "x509", "-req", "-in", "inter.csr", "-CA", "root.crt", "-CAkey", "root.key",
              "-set_serial", "0x51", "-days", "3650", "-sha256", "-extfile", req,
              "-extensions", "v3_inter", "-out", "inter.crt"], self.dir)
        self.root = x509.load_pem_x509_certificate(_load(os.path.join(self.dir, "root.crt")))
        self.inter = x509.load_pem_x509_certificate(_load(os.path.join(self.dir, "inter.crt")))

    def command(self, *ca_args):
        return [self.script, self.conf] + list(ca_args)


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    return OrgCA(tmp_path_factory.mktemp("orgca"))


def _request(profile="node", hosts=None, **kwargs):
    if hosts is None and profile in ("node", "node_server", "ui"):
        hosts = HOSTS
    spec = pki.build_spec(profile, hosts=hosts, **kwargs)
    key = pki.generate_key("ecdsa", 256)
    return spec, key, pki.make_csr(spec, key)


def _sign(org, spec, csr, *ca_args, **kwargs):
    return signer.sign_with_command(org.command(*ca_args), csr, spec, host="node2", **kwargs)


# --------------------------------------------------------------------------
# A real signer: openssl ca with an intermediate CA
# --------------------------------------------------------------------------

def test_openssl_ca_signs_node_cert_and_it_vets(org, tmp_path):
    spec, key, csr = _request("node")
    dump = str(tmp_path / "env")
    certs = _sign(org, spec, csr, env={"ENV_DUMP": dump})
    chain = signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")
    assert [pki.fingerprint(c) for c in chain[1:]] == [pki.fingerprint(org.inter)]
    leaf = chain[0]
    assert pki.common_name(leaf) == "node"
    assert sorted(pki.san_strings(leaf)) == sorted(HOSTS)
    assert sorted(pki.ekus(leaf)) == ["clientAuth", "serverAuth"]
    assert leaf.issuer == org.inter.subject
    with open(dump) as handle:
        env = dict(line.rstrip("\n").split("=", 1) for line in handle)
    assert env["CRDB_TLS_PROFILE"] == "node"
    assert env["CRDB_TLS_COMMON_NAME"] == "node"
    assert env["CRDB_TLS_SANS"] == "node2.example.com,10.0.0.12"
    assert env["CRDB_TLS_DNS_SANS"] == "node2.example.com"
    assert env["CRDB_TLS_IP_SANS"] == "10.0.0.12"
    assert env["CRDB_TLS_EKUS"] == "serverAuth,clientAuth"
    assert env["CRDB_TLS_LIFETIME_HOURS"] == "43920"
    assert env["CRDB_TLS_USER"] == ""
    assert env["CRDB_TLS_HOST"] == "node2"
    assert env["CRDB_TLS_CERT_FILE"] == "node.crt"


def test_client_cert_env_and_pem_inputs(org, tmp_path):
    spec, key, csr = _request("client", user="maxroach")
    dump = str(tmp_path / "env")
    certs = _sign(org, spec, csr, env={"ENV_DUMP": dump})
    chain = signer.vet_issued(pki.certificates_pem(certs), spec, key.public_key(),
                              pki.certificates_pem([org.root]))
    assert pki.common_name(chain[0]) == "maxroach"
    with open(dump) as handle:
        text = handle.read()
    assert "CRDB_TLS_USER=maxroach\n" in text and "CRDB_TLS_CERT_FILE=client.maxroach.crt\n" in text


def test_root_printed_by_the_signer_is_dropped_from_the_chain(org):
    spec, key, csr = _request("node")
    certs = _sign(org, spec, csr, env={"WITH_ROOT": "1"})
    assert len(certs) == 3
    chain = signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")
    assert len(chain) == 2


def test_ca_dropping_a_san_is_refused_naming_host_and_san(org):
    spec, key, csr = _request("node")
    certs = _sign(org, spec, csr, "-extensions", "leaf_dns_only")
    with pytest.raises(CrdbTlsError) as err:
        signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")
    assert str(err.value) == "node2: the CA signed node.crt without SAN 10.0.0.12"


def test_ca_dropping_client_auth_is_refused_for_node_profile(org):
    spec, key, csr = _request("node")
    certs = _sign(org, spec, csr, "-extensions", "leaf_server_only")
    with pytest.raises(CrdbTlsError) as err:
        signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")
    assert str(err.value) == "node2: the CA signed node.crt without extended key usage clientAuth"


def test_server_only_eku_is_fine_for_node_server(org):
    spec, key, csr = _request("node_server")
    certs = _sign(org, spec, csr, "-extensions", "leaf_server_only")
    signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")


def test_ca_ignoring_csr_extensions_is_refused_with_everything_missing(org):
    spec, key, csr = _request("node")
    certs = _sign(org, spec, csr, "-name", "CA_nocopy")
    with pytest.raises(CrdbTlsError) as err:
        signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")
    msg = str(err.value)
    assert msg.startswith("node2: ")
    assert "without SAN node2.example.com" in msg and "without SAN 10.0.0.12" in msg
    # no EKU extension at all: Go takes it for any usage, so that alone is not refused
    assert "extended key usage" not in msg


def test_split_node_ca_that_sets_its_own_subject_is_accepted_for_node_server(org):
    """The organisation's CA rewrites the subject (its O/OU, CN=<host>): fine for node_server."""
    spec, key, csr = _request("node_server")
    certs = _sign(org, spec, csr, "-subj", "/O=Corp/OU=Databases/CN=node2.example.com")
    chain = signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")
    assert pki.common_name(chain[0]) == "node2.example.com"
    assert pki.organization(chain[0]) == "Corp"


def test_fixed_cn_profiles_refuse_the_cas_own_cn(org):
    spec, key, csr = _request("node")
    certs = _sign(org, spec, csr, "-subj", "/O=Corp/CN=node2.example.com")
    with pytest.raises(CrdbTlsError) as err:
        signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")
    assert str(err.value) == ("node2: the CA signed node.crt with subject CN=node2.example.com,O=Corp, which "
                              "CockroachDB does not authenticate as node: principals [node2.example.com, "
                              "node2.example.com] include neither 'node' nor 'root' (node-to-node RPC needs one; "
                              "or set node_cert_dn)")
    # the cluster maps that principal to node (--cert-principal-map), or matches the DN: accepted
    signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2",
                      identity={"principal_map": {"node2.example.com": "node"}})
    signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2",
                      identity={"node_cert_dn": "O=Corp,CN=node2.example.com"})


def test_org_policy_refusing_cn_node_fails_with_its_stderr(org):
    spec, dummy, csr = _request("node")
    del dummy
    with pytest.raises(CrdbTlsError) as err:
        _sign(org, spec, csr, env={"REFUSE_CN_NODE": "1"})
    msg = str(err.value)
    assert "failed with exit code 1" in msg and "sign.sh" in msg
    assert "policy violation: CN=node is refused" in msg
    # split-node: the server cert carries a host CN, the policy lets it through
    spec, key, csr = _request("node_server")
    certs = _sign(org, spec, csr, env={"REFUSE_CN_NODE": "1"})
    signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")


def test_leaf_outliving_its_ca_chain_is_refused(org):
    spec, key, csr = _request("node")
    certs = _sign(org, spec, csr, "-days", "5000")
    with pytest.raises(CrdbTlsError, match=r"^node2: the CA signed node.crt valid until .*after its CA "
                                           r"chain expires"):
        signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")


def test_expired_certificate_is_refused(org):
    spec, key, csr = _request("node")
    certs = _sign(org, spec, csr, "-startdate", "20200101000000Z", "-enddate", "20200201000000Z")
    with pytest.raises(CrdbTlsError, match="node2: the CA returned node.crt already expired"):
        signer.vet_issued(certs, spec, key.public_key(), [org.root], host="node2")


def test_wrong_key_wrong_roots_and_wrong_order_are_refused(org, ca):
    spec, key, csr = _request("node")
    certs = _sign(org, spec, csr)
    other = pki.generate_key("ecdsa", 256)
    with pytest.raises(CrdbTlsError, match="for a different key than the CSR's"):
        signer.vet_issued(certs, spec, other.public_key(), [org.root], host="node2")
    with pytest.raises(CrdbTlsError, match="node2: node.crt does not chain to the trusted CA"):
        signer.vet_issued(certs, spec, key.public_key(), [ca.certificate], host="node2")
    with pytest.raises(CrdbTlsError, match="node2: node.crt does not chain to the trusted CA"):
        signer.vet_issued(certs[:1], spec, key.public_key(), [org.root], host="node2")
    # leaf then root, intermediate missing in between
    with pytest.raises(CrdbTlsError, match="node2: node.crt does not chain to the trusted CA .*issuer CN=Org Issuing CA"):
        signer.vet_issued([certs[0], org.root], spec, key.public_key(), [org.root], host="node2")
    # leaf then intermediate is fine when the intermediate itself is trusted directly
    signer.vet_issued(certs, spec, key.public_key(), [org.inter], host="node2")


def test_collections_own_ca_output_vets_too(ca):
    """The vetting accepts exactly what pki.issue makes (the collection's own)."""
    spec = pki.build_spec("node", hosts=HOSTS)
    key = pki.generate_key("ecdsa", 256)
    cert = pki.issue(spec, pki.csr_public_key(pki.make_csr(spec, key), "csr"), ca)
    assert signer.vet_issued([cert], spec, key.public_key(), [ca.certificate]) == [cert]


# --------------------------------------------------------------------------
# Signer command failures
# --------------------------------------------------------------------------

def test_signer_exiting_1_reports_its_stderr_tail():
    spec, dummy, csr = _request("node")
    del dummy
    script = "cat >/dev/null; for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; exit 1"
    with pytest.raises(CrdbTlsError) as err:
        signer.sign_with_command(["bash", "-c", script], csr, spec)
    msg = str(err.value)
    assert msg.startswith("signer command bash -c ")
    assert "failed with exit code 1" in msg
    assert "line7" in msg and "line3" in msg and "line2" not in msg


def test_csr_echoed_on_stderr_never_reaches_the_error():
    spec, dummy, csr = _request("node")
    del dummy
    with pytest.raises(CrdbTlsError) as err:
        signer.sign_with_command(["bash", "-c", "cat >&2; echo 'no such role' >&2; exit 2"], csr, spec)
    msg = str(err.value)
    assert "exit code 2" in msg and "no such role" in msg
    assert "REQUEST" not in msg and csr.decode().splitlines()[1] not in msg


def test_signer_printing_garbage_is_refused():
    spec, dummy, csr = _request("node")
    del dummy
    with pytest.raises(CrdbTlsError, match="printed no PEM certificate on stdout"):
        signer.sign_with_command(["bash", "-c", "cat >/dev/null; echo '{\"errors\": []}'"], csr, spec)
    bad = "-----BEGIN CERTIFICATE-----\\nbm90IGEgY2VydA==\\n-----END CERTIFICATE-----"
    with pytest.raises(CrdbTlsError, match="PEM block 1 is not a valid certificate"):
        signer.sign_with_command(["bash", "-c", "cat >/dev/null; printf '%b\\n' \"" + bad + "\""],
                                 csr, spec)


def test_signer_timeout_kills_the_whole_process_group():
    spec, dummy, csr = _request("node")
    del dummy
    started = time.monotonic()
    with pytest.raises(CrdbTlsError) as err:
        # sleep runs as a grandchild holding stdout open: only a group kill ends it
        signer.sign_with_command(["bash", "-c", "cat >/dev/null; echo waiting for approval >&2; "
                                                "sleep 30; true"], csr, spec, timeout=1)
    assert time.monotonic() - started < 10
    msg = str(err.value)
    assert "did not finish within 1 seconds and was killed" in msg
    assert "waiting for approval" in msg


def test_bad_commands_are_refused():
    spec, dummy, csr = _request("node")
    del dummy
    with pytest.raises(CrdbTlsError, match="cannot be started"):
        signer.sign_with_command(["/nonexistent/signer"], csr, spec)
    with pytest.raises(CrdbTlsError, match="non-empty list of arguments"):
        signer.sign_with_command("openssl ca -batch", csr, spec)
    with pytest.raises(CrdbTlsError, match="non-empty list of arguments"):
        signer.sign_with_command([], csr, spec)


# --------------------------------------------------------------------------
# Offline hand-off
# --------------------------------------------------------------------------

def test_handoff_round_trip(org, tmp_path):
    csr_dir = str(tmp_path / "csrs")
    spec1, key1, csr1 = _request("node")
    spec2, key2, csr2 = _request("client", user="root")
    assert signer.write_handoff(csr_dir, "node2.node", csr1) is True
    assert signer.write_handoff(csr_dir, "node2.node", csr1) is False
    assert signer.write_handoff(csr_dir, "client.root", csr2) is True
    assert oct(os.stat(os.path.join(csr_dir, "node2.node.csr")).st_mode & 0o777) == "0o644"
    names = ["node2.node", "client.root"]
    assert signer.pending(csr_dir, names) == names
    assert signer.read_handoff(csr_dir, "node2.node") is None

    # the ticket process: the PKI team signs node2.node.csr with the organisation's CA
    with open(os.path.join(csr_dir, "node2.node.csr"), "rb") as handle:
        certs = signer.sign_with_command(org.command(), handle.read(), spec1)
    with open(os.path.join(csr_dir, "node2.node.crt"), "wb") as handle:
        handle.write(b"Issued by ticket #4711\n" + pki.certificates_pem(certs))
    assert signer.pending(csr_dir, names) == ["client.root"]

    got, public_key = signer.read_handoff(csr_dir, "node2.node")
    assert pki.public_key_bytes(public_key) == pki.public_key_bytes(key1.public_key())
    chain = signer.vet_issued(got, spec1, public_key, [org.root], host="node2")
    assert len(chain) == 2

    # a certificate for another key (an old request) is refused
    wrong = signer.sign_with_command(org.command(), csr1, spec1)
    with open(os.path.join(csr_dir, "client.root.crt"), "wb") as handle:
        handle.write(pki.certificates_pem(wrong))
    assert signer.pending(csr_dir, names) == []
    with pytest.raises(CrdbTlsError, match=r"client.root.crt .* is not for the key of .*client.root.csr"):
        signer.read_handoff(csr_dir, "client.root")

    # a lone DER certificate is accepted
    right = signer.sign_with_command(org.command(), csr2, spec2)
    with open(os.path.join(csr_dir, "client.root.crt"), "wb") as handle:
        handle.write(right[0].public_bytes(serialization.Encoding.DER))
    got, public_key = signer.read_handoff(csr_dir, "client.root")
    assert pki.public_key_bytes(public_key) == pki.public_key_bytes(key2.public_key())
    # ... but without its intermediate it does not chain to the root
    with pytest.raises(CrdbTlsError, match="does not chain"):
        signer.vet_issued(got, spec2, public_key, [org.root])

    # a new CSR replaces the old one; the signed cert lying there is now stale
    spec3, dummy, csr3 = _request("node")
    del spec3, dummy
    assert signer.write_handoff(csr_dir, "node2.node", csr3) is True
    with pytest.raises(CrdbTlsError, match="not for the key of"):
        signer.read_handoff(csr_dir, "node2.node")


def test_handoff_errors(tmp_path):
    csr_dir = str(tmp_path / "csrs")
    os.makedirs(csr_dir)
    with pytest.raises(CrdbTlsError, match="not usable as a file name"):
        signer.write_handoff(csr_dir, "../etc/passwd", b"")
    with pytest.raises(CrdbTlsError, match="not usable as a file name"):
        signer.pending(csr_dir, ["a/b"])
    with pytest.raises(CrdbTlsError, match="not a valid PEM certificate signing request"):
        signer.write_handoff(csr_dir, "node1", b"garbage")
    assert not os.listdir(csr_dir)
    with open(os.path.join(csr_dir, "node1.crt"), "w") as handle:
        handle.write(textwrap.dedent("hello"))
    with pytest.raises(CrdbTlsError, match="node1.csr is not"):
        signer.read_handoff(csr_dir, "node1")
    spec, dummy, csr = _request("node")
    del spec, dummy
    signer.write_handoff(csr_dir, "node1", csr)
    with pytest.raises(CrdbTlsError, match="neither PEM certificates nor a DER certificate"):
        signer.read_handoff(csr_dir, "node1")


def test_signer_commands_run_only_with_the_controller_runner(monkeypatch):
    """module_utils start no process: without plugin_utils' runner (the controller's) a command is refused."""
    spec, dummy, csr = _request("node")
    del dummy
    monkeypatch.setattr(signer, "_COMMAND_RUNNER", [])
    with pytest.raises(CrdbTlsError, match="signer commands run only on the controller"):
        signer.sign_with_command(["/nonexistent/signer"], csr, spec)
    commands.register()
    with pytest.raises(CrdbTlsError, match="cannot be started"):
        signer.sign_with_command(["/nonexistent/signer"], csr, spec)
