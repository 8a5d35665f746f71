# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue a whole fleet's certificates in one call on the controller.

Layout of what is issued, under ``<pki_dir>/issued/``:

* ``<host>/``: everything one CockroachDB node gets, named as in its certs
  dir: ``ca.crt`` (and ``ca-client.crt`` in split-CA), the node certificate(s)
  and keys of the layout, ``client.<user>.crt``/``.key`` for the node users,
  and ``ui.crt``/``ui.key`` when the DB Console has its own certificate.
* ``_users/<user>/``: one client certificate per SQL user, shared by the nodes
  and client hosts that carry it, with the CA bundle clients verify servers
  with (``ca.crt``).

Every certificate goes through :func:`issuance.plan`; plans run in a thread
pool (key generation in ``cryptography`` releases the GIL) and every new
certificate is recorded in its CA's index in one locked update per CA.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.crdb.tls.plugins.module_utils import authority, fileio, issuance, ledger, pki, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

ISSUED_DIR = "issued"
USERS_DIR = "_users"


def issued_dir(pki_dir, host):
    return os.path.join(pki_dir, ISSUED_DIR, host)


def user_dir(pki_dir, user):
    return os.path.join(pki_dir, ISSUED_DIR, USERS_DIR, user)


def _ensure_private_dir(path):
    if not os.path.isdir(path):
        os.makedirs(path, 0o700)
        os.chmod(path, 0o700)
    return path


def vet_provided_ui(cert_src, key_src, ui_sans, now=None):
    """Load a DB Console certificate from a public CA and check it fits; returns its PEM files."""
    now = now or pki.utcnow()
    cert_data = fileio.read_file(cert_src, "DB Console certificate")
    key_data = fileio.read_file(key_src, "DB Console key")
    certs = pki.load_certificates(cert_data, cert_src)
    key = pki.load_private_key(key_data, key_src)
    leaf = certs[0]
    if not pki.keys_match(leaf, key):
        raise CrdbTlsError("%s does not match the DB Console certificate %s" % (key_src, cert_src))
    if pki.not_after(leaf) <= now:
        raise CrdbTlsError("%s: the DB Console certificate expired on %s" % (cert_src, pki.not_after(leaf).isoformat()))
    order = pki.chain_order_problem(certs)
    if order:
        raise CrdbTlsError("%s: %s" % (cert_src, order))
    have = pki.ekus(leaf)
    if have is not None and rules.EKU_SERVER not in have:
        raise CrdbTlsError("%s: the DB Console certificate lacks extended key usage serverAuth" % cert_src)
    missing = [h for h in ui_sans or [] if not pki.host_covered(leaf, h)]
    if missing:
        raise CrdbTlsError("%s does not cover %s in its SANs (it has %s)"
                           % (cert_src, ", ".join(missing), ", ".join(pki.san_strings(leaf))))
    return pki.certificates_pem(certs), pki.private_key_pem(key)


def _jobs(pki_dir, layout, nodes, users, node_users, ui_generate, options):
    """``[(key, certs_dir, spec, ca_role, extra)]`` of every certificate to keep (validates, writes nothing)."""
    jobs = []
    client_role = rules.client_ca_role(layout)
    for user in users:
        rules.validate_username(user, "client user")
        spec = pki.build_spec("client", user=user, organization=options["organization"],
                              lifetime=options["lifetime"], ocsp_url=options["ocsp_urls"][client_role])
        jobs.append((("_users", user), user_dir(pki_dir, user), spec, client_role, {"pkcs8": options["pkcs8"]}))
    for host in sorted(nodes):
        info = nodes[host] or {}
        sans = list(info.get("sans") or [])
        if not sans:
            raise CrdbTlsError("node %s has no SANs: give it at least its address or name" % host)
        directory = issued_dir(pki_dir, host)
        for profile, role in sorted(rules.layout_profiles(layout).items()):
            spec = pki.build_spec(profile, hosts=sans if rules.PROFILES[profile]["sans"] else None,
                                  organization=options["organization"], lifetime=options["lifetime"],
                                  ocsp_url=options["ocsp_urls"][role])
            jobs.append(((host, profile), directory, spec, role, {}))
        if ui_generate:
            ui_sans = list(info.get("ui_sans") or []) or sans
            spec = pki.build_spec("ui", hosts=ui_sans, organization=options["organization"],
                                  lifetime=options["lifetime"], ocsp_url=options["ocsp_urls"]["ca"])
            jobs.append(((host, "ui"), directory, spec, "ca", {}))
    return jobs


def issue(pki_dir, layout, nodes=None, users=None, node_users=None, ui_generate=False, ui_cert_src=None,
          ui_key_src=None, ui_sans=None, key_type=pki.DEFAULT_KEY_TYPE, key_size=None, lifetime=None,
          renew_before=None, organization=rules.DEFAULT_ORGANIZATION, ocsp_url=None, pkcs8=False,
          passphrases=None, workers=None, check_mode=False, now=None, client_ca_ocsp_url=None):
    """Keep every certificate of a fleet right; returns ``{"hosts": {...}, "users": {...}}``.

    ``ocsp_url`` goes into the certificates of the cluster CA, and into those
    of the client CA too unless ``client_ca_ocsp_url`` (split_ca: the URL of
    the client CA's own responder) is given.
    """
    now = now or pki.utcnow()
    ocsp_urls = {"ca": ocsp_url, "client_ca": client_ca_ocsp_url or ocsp_url}
    nodes = dict(nodes or {})
    users = list(dict.fromkeys(users or []))
    node_users = list(dict.fromkeys(users if node_users is None else node_users))
    for user in node_users:
        if user not in users:
            users.append(user)
    rules.layout_files(layout)
    pki.check_key_spec(key_type, key_size)
    if ui_generate and ui_cert_src:
        raise CrdbTlsError("ui_generate and ui_cert_src exclude each other: issue ui.crt here or provide one")
    if bool(ui_cert_src) != bool(ui_key_src):
        raise CrdbTlsError("ui_cert_src and ui_key_src go together")
    provided_ui = vet_provided_ui(ui_cert_src, ui_key_src, ui_sans, now) if ui_cert_src else None
    fileio.require_dir(pki_dir, "PKI directory")
    # One run at a time per PKI dir (crdb.tls.ca holds the same lock): a
    # concurrent run waits, then finds everything issued.
    with fileio.dir_lock(pki_dir):
        return _issue_locked(pki_dir, layout, nodes, users, node_users, ui_generate, provided_ui, key_type,
                             key_size, lifetime, renew_before, organization, ocsp_urls, pkcs8, passphrases or {},
                             workers, check_mode, now)


def _issue_locked(pki_dir, layout, nodes, users, node_users, ui_generate, provided_ui, key_type, key_size,
                  lifetime, renew_before, organization, ocsp_urls, pkcs8, passphrases, workers, check_mode, now):
    roles_needed = set(["ca"]) | set(r for p, r in rules.layout_profiles(layout).items())
    roles_needed.add(rules.client_ca_role(layout))
    cas, bundles, indexes, revoked = {}, {}, {}, {}
    for role in sorted(roles_needed):
        cas[role] = authority.load(pki_dir, role, passphrases.get(role), now)
        bundles[role] = authority.bundle(pki_dir, role)
        indexes[role] = authority.paths(pki_dir, role)["index"]
        revoked[role] = ledger.revoked_serials(indexes[role])   # a revoked certificate is re-issued
    options = {"organization": organization or None, "lifetime": lifetime, "ocsp_urls": ocsp_urls, "pkcs8": pkcs8}
    # Every name is validated before the first directory is made.
    jobs = _jobs(pki_dir, layout, nodes, users, node_users, ui_generate, options)
    if not check_mode:
        _ensure_private_dir(os.path.join(pki_dir, ISSUED_DIR))
        _ensure_private_dir(os.path.join(pki_dir, ISSUED_DIR, USERS_DIR))
        for job in jobs:
            _ensure_private_dir(job[1])

    def run(job):
        key, directory, spec, role, extra = job
        if check_mode and not os.path.isdir(directory):
            return key, None
        bundle = bundles[role] if key[0] != "_users" else bundles["ca"]
        return key, issuance.plan(directory, spec, cas[role], key_type=key_type, key_size=key_size,
                                  renew_before=renew_before, pkcs8=extra.get("pkcs8", False),
                                  ca_bundle=bundle, index_path=indexes[role], revoked=revoked[role], now=now)

    pool_size = workers or max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=pool_size) as pool:
        plans = dict(pool.map(run, jobs))

    hosts = dict((h, {"changed": False, "reasons": [], "dir": issued_dir(pki_dir, h),
                      "fingerprints": {}}) for h in nodes)
    users_out = dict((u, {"changed": False, "reasons": [], "dir": user_dir(pki_dir, u),
                          "fingerprints": {}}) for u in users)
    issued = {}
    # Users' dirs first (the nodes' dirs get copies of their files), then one
    # journaled set per node dir: its certificates and the copies together.
    pending = dict((h, {}) for h in nodes)   # host -> {name: (name, data, mode, owner, group)}
    host_fixes = dict((h, []) for h in nodes)
    user_plans = []
    for (owner, what), plan in plans.items():
        out = users_out[what] if owner == "_users" else hosts[owner]
        if plan is None:
            out["changed"] = True
            out["reasons"].append("%s: not issued yet" % what)
            continue
        if not check_mode:
            if plan.issued is not None:
                issued.setdefault(plan.index_path, []).append(plan.issued)
            plan.index_path = None   # recorded below, one locked update per CA
            if owner == "_users":
                user_plans.append(plan)
            else:
                for entry in plan.files:
                    pending[owner][entry[0]] = entry
                host_fixes[owner].extend(plan.attribute_fixes)
        out["changed"] = out["changed"] or plan.changed
        out["reasons"].extend(plan.reasons)
        if plan.certificate is not None:
            out["fingerprints"][plan.spec.filename] = pki.fingerprint(plan.certificate)
    if user_plans:
        with ThreadPoolExecutor(max_workers=pool_size) as pool:
            list(pool.map(issuance.apply, user_plans))

    # Each node's dir gets the node users' client certificates and the extras.
    user_files = {}
    for user in node_users:
        source = user_dir(pki_dir, user)
        cert_name = rules.client_cert_name(user)
        for name, mode in ((cert_name, rules.CERT_MODE), (rules.key_name(cert_name), rules.KEY_MODE)):
            user_files[name] = (fileio.read_optional(os.path.join(source, name)), mode)
    for host in sorted(nodes):
        directory = issued_dir(pki_dir, host)
        wanted = []
        for user in node_users:
            cert_name = rules.client_cert_name(user)
            for name in (cert_name, rules.key_name(cert_name)):
                wanted.append((name,) + user_files[name])
        if layout == "split_ca":
            wanted.append(bundles["client_ca"] + (rules.CERT_MODE,))
        wanted.append(bundles["ca"] + (rules.CERT_MODE,))
        if provided_ui is not None:
            wanted.append(("ui.crt", provided_ui[0], rules.CERT_MODE))
            wanted.append(("ui.key", provided_ui[1], rules.KEY_MODE))
        for name, data, mode in wanted:
            if data is None:
                continue
            if name in pending[host]:
                current = pending[host][name][1]
            else:
                current = fileio.read_optional(os.path.join(directory, name)) if os.path.isdir(directory) else None
            if current != data:
                pending[host][name] = (name, data, mode, None, None)
                hosts[host]["changed"] = True
                hosts[host]["reasons"].append("%s updated" % name)

    def commit(host):
        directory = issued_dir(pki_dir, host)
        if pending[host]:
            files = fileio.FileSet(directory)
            for entry in pending[host].values():
                files.add(*entry)
            files.commit()
        for name, mode, owner, group in host_fixes[host]:
            fileio.set_attributes(os.path.join(directory, name), mode, owner, group)

    try:
        todo = [h for h in sorted(nodes) if pending[h] or host_fixes[h]] if not check_mode else []
        if todo:
            with ThreadPoolExecutor(max_workers=pool_size) as pool:
                list(pool.map(commit, todo))
    finally:
        for index_path, certs in issued.items():
            ledger.record(index_path, certs)
    changed = any(v["changed"] for v in hosts.values()) or any(v["changed"] for v in users_out.values())
    return {"changed": changed, "hosts": hosts, "users": users_out,
            "issued_count": sum(len(c) for c in issued.values())}
