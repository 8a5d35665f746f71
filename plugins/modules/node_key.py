#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_key
short_description: Make CockroachDB keys on the host that uses them and return CSRs for the certificates it needs
version_added: 0.1.0
description:
  - Runs on a CockroachDB node or client host (C(crdb_tls_key_location=node)). For each certificate the host
    keeps (the node certificates of O(layout), C(ui.crt) with O(ui_hosts), and C(client.<user>.crt) for each of
    O(users)), keeps a private key in O(certs_dir) and returns a certificate signing request (public) in
    RV(csrs) for each certificate that must be (re)issued. The private keys never leave the host and never
    appear in the module's output.
  - A certificate that is valid for the current key is not requested again. It is requested when it is missing
    or unreadable, does not match the key, is not signed by the current CA of O(issuers) (or, without it, does
    not verify against the CA bundle in the certs dir), has drifted from its profile (CN, SANs, EKU,
    organisation, OCSP URL), or expires within O(renew_before). Reasons are returned in RV(reasons).
  - Keys are replaced only when missing, unreadable, of another type than O(key_type)/O(key_size), or named in
    O(rotate). A new key is written beside the current one as C(.crdb-tls-next.<name>.key) (CockroachDB reads
    only C(*.crt) files), and M(crdb.tls.install) moves it into place together with the certificate signed for
    it, so a certificate and a key that do not match are never both in place. A key waiting there stays until its
    certificate is installed; a rotation cut short (before the install) goes on at the next run, whether or not
    O(rotate) still names it, and its CSR is sent again.
  - No link is followed. O(certs_dir) is opened without following links and must not be one; a key, pending key,
    certificate or CA file in it that is a link or not a regular file is refused, naming it.
  - Keys are written atomically (an owner-only temporary file given its final owner and mode, then renamed) with
    CockroachDB's permission rule - mode 0600 owned by O(key_owner), or 0640 when the key owner is root and
    O(key_group) is set. Wrong modes or owners of existing keys are fixed.
  - The CSR's subject and SANs are a courtesy for external CAs; M(crdb.tls.issue_fleet) takes only the public key
    from it and puts the names of the controller's inventory into the certificate.
author:
  - crdb.tls contributors (@crdb-tls)
requirements:
  - cryptography 3.4.8 or later on the host (tested at 3.4.8, RHEL 9's), from the package C(python3-cryptography) on
    Debian, Ubuntu and RHEL, or C(pip install cryptography); the C(crdb.tls.node) role installs it when missing.
    Without it the module fails with a message naming that package (see O(require_cryptography)).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - crdb.tls.keys
attributes:
  check_mode:
    support: full
    details: Reports which keys would be made and which certificates requested; CSRs are returned only for keys
      that exist already.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  certs_dir:
    description:
      - The certs dir on the host. Created (mode 0700, owned by O(owner)) when missing.
    type: path
    required: true
  layout:
    description:
      - With O(purpose=node), keep the node certificates of this layout - C(node.crt) (V(standard)), or C(node.crt)
        and C(client.node.crt) (V(split_node), V(split_ca)).
      - With O(purpose=client), only which CA signs the client certificates (the client CA in V(split_ca)).
    type: str
    choices: [standard, split_node, split_ca]
  purpose:
    description:
      - V(node) for a CockroachDB node's certs dir, V(client) for a SQL client's (client certificates only; in the
        V(split_ca) layout give O(issuers) C(client_ca), since the client CA is not in a client's certs dir).
    type: str
    choices: [node, client]
    default: node
  hosts:
    description:
      - Names and addresses of the node (the SANs of C(node.crt)). Required with O(layout).
    type: list
    elements: str
    default: []
  ui_hosts:
    description:
      - Also keep C(ui.crt) (DB Console) with these SANs.
    type: list
    elements: str
    default: []
  users:
    description:
      - SQL users whose C(client.<user>.crt) this certs dir holds.
    type: list
    elements: str
    default: []
  issuers:
    description:
      - CA role (V(ca), V(client_ca)) to the content of its signer file (C(ca.signer.pem) of M(crdb.tls.ca) - the
        CA certificate that signs, followed by its intermediates). Public material. A certificate not signed by
        its role's current CA, or not carrying its intermediates, is requested again.
      - Without an entry for a role, its certificates must verify against the CA bundle in O(certs_dir).
    type: dict
    default: {}
  organization:
    description:
      - Organisation (O) certificates must carry; empty for none.
    type: str
    default: Cockroach
  ocsp_url:
    description:
      - OCSP responder URL the certificates must carry.
    type: str
  renew_before:
    description:
      - Request a new certificate when the current one expires within this window (for example V(30d)).
      - A duration (V(30d), V(12h), V(90m)) or a share of the certificate's own lifetime, notBefore to notAfter
        (V(33%) - renew in the last third, as step-ca does at two thirds).
      - The window of every kind unless O(renew_before_by_kind) sets that kind's.
    type: str
  renew_before_by_kind:
    description:
      - Renewal window per kind of certificate, overriding O(renew_before) for that kind, as
        M(crdb.tls.issue_fleet) takes it - keys V(node) (C(node.crt), C(client.node.crt)), V(client)
        (C(client.<user>.crt)) and V(ui) (C(ui.crt)); an empty value keeps O(renew_before).
    type: dict
    default: {}
  rotate:
    description:
      - Certificate file names (for example V(node.crt)), or V(all), whose key is replaced by a new one. Give it
        once - every run with it makes new keys.
    type: list
    elements: str
    default: []
  owner:
    description:
      - Owner of the certs dir (and of the keys unless O(key_owner)).
    type: str
  group:
    description:
      - Group of the certs dir (and of the keys unless O(key_group)).
    type: str
  key_owner:
    description:
      - Owner of the keys when it differs from O(owner), for example V(root).
    type: str
  key_group:
    description:
      - Group of the keys when it differs from O(group); with O(key_owner=root) the keys get mode 0640.
    type: str
  require_cryptography:
    description:
      - When V(false) and the host lacks the C(cryptography) library, return RV(cryptography=false) and do nothing
        instead of failing (the C(crdb.tls.node) role then installs the OS package and runs the module again).
    type: bool
    default: true
seealso:
  - module: crdb.tls.issue_fleet
  - module: crdb.tls.install
"""

EXAMPLES = r"""
- name: Keep node.crt's key on the node and collect what must be signed
  crdb.tls.node_key:
    certs_dir: /var/lib/cockroach/certs
    layout: standard
    hosts: [node1.example.com, 10.0.0.11]
    users: [root]
    issuers:
      ca: "{{ lookup('ansible.builtin.file', '/srv/crdb-pki/ca.signer.pem') }}"
    owner: cockroach
    group: cockroach
    renew_before: 30d
  register: node_csrs

- name: Rotate the node key once
  crdb.tls.node_key:
    certs_dir: /var/lib/cockroach/certs
    layout: standard
    hosts: [node1.example.com]
    owner: cockroach
    rotate: [node.crt]
"""

RETURN = r"""
csrs:
  description: Certificate file name to a PEM certificate signing request, for each certificate to (re)issue.
  returned: success
  type: dict
  sample: {"node.crt": "-----BEGIN CERTIFICATE REQUEST-----\n..."}
certificates:
  description: Per certificate file - C(status) (V(valid) or V(requested)), C(key) (its key file), C(pending)
    (the request is for a new key waiting as C(.crdb-tls-next.<key>)) and C(reasons).
  returned: success
  type: dict
reasons:
  description: Why anything changed or is requested.
  returned: success
  type: list
  elements: str
keys_written:
  description: Key files made in this run (names only).
  returned: success
  type: list
  elements: str
cryptography:
  description: Whether the host has the cryptography library (V(false) only with O(require_cryptography=false)).
  returned: always
  type: bool
evaluated_at:
  description:
    - The instant (UTC, ISO 8601, this host's clock) the renewal windows were judged at; what
      O(crdb.tls.expiry_check#module:renew_as_of) takes.
  returned: success, when the host has the cryptography library
  type: str
  sample: "2026-12-02T13:05:03.123456+00:00"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import (
    durations, installer, module_support, node_keys, pki, renewal)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            module_support.key_argument_spec(),
            certs_dir=dict(type="path", required=True),
            layout=dict(type="str", choices=["standard", "split_node", "split_ca"]),
            purpose=dict(type="str", choices=["node", "client"], default="node"),
            hosts=dict(type="list", elements="str", default=[]),
            ui_hosts=dict(type="list", elements="str", default=[]),
            users=dict(type="list", elements="str", default=[]),
            issuers=dict(type="dict", default={}),
            organization=dict(type="str", default="Cockroach"),
            ocsp_url=dict(type="str"),
            renew_before=dict(type="str"),
            renew_before_by_kind=dict(type="dict", default={}),
            rotate=dict(type="list", elements="str", default=[], no_log=False),
            owner=dict(type="str"),
            group=dict(type="str"),
            key_owner=dict(type="str", no_log=False),
            key_group=dict(type="str", no_log=False),
            require_cryptography=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    if not pki.HAS_CRYPTOGRAPHY and not module.params["require_cryptography"]:
        module.exit_json(changed=False, cryptography=False, csrs={}, certificates={}, reasons=[], keys_written=[],
                         msg="the Python cryptography library is missing on this host")

    def run(module):
        p = module.params
        certificates = node_keys.wanted(layout=p["layout"], hosts=p["hosts"], users=p["users"],
                                        ui_hosts=p["ui_hosts"], organization=p["organization"],
                                        ocsp_url=p["ocsp_url"], purpose=p["purpose"])
        certs_dir = p["certs_dir"]
        group = installer.default_group(p["owner"], p["group"])
        now = pki.utcnow()
        reasons = installer.make_certs_dir(certs_dir, p["owner"], group, check_mode=module.check_mode)
        result = node_keys.ensure(certs_dir, certificates, issuers=p["issuers"], key_type=p["key_type"],
                                  key_size=p["key_size"], renew_before=renewal.windows(p["renew_before"], p["renew_before_by_kind"]),
                                  rotate=p["rotate"],
                                  owner=p["owner"], group=group, key_owner=p["key_owner"],
                                  key_group=p["key_group"], check_mode=module.check_mode, now=now)
        result["evaluated_at"] = durations.instant_text(now)
        result["reasons"] = reasons + result["reasons"]
        result["changed"] = result["changed"] or bool(reasons)
        result["cryptography"] = True
        return result

    module_support.run(module, run)


if __name__ == "__main__":
    main()
