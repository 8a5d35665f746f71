#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: certificate
short_description: Issue or renew one CockroachDB certificate and its key in a certs dir
version_added: 0.1.0
description:
  - Issues one certificate of a CockroachDB profile, signed by a CA kept by M(crdb.tls.ca), and writes
    it with its key under the file names CockroachDB looks for (C(node.crt)/C(node.key),
    C(client.node.crt), C(client.<user>.crt), C(ui.crt)).
  - Re-issues only when needed and says why in RV(reasons) - the certificate or key is missing or
    unreadable, the key does not match, the certificate is not signed by the current CA, its subject,
    SANs, EKU or OCSP URL drifted from what is asked, the key type changed, it expires within
    O(renew_before), or O(force=true).
  - Fixes owner, group and mode of the files it manages without re-issuing.
  - When the CA is an intermediate, the certificate file holds the leaf followed by the intermediates,
    as CockroachDB expects; the trust bundle (roots) is installed as C(ca.crt) (or C(ca-client.crt)
    for O(ca_role=client_ca)) with O(install_ca_bundle=true).
  - The key and certificate are written as one set (temporary files created owner-only in the same
    directory, fsynced, renamed, with a journal so an interrupted run is completed by the next one).
  - Every issued certificate is recorded in the CA's C(index.txt) (serial, expiry, subject).
  - No key material is ever returned or logged.
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
    details: Reports what would change and why; nothing is generated on disk.
  diff_mode:
    support: full
    details: The diff shows subject, issuer, SANs, EKU, serial and expiry before and after.
  platform:
    platforms: posix
options:
  certs_dir:
    description:
      - Directory the certificate and key are written to. It must exist.
    type: path
    required: true
  profile:
    description:
      - V(node) is the multi-purpose C(node.crt) (CN=node, serverAuth and clientAuth, SANs).
      - V(node_server) is the split-node C(node.crt) (serverAuth, SANs; CN from O(common_name), by default
        the first DNS name of O(hosts)).
      - V(node_client) is C(client.node.crt) (CN=node, clientAuth).
      - V(client) is C(client.<user>.crt) (CN=O(user), clientAuth).
      - V(ui) is C(ui.crt) for the DB Console (serverAuth, SANs).
    type: str
    required: true
    choices: [node, node_server, node_client, client, ui]
  user:
    description:
      - SQL user of a V(client) certificate, for example V(root). It must be a CockroachDB SQL user name as
        stored (lower case, at most 63 characters).
    type: str
  hosts:
    description:
      - Names for the Subject Alternative Name. Each becomes an IP SAN when it parses as IPv4 or IPv6,
        else a DNS SAN (a leading C(*.) wildcard is allowed). Required by V(node), V(node_server), V(ui).
    type: list
    elements: str
    default: []
  common_name:
    description:
      - Common name for V(node_server) and V(ui) certificates. The other profiles have fixed names.
    type: str
  organization:
    description:
      - Organisation (O) in the subject. An empty string leaves it out.
    type: str
    default: Cockroach
  lifetime:
    description:
      - Validity, as hours (V(43920h), the default of C(cockroach cert)) or with a unit (V(365d)).
      - A certificate that would outlive its CA is refused.
    type: str
    default: 43920h
  renew_before:
    description:
      - Re-issue when the certificate expires within this window (for example V(30d)).
      - A duration (V(30d), V(12h), V(90m)) or a share of the certificate's own lifetime, notBefore to notAfter
        (V(33%) - renew in the last third, as step-ca does at two thirds).
      - A fixed window as long as O(lifetime) or longer is refused (every run would re-issue), and so is a
        share of 100% or more.
    type: str
  reuse_key:
    description:
      - Keep a good existing key when the certificate is re-issued. By default every new certificate
        gets a new key, as with C(cockroach cert).
    type: bool
    default: false
  force:
    description:
      - Re-issue even though the certificate is fine.
    type: bool
    default: false
  pkcs8:
    description:
      - Also write C(<name>.key.pk8), the key as unencrypted DER PKCS#8, for Java (JDBC) clients.
    type: bool
    default: false
  ca_path:
    description:
      - The PKI directory kept by M(crdb.tls.ca).
    type: path
    required: true
  ca_role:
    description:
      - Which CA of O(ca_path) signs. Use V(client_ca) for C(client.node.crt) and client certificates in a
        split-CA cluster.
    type: str
    choices: [ca, client_ca]
    default: ca
  ca_passphrase:
    description:
      - Passphrase of the CA key, when it is encrypted.
    type: str
  install_ca_bundle:
    description:
      - Also write the CA's trust bundle into O(certs_dir) as C(ca.crt) (or C(ca-client.crt)).
    type: bool
    default: true
  ocsp_url:
    description:
      - OCSP responder URL to put in the certificate's Authority Information Access extension.
    type: str
  owner:
    description:
      - Owner of the files written (name or uid). Default is the user running the module.
    type: str
  group:
    description:
      - Group of the files written (name or gid).
    type: str
  key_owner:
    description:
      - Owner of the key files, when it differs from O(owner). With V(root) and a O(key_group) the key gets
        mode 0640, CockroachDB's one allowed exception to 0600 (the group must be the cockroach
        process's primary group).
    type: str
  key_group:
    description:
      - Group of the key files, when it differs from O(group).
    type: str
  record:
    description:
      - Record issued certificates in the CA's C(index.txt).
    type: bool
    default: true
seealso:
  - module: crdb.tls.ca
  - module: crdb.tls.certs_info
"""

EXAMPLES = r"""
- name: Node certificate for node1 (standard layout)
  crdb.tls.certificate:
    certs_dir: /srv/crdb-pki/issued/node1
    profile: node
    hosts: [node1.example.com, 10.0.0.11, localhost, 127.0.0.1]
    ca_path: /srv/crdb-pki
  delegate_to: localhost

- name: Client certificate for root, with a PKCS#8 copy for JDBC
  crdb.tls.certificate:
    certs_dir: /srv/crdb-pki/issued/clients
    profile: client
    user: root
    pkcs8: true
    ca_path: /srv/crdb-pki

- name: Split-CA - client.node.crt signed by the client CA
  crdb.tls.certificate:
    certs_dir: /srv/crdb-pki/issued/node1
    profile: node_client
    ca_path: /srv/crdb-pki
    ca_role: client_ca

- name: Renew a month before expiry, ECDSA keys
  crdb.tls.certificate:
    certs_dir: /srv/crdb-pki/issued/node1
    profile: node
    hosts: [node1.example.com]
    key_type: ecdsa
    renew_before: 30d
    ca_path: /srv/crdb-pki
"""

RETURN = r"""
reasons:
  description: Why the module changed something (empty when nothing changed).
  returned: always
  type: list
  elements: str
  sample: ["node.key is missing", "node.crt: SANs differ (missing 10.0.0.12)"]
issued:
  description: Whether a new certificate was issued.
  returned: success
  type: bool
cert_file:
  description: Path of the certificate file.
  returned: success
  type: str
  sample: /srv/crdb-pki/issued/node1/node.crt
key_file:
  description: Path of the key file (never its content).
  returned: success
  type: str
  sample: /srv/crdb-pki/issued/node1/node.key
files_written:
  description: Names of the files written in O(certs_dir).
  returned: success
  type: list
  elements: str
serial:
  description: Serial number of the certificate in force, hex.
  returned: success
  type: str
not_after:
  description: Expiry of the certificate in force (ISO 8601, UTC).
  returned: success
  type: str
subject:
  description: Subject of the certificate in force.
  returned: success
  type: str
  sample: CN=node,O=Cockroach
sans:
  description: Subject Alternative Names of the certificate in force.
  returned: success
  type: list
  elements: str
fingerprint_sha256:
  description: SHA-256 fingerprint of the certificate in force, lower-case hex.
  returned: success
  type: str
profile:
  description: The profile.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import issuance, module_support, pki


ARGUMENT_SPEC = dict(
    module_support.key_argument_spec(),
    certs_dir=dict(type="path", required=True),
    profile=dict(type="str", required=True, choices=["node", "node_server", "node_client", "client", "ui"]),
    user=dict(type="str"),
    hosts=dict(type="list", elements="str", default=[]),
    common_name=dict(type="str"),
    organization=dict(type="str", default="Cockroach"),
    lifetime=dict(type="str", default="43920h"),
    renew_before=dict(type="str"),
    reuse_key=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    pkcs8=dict(type="bool", default=False),
    ca_path=dict(type="path", required=True),
    ca_role=dict(type="str", choices=["ca", "client_ca"], default="ca"),
    ca_passphrase=dict(type="str", no_log=True),
    install_ca_bundle=dict(type="bool", default=True),
    ocsp_url=dict(type="str"),
    owner=dict(type="str"),
    group=dict(type="str"),
    key_owner=dict(type="str", no_log=False),
    key_group=dict(type="str", no_log=False),
    record=dict(type="bool", default=True),
)
SPEC_OPTIONS = dict(
    required_if=[("profile", "client", ["user"])],
)


def run(module):
    p = module.params
    spec = pki.build_spec(p["profile"], user=p["user"], hosts=p["hosts"], common_name=p["common_name"],
                          organization=p["organization"], lifetime=p["lifetime"], ocsp_url=p["ocsp_url"])
    result, diff = issuance.ensure_from_pki(
        p["certs_dir"], spec, p["ca_path"], p["ca_role"], p["ca_passphrase"], p["install_ca_bundle"],
        p["record"], module.check_mode, key_type=p["key_type"], key_size=p["key_size"],
        renew_before=p["renew_before"], force=p["force"], reuse_key=p["reuse_key"], owner=p["owner"],
        group=p["group"], key_owner=p["key_owner"], key_group=p["key_group"], pkcs8=p["pkcs8"])
    return dict(result, diff=diff)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **SPEC_OPTIONS)
    module_support.run(module, run)


if __name__ == "__main__":
    main()
