# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet.issue signing without the CA key: an external signer command and the offline CSR hand-off.

The signer is real: ``openssl ca`` with an intermediate CA under an openssl-made
root (the ``OrgCA`` of test_signer.py). The PKI dir holds only the trust
bundle, made by ``authority.ensure_trust``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import subprocess

import pytest

from test_signer import OrgCA

from ansible_collections.crdb.tls.plugins.module_utils import authority, fleet, issuance, pki, rules, signing
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("bash") is None,
                                reason="the openssl CLI (the real external signer) and bash are needed")

NODES = {
    "n1": {"sans": ["n1.example.com", "127.0.0.1"]},
    "n2": {"sans": ["n2.example.com", "10.0.0.2"]},
}


@pytest.fixture
def org(tmp_path):
    return OrgCA(tmp_path / "org")


def trust_pki(tmp_path, org):
    pki_dir = str(tmp_path / "pki")
    os.mkdir(pki_dir, 0o700)
    chain = tmp_path / "org-chain.pem"
    chain.write_bytes(pki.certificates_pem([org.inter, org.root]))
    result = authority.ensure_trust(pki_dir, "ca", cert_src=str(chain))
    assert result["changed"] and result["key"] is None
    return pki_dir


def issue(pki_dir, layout="split_node", **kwargs):
    kwargs.setdefault("nodes", NODES)
    kwargs.setdefault("users", ["root"])
    kwargs.setdefault("key_type", "ecdsa")
    return fleet.issue(pki_dir, layout, **kwargs)


def load(path):
    with open(path, "rb") as handle:
        return pki.load_certificates(handle.read(), path)


def test_ensure_trust_keeps_roots_only_and_refuses_leaves(tmp_path, org, ca):
    pki_dir = trust_pki(tmp_path, org)
    assert not os.path.exists(os.path.join(pki_dir, "ca.key"))
    bundle = load(os.path.join(pki_dir, "ca.crt"))
    assert [pki.fingerprint(c) for c in bundle] == [pki.fingerprint(org.root)]
    again = authority.ensure_trust(pki_dir, "ca", cert_src=str(tmp_path / "org-chain.pem"))
    assert not again["changed"] and again["reasons"] == []
    inter_only = tmp_path / "inter.pem"
    inter_only.write_bytes(pki.certificates_pem([org.inter]))
    with pytest.raises(CrdbTlsError, match="holds no self-signed root CA"):
        authority.ensure_trust(pki_dir, "ca", cert_src=str(inter_only))
    with pytest.raises(CrdbTlsError, match="needs cert_src"):
        authority.ensure_trust(pki_dir, "ca")


def test_signer_command_issues_split_node_fleet_and_is_idempotent(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    first = issue(pki_dir, signing_options={"ca": signing.options(org.command())})
    assert first["changed"] and first["issued_count"] == 5
    for host in NODES:
        directory = fleet.issued_dir(pki_dir, host)
        server = load(os.path.join(directory, "node.crt"))
        assert server[0].issuer == org.inter.subject
        assert [pki.fingerprint(c) for c in server[1:]] == [pki.fingerprint(org.inter)]
        assert pki.common_name(load(os.path.join(directory, "client.node.crt"))[0]) == "node"
        assert stat.S_IMODE(os.stat(os.path.join(directory, "node.key")).st_mode) == 0o600
        with open(os.path.join(directory, "ca.crt"), "rb") as handle:
            assert pki.load_certificates(handle.read(), "ca.crt")[0] == org.root
        # openssl verify, a third party, accepts what was installed.
        subprocess.run(["openssl", "verify", "-CAfile", os.path.join(directory, "ca.crt"), "-untrusted",
                        os.path.join(directory, "node.crt"), os.path.join(directory, "node.crt")],
                       check=True, capture_output=True)
    with open(os.path.join(org.dir, "index.txt")) as handle:
        signed = len(handle.readlines())
    second = issue(pki_dir, signing_options={"ca": signing.options(org.command())})
    assert not second["changed"] and second["issued_count"] == 0
    with open(os.path.join(org.dir, "index.txt")) as handle:
        assert len(handle.readlines()) == signed, "a valid certificate was requested again"


def test_policy_refusing_cn_node_stops_the_standard_layout_with_its_reason(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    with pytest.raises(CrdbTlsError) as err:
        issue(pki_dir, layout="standard",
              signing_options={"ca": signing.options(org.command(), env={"REFUSE_CN_NODE": "1"})})
    assert "policy violation: CN=node is refused" in str(err.value)
    assert not os.listdir(fleet.issued_dir(pki_dir, "n1"))


def test_ca_dropping_client_auth_names_the_host_before_anything_is_written(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    with pytest.raises(CrdbTlsError) as err:
        issue(pki_dir, layout="standard",
              signing_options={"ca": signing.options(org.command("-extensions", "leaf_server_only"))})
    message = str(err.value)
    assert message.startswith("3 certificate(s) could not be signed or were refused; nothing was written")
    for who, filename in (("n1", "node.crt"), ("n2", "node.crt"), ("root", "client.root.crt")):
        assert "%s: the CA signed %s without extended key usage clientAuth" % (who, filename) in message
    assert not os.listdir(fleet.issued_dir(pki_dir, "n1"))


def test_client_signer_needs_split_ca(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    with pytest.raises(CrdbTlsError, match="split_ca layout only"):
        issue(pki_dir, signing_options={"client_ca": signing.options(org.command())})


def sign_pending(org, csr_dir):
    for name in sorted(os.listdir(csr_dir)):
        if name.endswith(".csr"):
            with open(os.path.join(csr_dir, name), "rb") as handle:
                csr = handle.read()
            out = subprocess.run([org.script, org.conf], input=csr, check=True, capture_output=True).stdout
            with open(os.path.join(csr_dir, name[:-4] + ".crt"), "wb") as handle:
                handle.write(out)


def test_handoff_two_steps(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    csr_dir = str(tmp_path / "csr")
    opts = {"ca": signing.options(csr_dir=csr_dir)}
    with pytest.raises(CrdbTlsError) as err:
        issue(pki_dir, signing_options=opts)
    message = str(err.value)
    assert message.startswith("5 certificate request(s) await signing")
    for name in ("n1.node", "n1.client.node", "n2.node", "n2.client.node", "client.root"):
        assert os.path.join(csr_dir, name + ".csr") in message
        key_path = os.path.join(pki_dir, "handoff-keys", name + ".key")
        assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert "SANs n1.example.com, 127.0.0.1" in message
    assert "PRIVATE KEY" not in message
    assert not os.listdir(fleet.issued_dir(pki_dir, "n1"))
    csrs = dict((n, open(os.path.join(csr_dir, n), "rb").read()) for n in os.listdir(csr_dir))
    # A second run before signing rewrites nothing and stops again.
    with pytest.raises(CrdbTlsError, match="await signing"):
        issue(pki_dir, signing_options=opts)
    assert dict((n, open(os.path.join(csr_dir, n), "rb").read()) for n in os.listdir(csr_dir)) == csrs

    sign_pending(org, csr_dir)
    done = issue(pki_dir, signing_options=opts)
    assert done["changed"] and done["issued_count"] == 5
    assert os.listdir(os.path.join(pki_dir, "handoff-keys")) == []
    node = load(os.path.join(fleet.issued_dir(pki_dir, "n2"), "node.crt"))
    assert node[0].issuer == org.inter.subject
    again = issue(pki_dir, signing_options=opts)
    assert not again["changed"]


def test_handoff_refuses_a_cert_without_the_san_naming_the_host(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    csr_dir = str(tmp_path / "csr")
    opts = {"ca": signing.options(csr_dir=csr_dir)}
    with pytest.raises(CrdbTlsError):
        issue(pki_dir, layout="standard", nodes={"n2": NODES["n2"]}, users=[], signing_options=opts)
    with open(os.path.join(csr_dir, "n2.node.csr"), "rb") as handle:
        out = subprocess.run([org.script, org.conf, "-extensions", "leaf_server_only"], input=handle.read(),
                             check=True, capture_output=True).stdout
    with open(os.path.join(csr_dir, "n2.node.crt"), "wb") as handle:
        handle.write(out)
    with pytest.raises(CrdbTlsError) as err:
        issue(pki_dir, layout="standard", nodes={"n2": NODES["n2"]}, users=[], signing_options=opts)
    assert "n2: the CA signed node.crt without extended key usage clientAuth" in str(err.value)
    assert not os.path.exists(os.path.join(fleet.issued_dir(pki_dir, "n2"), "node.crt"))


def test_handoff_check_mode_writes_nothing(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    csr_dir = str(tmp_path / "csr")
    result = issue(pki_dir, check_mode=True, signing_options={"ca": signing.options(csr_dir=csr_dir)})
    assert result["changed"]
    assert not os.path.exists(csr_dir)
    assert not os.path.exists(os.path.join(pki_dir, "handoff-keys"))


def test_handoff_renewal_makes_a_new_key_and_sets_the_old_answer_aside(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    csr_dir = str(tmp_path / "csr")
    opts = {"ca": signing.options(csr_dir=csr_dir)}
    one = {"n1": NODES["n1"]}
    with pytest.raises(CrdbTlsError):
        issue(pki_dir, layout="standard", nodes=one, users=[], signing_options=opts)
    sign_pending(org, csr_dir)
    issue(pki_dir, layout="standard", nodes=one, users=[], signing_options=opts)
    node_crt = os.path.join(fleet.issued_dir(pki_dir, "n1"), "node.crt")
    first = load(node_crt)[0]
    # The org CA signs for 30 days: a 400-day renewal window makes it due now.
    with pytest.raises(CrdbTlsError) as err:
        issue(pki_dir, layout="standard", nodes=one, users=[], renew_before="400d", signing_options=opts)
    assert "1 certificate request(s) await signing" in str(err.value)
    assert os.path.exists(os.path.join(csr_dir, "n1.node.crt.superseded"))
    assert not os.path.exists(os.path.join(csr_dir, "n1.node.crt"))
    assert load(node_crt)[0] == first, "the installed certificate stays until the new one is back"
    sign_pending(org, csr_dir)
    renewed = issue(pki_dir, layout="standard", nodes=one, users=[], renew_before="400d", signing_options=opts)
    assert renewed["issued_count"] == 1
    second = load(node_crt)[0]
    assert second != first
    assert pki.public_key_bytes(second.public_key()) != pki.public_key_bytes(first.public_key())
    assert os.listdir(os.path.join(pki_dir, "handoff-keys")) == []


@pytest.mark.parametrize("mode", ["command", "csr_dir"])
def test_plan_signs_a_csr_made_elsewhere_without_touching_keys(tmp_path, org, mode):
    """signing.plan(csr_pem=...): the key lives where the CSR was made; only the certificate is written."""
    pki_dir = trust_pki(tmp_path, org)
    csr_dir = str(tmp_path / "csr")
    config = signing.options(org.command()) if mode == "command" else signing.options(csr_dir=csr_dir)
    backend = signing.backend(pki_dir, "ca", config)
    certs_dir = str(tmp_path / "n1")
    os.mkdir(certs_dir, 0o700)
    spec = pki.build_spec("node_server", hosts=NODES["n1"]["sans"])
    node_key = pki.generate_key("ecdsa", 256)

    def run():
        made = signing.plan(certs_dir, spec, backend, "n1.node", who="n1", csr_pem=pki.make_csr(spec, node_key))
        issuance.apply(made)
        return made

    first = run()
    if mode == "csr_dir":
        assert first.awaiting == "n1.node" and not first.files
        again = run()          # an ECDSA CSR made anew each time asks for the same: not rewritten
        assert again.reasons == ["node.crt is missing"], again.reasons
        sign_pending(org, csr_dir)
        first = run()
    assert [f[0] for f in first.files] == ["node.crt"]
    assert not os.path.exists(os.path.join(certs_dir, "node.key"))
    leaf = load(os.path.join(certs_dir, "node.crt"))[0]
    assert pki.public_key_bytes(leaf.public_key()) == pki.public_key_bytes(node_key.public_key())
    second = run()
    assert not second.changed and second.issued is None, second.reasons
    other = pki.generate_key("ecdsa", 256)
    moved = signing.plan(certs_dir, spec, backend, "n1.node", who="n1", csr_pem=pki.make_csr(spec, other),
                         check_mode=True)
    assert "node.crt does not carry the requested public key" in moved.reasons


def host_csrs(tmp_path, layout="split_node"):
    """Keys kept "on the hosts" (here: a dir per host) and the CSRs the node role would send."""
    keys, csrs = {}, {}
    for host, info in NODES.items():
        for profile in sorted(rules.layout_profiles(layout)):
            spec = pki.build_spec(profile, hosts=info["sans"] if rules.PROFILES[profile]["sans"] else None)
            key = pki.generate_key("ecdsa")
            keys[(host, spec.filename)] = key
            csrs.setdefault(host, {})[spec.filename] = pki.make_csr(spec, key)
    return keys, csrs


def test_keys_made_on_the_nodes_signed_by_the_command(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    keys, csrs = host_csrs(tmp_path)
    opts = {"ca": signing.options(org.command())}
    first = issue(pki_dir, key_location="node", csrs=csrs, users=[], node_users=[], signing_options=opts)
    assert first["changed"] and first["issued_count"] == 4
    for (host, name), key in keys.items():
        chain = load(os.path.join(fleet.issued_dir(pki_dir, host), name))
        assert chain[0].issuer == org.inter.subject
        assert pki.keys_match(chain[0], key), "%s/%s does not carry the host's key" % (host, name)
    for host in NODES:
        names = sorted(os.listdir(fleet.issued_dir(pki_dir, host)))
        assert not [n for n in names if n.endswith(".key")], names   # keys never come to the controller
    assert not os.path.exists(os.path.join(pki_dir, "handoff-keys"))
    with open(os.path.join(org.dir, "index.txt")) as handle:
        signed = len(handle.readlines())
    # The same CSRs again (a rerun before the hosts installed): nothing is requested twice.
    second = issue(pki_dir, key_location="node", csrs=csrs, users=[], node_users=[], signing_options=opts)
    assert not second["changed"] and second["issued_count"] == 0
    with open(os.path.join(org.dir, "index.txt")) as handle:
        assert len(handle.readlines()) == signed


def test_keys_made_on_the_nodes_through_the_handoff(tmp_path, org):
    pki_dir = trust_pki(tmp_path, org)
    keys, csrs = host_csrs(tmp_path)
    csr_dir = str(tmp_path / "csr")
    opts = {"ca": signing.options(csr_dir=csr_dir)}
    with pytest.raises(CrdbTlsError) as err:
        issue(pki_dir, key_location="node", csrs=csrs, users=[], node_users=[], signing_options=opts)
    assert str(err.value).startswith("4 certificate request(s) await signing")
    # The hosts' own CSRs are handed off as they are; no key is made or kept on the controller.
    with open(os.path.join(csr_dir, "n1.node.csr"), "rb") as handle:
        assert handle.read() == csrs["n1"]["node.crt"]
    handoff_keys = os.path.join(pki_dir, "handoff-keys")
    assert not os.path.isdir(handoff_keys) or not os.listdir(handoff_keys)
    sign_pending(org, csr_dir)
    done = issue(pki_dir, key_location="node", csrs=csrs, users=[], node_users=[], signing_options=opts)
    assert done["changed"] and done["issued_count"] == 4
    for (host, name), key in keys.items():
        assert pki.keys_match(load(os.path.join(fleet.issued_dir(pki_dir, host), name))[0], key)
