#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ocsp_responder_cert
short_description: Issue or renew the OCSP responder certificate of a CockroachDB CA
version_added: 0.1.0
description:
  - Issues C(ocsp.crt) and C(ocsp.key) into O(certs_dir), the delegated responder certificate an OCSP
    responder such as C(openssl ocsp -rsigner ocsp.crt -rkey ocsp.key) signs its answers with.
  - The certificate is signed by the CA it answers for (O(ca_role) of the PKI directory kept by
    M(crdb.tls.ca)), carries the OCSPSigning extended key usage and the C(id-pkix-ocsp-nocheck)
    extension, and no Subject Alternative Name.
  - Re-issues only when needed and says why in RV(reasons), exactly as M(crdb.tls.certificate) does
    (missing or unreadable files, a key that does not match, a new CA, a changed subject, inside
    O(renew_before), or O(force=true)).
  - C(ocsp.crt) is not a file CockroachDB reads; keep it out of node certs dirs. A responder serving
    both CAs of a split-CA cluster needs one O(certs_dir) per CA role.
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
    details: Reports what would change and why; nothing is written.
  diff_mode:
    support: full
    details: The diff shows subject, issuer, EKU, serial and expiry before and after.
  platform:
    platforms: posix
options:
  certs_dir:
    description:
      - Directory C(ocsp.crt) and C(ocsp.key) are written to. It must exist.
    type: path
    required: true
  common_name:
    description:
      - Common name of the responder certificate.
    type: str
    default: Cockroach OCSP Responder
  organization:
    description:
      - Organisation (O) in the subject. An empty string leaves it out.
    type: str
    default: Cockroach
  lifetime:
    description:
      - Validity, as hours or with a unit (V(365d)). A certificate that would outlive its CA is refused.
    type: str
    default: 8784h
  renew_before:
    description:
      - Re-issue when the certificate expires within this window (for example V(30d)).
      - A duration (V(30d), V(12h), V(90m)) or a share of the certificate's own lifetime, notBefore to notAfter
        (V(33%) - renew in the last third, as step-ca does at two thirds).
    type: str
  force:
    description:
      - Re-issue even though the certificate is fine.
    type: bool
    default: false
  ca_path:
    description:
      - The PKI directory kept by M(crdb.tls.ca).
    type: path
    required: true
  ca_role:
    description:
      - The CA the responder answers for, and which signs its certificate.
    type: str
    choices: [ca, client_ca]
    default: ca
  ca_passphrase:
    description:
      - Passphrase of the CA key, when it is encrypted.
    type: str
  install_ca_bundle:
    description:
      - Also write the CA's trust bundle into O(certs_dir) as C(ca.crt) (or C(ca-client.crt)), the
        C(-CA) file of the responder.
    type: bool
    default: true
  owner:
    description:
      - Owner of the files written (name or uid). Default is the user running the module.
    type: str
  group:
    description:
      - Group of the files written (name or gid).
    type: str
  record:
    description:
      - Record the issued certificate in the CA's C(index.txt), so the responder can answer for its own
        certificate too.
    type: bool
    default: true
seealso:
  - module: crdb.tls.revoke
  - module: crdb.tls.certificate
"""

EXAMPLES = r"""
- name: Responder certificate of the cluster CA
  crdb.tls.ocsp_responder_cert:
    certs_dir: /srv/crdb-pki/ocsp/ca
    ca_path: /srv/crdb-pki
  delegate_to: localhost

- name: Responder certificate of the client CA (split-CA cluster), renewed a month ahead
  crdb.tls.ocsp_responder_cert:
    certs_dir: /srv/crdb-pki/ocsp/client_ca
    ca_path: /srv/crdb-pki
    ca_role: client_ca
    common_name: Cockroach Client OCSP Responder
    key_type: ecdsa
    renew_before: 30d
  delegate_to: localhost
"""

RETURN = r"""
reasons:
  description: Why the module changed something (empty when nothing changed).
  returned: always
  type: list
  elements: str
  sample: ["ocsp.key is missing", "ocsp.crt is missing"]
issued:
  description: Whether a new certificate was issued.
  returned: success
  type: bool
cert_file:
  description: Path of the certificate file.
  returned: success
  type: str
  sample: /srv/crdb-pki/ocsp/ca/ocsp.crt
key_file:
  description: Path of the key file (never its content).
  returned: success
  type: str
  sample: /srv/crdb-pki/ocsp/ca/ocsp.key
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
  sample: CN=Cockroach OCSP Responder,O=Cockroach
fingerprint_sha256:
  description: SHA-256 fingerprint of the certificate in force, lower-case hex.
  returned: success
  type: str
profile:
  description: The profile, always V(ocsp).
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import issuance, module_support, pki, rules


ARGUMENT_SPEC = dict(
    module_support.key_argument_spec(),
    certs_dir=dict(type="path", required=True),
    common_name=dict(type="str", default=rules.DEFAULT_OCSP_COMMON_NAME),
    organization=dict(type="str", default=rules.DEFAULT_ORGANIZATION),
    lifetime=dict(type="str", default="8784h"),
    renew_before=dict(type="str"),
    force=dict(type="bool", default=False),
    ca_path=dict(type="path", required=True),
    ca_role=dict(type="str", choices=["ca", "client_ca"], default="ca"),
    ca_passphrase=dict(type="str", no_log=True),
    install_ca_bundle=dict(type="bool", default=True),
    owner=dict(type="str"),
    group=dict(type="str"),
    record=dict(type="bool", default=True),
)
SPEC_OPTIONS = {}


def run(module):
    p = module.params
    spec = pki.build_spec("ocsp", common_name=p["common_name"], organization=p["organization"],
                          lifetime=p["lifetime"])
    result, diff = issuance.ensure_from_pki(
        p["certs_dir"], spec, p["ca_path"], p["ca_role"], p["ca_passphrase"], p["install_ca_bundle"],
        p["record"], module.check_mode, key_type=p["key_type"], key_size=p["key_size"],
        renew_before=p["renew_before"], force=p["force"], owner=p["owner"], group=p["group"])
    result.pop("sans", None)
    return dict(result, diff=diff)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **SPEC_OPTIONS)
    module_support.run(module, run)


if __name__ == "__main__":
    main()
