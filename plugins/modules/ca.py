#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ca
short_description: Generate, import and rotate the CA of a CockroachDB cluster
version_added: 0.1.0
description:
  - Keeps a CockroachDB CA in a PKI directory on the Ansible controller.
  - Without O(cert_src), generates a CA as C(cockroach cert create-ca) does (RSA 2048, CN=Cockroach CA,
    O=Cockroach, CA:TRUE with path length 1, 87840h) the first time, and leaves it alone afterwards.
  - With O(cert_src) and O(key_src), vets an organisational CA (root or intermediate) and imports it.
    Refused are a certificate that is not a CA, a key that does not match, an expired CA, SHA-1 or MD5
    signatures and RSA keys below 2048 bits; the message names the file at fault.
  - The directory then holds C(ca.crt) (the trust bundle to install on hosts, newest root first),
    C(ca.key) (the signing key, mode 0600), C(ca.signer.pem) (the signing CA followed by its
    intermediates) and C(ca.index.txt) (every certificate issued, in OpenSSL's index format).
    With O(role=client_ca) the prefix is C(ca-client) instead of C(ca), for split-CA clusters.
  - A new CA (rotation, O(force=true), or a different provided CA) is put first in the trust bundle
    and earlier unexpired roots are kept after it when O(keep_previous=true), so nodes trust both
    while certificates are re-issued.
  - All changes happen under an exclusive lock on O(path), so two runs at once cannot fork the CA.
  - The CA key never leaves O(path); nothing this module returns contains key material.
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
    support: full
    details: The diff lists the trust bundle's subjects and fingerprints before and after.
  platform:
    platforms: posix
options:
  path:
    description:
      - The PKI directory that holds the CA. When missing it is created with mode 0700 (missing parents as
        with C(mkdir -p)); an existing one open to group or others is tightened to 0700.
      - A directory inside an installed collection (a path through C(ansible_collections)) is refused.
    type: path
    required: true
  role:
    description:
      - V(ca) is the CA whose bundle is installed as C(ca.crt) and which signs node certificates
        (and client certificates unless the cluster splits CAs).
      - V(client_ca) is the CA installed as C(ca-client.crt) that signs C(client.node.crt) and client
        certificates in a split-CA cluster.
    type: str
    choices: [ca, client_ca]
    default: ca
  cert_src:
    description:
      - A provided CA certificate (PEM) to import instead of generating one.
      - The signing CA comes first; when it is an intermediate, its issuers up to the self-signed root
        follow it in the same file.
    type: path
  key_src:
    description:
      - The provided CA's private key (PEM). Required with O(cert_src).
    type: path
  src_passphrase:
    description:
      - Passphrase of O(key_src). The key is kept encrypted in O(path); pass the same passphrase as
        O(crdb.tls.certificate#module:ca_passphrase) when issuing.
    type: str
  passphrase:
    description:
      - Encrypt a generated CA key with this passphrase.
    type: str
  common_name:
    description:
      - Common name of a generated CA. Defaults to C(Cockroach CA), or C(Cockroach Client CA) for
        O(role=client_ca).
    type: str
  organization:
    description:
      - Organisation (O) of a generated CA.
    type: str
    default: Cockroach
  lifetime:
    description:
      - Lifetime of a generated CA, as hours (V(87840h)) or with a unit (V(3650d), V(10y)).
    type: str
    default: 87840h
  renew_before:
    description:
      - Rotate a generated CA once it expires within this window (for example V(30d)).
      - A duration (V(30d), V(12h), V(90m)) or a share of the certificate's own lifetime, notBefore to notAfter
        (V(33%) - renew in the last third, as step-ca does at two thirds).
      - A fixed window as long as O(lifetime) or longer is refused (every run would re-issue), and so is a
        share of 100% or more.
      - By default a CA is only replaced when it is missing or expired, or with O(force=true).
    type: str
  force:
    description:
      - Generate a new CA even though the current one is fine (CA rotation), or replace a broken one.
      - Also needed to make a new CA in a O(path) that holds issued sets (C(issued/)), a CA index or a rotation
        state but lost its CA certificate or key; without it that fails, naming O(path), instead of replacing
        every host's trust bundle.
      - A CA key that is replaced (by a new or an imported CA) is kept beside it as C(ca.key.<date>.bak)
        (mode 0600), to be removed by hand once the rotation that retires it has finished.
    type: bool
    default: false
  leaf_lifetime:
    description:
      - Lifetime of the certificates the CA will sign (the node role passes C(crdb_tls_lifetime)). With
        O(cert_src), a provided CA that expires before such a certificate would is refused before any CA file
        is replaced.
    type: str
  keep_previous:
    description:
      - Keep earlier unexpired roots in the trust bundle after the new one.
      - Always true with O(rotation=start).
    type: bool
    default: true
  external_signer:
    description:
      - The CA's key is not on this host - certificates are signed by an external signer command or through
        the offline CSR hand-off of M(crdb.tls.issue_fleet). Only the trust side is kept.
      - O(cert_src) is then required without O(key_src) - the organisation's CA certificates (the issuing CA
        followed by its issuers up to the self-signed root, or the root alone). Its self-signed root(s)
        become the trust bundle installed as C(ca.crt) (or C(ca-client.crt)); nothing is generated and no key
        is read or written.
    type: bool
    default: false
    version_added: 0.2.0
  rotation:
    description:
      - One step of a resumable CA rotation (what C(playbooks/rotate_ca.yml) runs). Where the rotation stands
        is kept in C(ca.rotation.json) (C(ca-client.rotation.json) for O(role=client_ca)) in O(path), written
        under the directory lock in the same journaled set as the CA files.
      - V(start) (phase 1) generates a new CA, or imports O(cert_src), puts it first in the bundle before the
        old root(s) and records the rotation as C(started). When a rotation is already in progress it resumes
        it instead, without a new CA; a different O(cert_src) is then refused.
      - V(trusted) records that every host trusts the bundle of both roots (end of phase 1). Until then,
        issuing from this CA, and this module without O(rotation), fail with a message saying so.
      - V(reissued) records that every certificate was re-issued from the new CA (end of phase 2).
      - V(finish) (phase 3) removes the roots the rotation replaced from the bundle. It is refused until
        V(reissued) was recorded, unless O(force=true). After it, V(start) begins the next rotation.
      - A step never moves the rotation backwards, so rerunning an earlier phase keeps the progress.
    type: str
    choices: [start, trusted, reissued, finish]
seealso:
  - module: crdb.tls.certificate
  - module: crdb.tls.certs_info
  - name: Create Security Certificates using a Custom CA
    description: The CockroachDB page this collection implements.
    link: https://www.cockroachlabs.com/docs/stable/create-security-certificates-custom-ca
"""

EXAMPLES = r"""
- name: Create the cluster CA on the controller (once; later runs change nothing)
  crdb.tls.ca:
    path: /srv/crdb-pki
  delegate_to: localhost
  run_once: true

- name: Import the organisation's intermediate CA (intermediate first, then the root)
  crdb.tls.ca:
    path: /srv/crdb-pki
    cert_src: /secure/org-intermediate-chain.pem
    key_src: /secure/org-intermediate.key
    src_passphrase: "{{ vault_org_ca_passphrase }}"

- name: A separate CA for client certificates (split-CA layout)
  crdb.tls.ca:
    path: /srv/crdb-pki
    role: client_ca

- name: Trust bundle of an organisational CA that signs through an external command (no key here)
  crdb.tls.ca:
    path: /srv/crdb-pki
    cert_src: /secure/org-issuing-chain.pem
    external_signer: true

- name: Rotate the CA; ca.crt becomes a bundle of the new and the old root
  crdb.tls.ca:
    path: /srv/crdb-pki
    force: true

- name: Phase 1 of a resumable rotation (a rerun resumes it, it never makes a third CA)
  crdb.tls.ca:
    path: /srv/crdb-pki
    rotation: start

- name: Phase 3, once every certificate comes from the new CA; drop the old root from the bundle
  crdb.tls.ca:
    path: /srv/crdb-pki
    rotation: finish
"""

RETURN = r"""
cert:
  description: Path of the signing CA certificate followed by its intermediates.
  returned: success
  type: str
  sample: /srv/crdb-pki/ca.signer.pem
key:
  description: Path of the CA key (never its content); null with O(external_signer=true).
  returned: success
  type: str
  sample: /srv/crdb-pki/ca.key
external_signer:
  description: True when only the trust side of an externally signing CA is kept.
  returned: when O(external_signer=true)
  type: bool
bundle:
  description: Path of the trust bundle to install on hosts.
  returned: success
  type: str
  sample: /srv/crdb-pki/ca.crt
bundle_name:
  description: The name the bundle takes in a certs dir.
  returned: success
  type: str
  sample: ca.crt
index:
  description: Path of the record of issued certificates (OpenSSL index format).
  returned: success
  type: str
  sample: /srv/crdb-pki/ca.index.txt
subject:
  description: Subject of the signing CA.
  returned: success
  type: str
  sample: CN=Cockroach CA,O=Cockroach
serial:
  description: Serial number of the signing CA, hex.
  returned: success
  type: str
  sample: 5F3A...
not_after:
  description: Expiry of the signing CA (ISO 8601, UTC).
  returned: success
  type: str
  sample: "2036-12-06T18:44:28+00:00"
fingerprint_sha256:
  description: SHA-256 fingerprint of the signing CA certificate, lower-case hex.
  returned: success
  type: str
is_intermediate:
  description: Whether the signing CA is an intermediate (leaf files then carry the intermediates).
  returned: success
  type: bool
bundle_subjects:
  description: Subjects of the certificates in the trust bundle, newest first.
  returned: success
  type: list
  elements: str
bundle_fingerprints:
  description: SHA-256 fingerprints of the certificates in the trust bundle, in bundle order.
  returned: success
  type: list
  elements: str
key_backup:
  description:
    - Path of the copy of the CA key this call replaced (C(ca.key.<date>.bak), mode 0600, beside it); null when
      no key was replaced. Remove it by hand once the rotation that retires that CA has finished.
  returned: success
  type: str
rotated:
  description: Whether a new CA was generated or imported.
  returned: success
  type: bool
rotation:
  description:
    - Where the CA rotation stands after this call (null when none was ever started), as kept in
      C(ca.rotation.json).
  returned: success
  type: dict
  contains:
    state:
      description: V(started), V(trusted), V(reissued) or V(finished).
      type: str
    new:
      description: SHA-256 fingerprint of the CA rotated to.
      type: str
    previous:
      description: Fingerprints of the roots the rotation replaces (removed by V(finish)).
      type: list
      elements: str
reasons:
  description: Why anything changed (empty when nothing did).
  returned: success
  type: list
  elements: str
  sample: ["no CA yet in /srv/crdb-pki"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.crdb.tls.plugins.module_utils import authority, module_support, renewal


ARGUMENT_SPEC = dict(
    module_support.key_argument_spec(),
    path=dict(type="path", required=True),
    role=dict(type="str", choices=["ca", "client_ca"], default="ca"),
    cert_src=dict(type="path"),
    key_src=dict(type="path"),
    src_passphrase=dict(type="str", no_log=True),
    passphrase=dict(type="str", no_log=True),
    common_name=dict(type="str"),
    organization=dict(type="str", default="Cockroach"),
    lifetime=dict(type="str", default="87840h"),
    renew_before=dict(type="str"),
    force=dict(type="bool", default=False),
    keep_previous=dict(type="bool", default=True),
    external_signer=dict(type="bool", default=False),
    rotation=dict(type="str", choices=["start", "trusted", "reissued", "finish"]),
    leaf_lifetime=dict(type="str"),
)
SPEC_OPTIONS = {}


def run(module):
    p = module.params
    if p["external_signer"]:
        if p["rotation"]:
            module.fail_json(msg="rotation=%s applies to a CA whose key is here; with external_signer=true give "
                                 "the new CA's certificates as cert_src (the bundle keeps the old root after "
                                 "them while keep_previous=true)" % p["rotation"])
        if p["key_src"]:
            module.fail_json(msg="external_signer=true keeps no CA key: drop key_src (%s); the signer "
                                 "command or the CSR hand-off signs" % p["key_src"])
        result = authority.ensure_trust(p["path"], role=p["role"], cert_src=p["cert_src"],
                                        keep_previous=p["keep_previous"], check_mode=module.check_mode)
    elif bool(p["cert_src"]) != bool(p["key_src"]):
        module.fail_json(msg="cert_src and key_src go together (a provided CA needs its key), unless "
                             "external_signer=true")
    else:
        renewal.check_window(p["renew_before"], p["lifetime"])
        result = authority.ensure(
            p["path"], role=p["role"], passphrase=p["passphrase"], cert_src=p["cert_src"],
            key_src=p["key_src"], src_passphrase=p["src_passphrase"], common_name=p["common_name"],
            organization=p["organization"], lifetime=p["lifetime"], key_type=p["key_type"],
            key_size=p["key_size"], renew_before=p["renew_before"], force=p["force"],
            keep_previous=p["keep_previous"], rotation=p["rotation"], check_mode=module.check_mode,
            leaf_lifetime=p["leaf_lifetime"])
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **SPEC_OPTIONS)
    module_support.run(module, run)


if __name__ == "__main__":
    main()
