#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: issue_fleet
short_description: Issue or renew every certificate of a CockroachDB fleet in one call on the controller
version_added: 0.1.0
description:
  - Keeps, for every node given in O(nodes), the certificates of its O(layout) (C(node.crt), or
    C(node.crt) + C(client.node.crt)), optionally C(ui.crt), and one client certificate per SQL user of
    O(users), all signed by the CAs kept by M(crdb.tls.ca) in O(pki_dir).
  - Writes each node's complete certs-dir content to C(<pki_dir>/issued/<node>/) (CA bundles included, client
    certificates of O(node_users) copied in) and each user's to C(<pki_dir>/issued/_users/<user>/), ready for
    M(crdb.tls.install) to ship in one round trip per host.
  - Re-issues only what needs it, with the same reasons as M(crdb.tls.certificate); key generation runs in
    parallel across cores. New certificates are recorded in their CA's C(index.txt) in one locked update.
  - A DB Console certificate from a public CA (O(ui_cert_src), O(ui_key_src)) is vetted first (key matches,
    not expired, serverAuth, and its SANs cover O(ui_sans)).
  - Meant to run once per play (C(run_once)). The CA keys never leave O(pki_dir); no key material is returned.
author:
  - crdb.tls contributors (@crdb-tls)
requirements:
  - cryptography >= 41.0 on the controller
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - crdb.tls.controller
  - crdb.tls.keys
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  pki_dir:
    description:
      - The PKI directory of M(crdb.tls.ca). The CA (and for V(split_ca) the client CA) must exist.
    type: path
    required: true
  layout:
    description:
      - V(standard) - multi-purpose C(node.crt) with CN=node.
      - V(split_node) - C(node.crt) (server) plus C(client.node.crt) (CN=node), one CA.
      - V(split_ca) - as V(split_node), with C(client.node.crt) and client certificates signed by the client CA.
    type: str
    choices: [standard, split_node, split_ca]
    default: standard
  nodes:
    description:
      - Node name to its certificate names - C(sans) (list, required) and C(ui_sans) (list, for a generated
        C(ui.crt); defaults to C(sans)).
    type: dict
    default: {}
  users:
    description:
      - SQL users to issue client certificates for.
    type: list
    elements: str
    default: [root]
  node_users:
    description:
      - Users whose client certificates go into every node's certs dir. Defaults to O(users).
    type: list
    elements: str
  validate_only:
    description:
      - Only check the input (client users, node SANs and DB Console names, layout, each kind's renewal window
        against O(lifetime)) and return; the PKI dir is neither read nor written, and need not exist. The node
        role runs this before M(crdb.tls.ca), so that bad input is refused before anything is written.
    type: bool
    default: false
  ui_generate:
    description:
      - Issue a C(ui.crt) per node from the cluster CA.
    type: bool
    default: false
  ui_cert_src:
    description:
      - A DB Console certificate (with its chain) from a public CA, put into every node's set as C(ui.crt).
    type: path
  ui_key_src:
    description:
      - The key of O(ui_cert_src).
    type: path
  ui_sans:
    description:
      - Names O(ui_cert_src) must cover.
    type: list
    elements: str
    default: []
  lifetime:
    description:
      - Validity of issued certificates.
    type: str
    default: 43920h
  renew_before:
    description:
      - Re-issue certificates that expire within this window (for example V(30d)).
      - The window of every kind unless O(renew_before_by_kind) sets that kind's.
      - A duration (V(30d), V(12h), V(90m)) or a share of the certificate's own lifetime, notBefore to notAfter
        (V(33%) - renew in the last third, as step-ca does at two thirds).
      - A fixed node, client or ui window as long as O(lifetime) or longer is refused (every run would
        re-issue), and so is a share of 100% or more.
    type: str
  renew_before_by_kind:
    description:
      - Renewal window per kind of certificate, overriding O(renew_before) for that kind.
      - Keys V(node) (C(node.crt), C(client.node.crt)), V(client) (C(client.<user>.crt)) and V(ui) (C(ui.crt));
        values durations such as V(30d). An empty value keeps O(renew_before).
      - A V(ca) key is accepted and has no effect here - this module never renews a CA (see C(playbooks/rotate_ca.yml)).
    type: dict
  organization:
    description:
      - Organisation (O) in issued subjects.
    type: str
    default: Cockroach
  ocsp_url:
    description:
      - OCSP responder URL to put in issued certificates.
    type: str
  client_ca_ocsp_url:
    description:
      - OCSP responder URL for the certificates the client CA signs (V(split_ca) - client certificates and
        C(client.node.crt)), whose responder must sign with a certificate of the client CA. Defaults to O(ocsp_url).
    type: str
  pkcs8:
    description:
      - Also write C(client.<user>.key.pk8) (DER PKCS#8) for Java clients.
    type: bool
    default: false
  ca_passphrase:
    description:
      - Passphrase of the CA key, when encrypted.
    type: str
  client_ca_passphrase:
    description:
      - Passphrase of the client CA key, when encrypted.
    type: str
  signer_command:
    description:
      - Sign the certificates of the CA (role C(ca)) with this command instead of a CA key - an argv list run on
        the controller without a shell, with the CSR (PEM) on stdin, the profile in C(CRDB_TLS_*) environment
        variables, printing the certificate followed by its intermediates (PEM) on stdout.
      - The PKI dir then needs only the trust bundle (M(crdb.tls.ca) with C(external_signer=true)).
      - Everything the command returns is vetted before it is written (key, chain to the trust bundle, dates,
        CN, SANs and EKUs of the profile); a certificate still valid is not requested again.
      - See C(docs/external-signers.md) for the contract and recipes (C(openssl ca), C(step ca sign), Vault).
    type: list
    elements: str
    version_added: 0.2.0
  client_signer_command:
    description:
      - As O(signer_command), for the client CA of the V(split_ca) layout.
    type: list
    elements: str
    version_added: 0.2.0
  signer_env:
    description:
      - Extra environment variables for the signer commands (for example C(VAULT_ADDR)).
    type: dict
    default: {}
    version_added: 0.2.0
  signer_timeout:
    description:
      - Seconds a signer command may run before it is killed (with its process group).
    type: int
    default: 60
    version_added: 0.2.0
  csr_dir:
    description:
      - Offline hand-off for the CA (role C(ca)) - the certificates it signs are requested as
        C(<csr_dir>/<name>.csr) (C(<host>.node), C(<host>.client.node), C(<host>.ui), C(client.<user>)).
      - A run that lacks any signed C(<name>.crt) writes every needed CSR, changes nothing else, and fails with
        the list of what to get signed. A later run picks the signed certificates up, vets them like the
        collection's own, and writes the issued sets.
      - Keys are made here and wait in C(<pki_dir>/handoff-keys/) (mode 0600) until their certificate is back.
    type: path
    version_added: 0.2.0
  client_csr_dir:
    description:
      - As O(csr_dir), for the client CA of the V(split_ca) layout (may be the same directory).
    type: path
    version_added: 0.2.0
  key_location:
    description:
      - V(controller) - keys are made here and written to the issued dirs with their certificates.
      - V(node) - the hosts made their keys with M(crdb.tls.node_key); only the public keys of O(csrs) and
        O(client_csrs) are certified, and the issued dirs hold certificates only (key files left there by
        V(controller) are removed). Names, EKUs and lifetime come from the profiles and O(nodes), never from
        the CSR. Hosts keep the certificates they sent no CSR for. O(ui_cert_src) and O(pkcs8) are refused.
    type: str
    choices: [controller, node]
    default: controller
  csrs:
    description:
      - With O(key_location=node) - node name (of O(nodes)) to certificate file name (C(node.crt),
        C(client.node.crt), C(ui.crt), C(client.<user>.crt) of O(node_users)) to its PEM CSR.
    type: dict
    default: {}
  client_csrs:
    description:
      - With O(key_location=node) - client host name to C(client.<user>.crt) (users of O(users)) to its PEM CSR.
        Certificates go to C(<pki_dir>/issued/_clients/<host>/) with C(ca.crt). Give every client host, with an
        empty dict when it needs nothing, so its dir exists.
    type: dict
    default: {}
seealso:
  - module: crdb.tls.ca
  - module: crdb.tls.install
  - module: crdb.tls.node_key
"""

EXAMPLES = r"""
- name: Issue every certificate of the play's nodes, once, on the controller
  crdb.tls.issue_fleet:
    pki_dir: /srv/crdb-pki
    layout: standard
    nodes: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'crdb_tls_node_cert_names'))) }}"
    users: [root, app]
  run_once: true
  delegate_to: localhost

- name: Same, signed by the organisation's CA through openssl ca (no CA key on the controller)
  crdb.tls.issue_fleet:
    pki_dir: /srv/crdb-pki
    layout: split_node
    nodes: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'crdb_tls_node_cert_names'))) }}"
    signer_command: [/usr/local/bin/sign-openssl.sh, /etc/pki/org-issuing/ca.cnf]
  run_once: true
  delegate_to: localhost

- name: Offline hand-off - the first run writes the CSRs and fails with the list, a later run installs
  crdb.tls.issue_fleet:
    pki_dir: /srv/crdb-pki
    nodes: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'crdb_tls_node_cert_names'))) }}"
    csr_dir: /srv/crdb-csr
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
hosts:
  description:
    - Per node - C(changed), C(reasons), C(dir) (the issued dir) and C(fingerprints) (file to SHA-256).
    - In check mode also C(planned) - the file names of the set the run would write (what M(crdb.tls.install)
      takes as O(crdb.tls.install#module:planned)); with no CA in O(pki_dir) yet (a first deploy) every file of
      the set. The diff (with C(--diff)) shows each changed set's certificates before and after.
  returned: success
  type: dict
users:
  description: Per user - C(changed), C(reasons), C(dir) and C(fingerprints); C(planned) in check mode.
  returned: success
  type: dict
validated:
  description: True when O(validate_only=true) found the input good (nothing else is returned then).
  returned: when O(validate_only=true)
  type: bool
clients:
  description: With O(key_location=node), per client host of O(client_csrs) - C(changed), C(reasons), C(dir) and
    C(fingerprints).
  returned: success
  type: dict
issued_count:
  description: How many certificates were issued in this run.
  returned: success
  type: int
evaluated_at:
  description:
    - The instant (UTC, ISO 8601) every renewal window of this run was judged at. A check that follows the run
      passes it to M(crdb.tls.expiry_check) as O(crdb.tls.expiry_check#module:renew_as_of), so a certificate
      that enters its window a moment after this step judged it is not reported as one the step missed.
  returned: success, unless O(validate_only=true)
  type: str
  sample: "2026-12-02T13:05:03.123456+00:00"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import durations, fleet, module_support, pki, renewal, signing


ARGUMENT_SPEC = dict(
    module_support.key_argument_spec(),
    pki_dir=dict(type="path", required=True),
    layout=dict(type="str", choices=["standard", "split_node", "split_ca"], default="standard"),
    nodes=dict(type="dict", default={}),
    users=dict(type="list", elements="str", default=["root"]),
    node_users=dict(type="list", elements="str"),
    ui_generate=dict(type="bool", default=False),
    ui_cert_src=dict(type="path"),
    ui_key_src=dict(type="path"),
    ui_sans=dict(type="list", elements="str", default=[]),
    lifetime=dict(type="str", default="43920h"),
    renew_before=dict(type="str"),
    renew_before_by_kind=dict(type="dict"),
    organization=dict(type="str", default="Cockroach"),
    ocsp_url=dict(type="str"),
    client_ca_ocsp_url=dict(type="str"),
    pkcs8=dict(type="bool", default=False),
    ca_passphrase=dict(type="str", no_log=True),
    client_ca_passphrase=dict(type="str", no_log=True),
    signer_command=dict(type="list", elements="str"),
    client_signer_command=dict(type="list", elements="str"),
    signer_env=dict(type="dict", default={}, no_log=True),
    signer_timeout=dict(type="int", default=60),
    csr_dir=dict(type="path"),
    client_csr_dir=dict(type="path"),
    key_location=dict(type="str", choices=["controller", "node"], default="controller"),
    csrs=dict(type="dict", default={}),
    client_csrs=dict(type="dict", default={}),
    validate_only=dict(type="bool", default=False),
)
SPEC_OPTIONS = dict(
    required_together=[["ui_cert_src", "ui_key_src"]],
    mutually_exclusive=[["ui_generate", "ui_cert_src"], ["signer_command", "csr_dir"],
                        ["client_signer_command", "client_csr_dir"]],
)


def run(module):
    p = module.params
    if p["validate_only"]:
        fleet.check_inputs(p["layout"], nodes=p["nodes"], users=p["users"], node_users=p["node_users"],
                           lifetime=p["lifetime"], ui_sans=p["ui_sans"],
                           renew_before=renewal.windows(p["renew_before"], p["renew_before_by_kind"]))
        return {"changed": False, "validated": True}
    now = pki.utcnow()
    result = fleet.issue(
        p["pki_dir"], p["layout"], nodes=p["nodes"], users=p["users"], node_users=p["node_users"],
        ui_generate=p["ui_generate"], ui_cert_src=p["ui_cert_src"], ui_key_src=p["ui_key_src"],
        ui_sans=p["ui_sans"], key_type=p["key_type"], key_size=p["key_size"], lifetime=p["lifetime"],
        renew_before=p["renew_before"], renew_before_by_kind=p["renew_before_by_kind"],
        organization=p["organization"], ocsp_url=p["ocsp_url"],
        pkcs8=p["pkcs8"],
        passphrases={"ca": p["ca_passphrase"], "client_ca": p["client_ca_passphrase"]},
        check_mode=module.check_mode,
        signing_options={
            "ca": signing.options(p["signer_command"], p["csr_dir"], p["signer_env"], p["signer_timeout"]),
            "client_ca": signing.options(p["client_signer_command"], p["client_csr_dir"], p["signer_env"],
                                         p["signer_timeout"]),
        },
        key_location=p["key_location"], csrs=p["csrs"], client_csrs=p["client_csrs"],
        client_ca_ocsp_url=p["client_ca_ocsp_url"], now=now)
    result["evaluated_at"] = durations.instant_text(now)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **SPEC_OPTIONS)
    module_support.run(module, run)


if __name__ == "__main__":
    main()
