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
Each set then gets the content check ``crdb.tls.install`` would make on the
controller, done here where ``cryptography`` is already loaded, and its
pass recorded (``stamp.py``): installing it later costs no such check.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.crdb.tls.plugins.module_utils import (authority, certsdir, fileio, issuance, ledger, pki,
                                                               renewal, rules, signing, stamp)
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

ISSUED_DIR = "issued"
USERS_DIR = "_users"
CLIENTS_DIR = "_clients"
KEY_SUFFIXES = (rules.KEY_SUFFIX, rules.PKCS8_SUFFIX)


def issued_dir(pki_dir, host):
    return os.path.join(pki_dir, ISSUED_DIR, host)


def user_dir(pki_dir, user):
    return os.path.join(pki_dir, ISSUED_DIR, USERS_DIR, user)


def client_dir(pki_dir, host):
    """Certificates of a client host whose keys are made on it (``key_location=node``)."""
    return os.path.join(pki_dir, ISSUED_DIR, CLIENTS_DIR, host)


def vet_provided_ui(cert_src, key_src, ui_sans, now=None, ca_src=None):
    """Load a DB Console certificate from a public CA and check it fits; returns its PEM files.

    Judged by :func:`verifier.vet_leaf`: the key (any format Go loads)
    matches; the leaf with the intermediates that follow it in ``cert_src``
    verifies as serverAuth up to a root: those in ``ca_src`` (the file that
    becomes ``ca-ui.crt``), else the host's system trust store, or a
    self-signed root at the end of ``cert_src``; it is valid for every name
    of ``ui_sans``, or carries at least one SAN when none is asked.
    """
    from ansible_collections.crdb.tls.plugins.module_utils import verifier
    now = now or pki.utcnow()
    cert_data = fileio.read_file(cert_src, "DB Console certificate")
    key_data = fileio.read_file(key_src, "DB Console key")
    certs = verifier.load_certificates(cert_data, cert_src)
    key = verifier.load_private_key(key_data, key_src)
    leaf = certs[0]
    if not verifier.key_matches(leaf, key):
        raise CrdbTlsError("%s does not match the DB Console certificate %s" % (key_src, cert_src))
    if pki.not_after(leaf) <= now:
        raise CrdbTlsError("%s: the DB Console certificate expired on %s" % (cert_src, pki.not_after(leaf).isoformat()))
    missing = [h for h in ui_sans or [] if verifier.hostname_problem(leaf, h)]
    if missing:
        raise CrdbTlsError("%s does not cover %s in its SANs (it has %s)"
                           % (cert_src, ", ".join(missing), ", ".join(pki.san_strings(leaf))))
    if ca_src:
        roots, where = verifier.load_certificates(fileio.read_file(ca_src, "DB Console CA"), ca_src), ca_src
    else:
        roots, where = _system_roots() + [c for c in certs[1:] if c.issuer == c.subject], "the system trust store"
    problems = verifier.vet_leaf(certs, "ui.crt", [rules.EKU_SERVER], roots, hosts=list(ui_sans or []),
                                 at_least_one_san=True, source=cert_src, now=now)
    if problems:
        raise CrdbTlsError("%s (checked against %s)" % ("; ".join(str(p) for p in problems), where))
    return pki.certificates_pem(certs), pki.private_key_pem(key)


def _system_roots():
    """The certificates of the controller's default trust store (OpenSSL's default CA file), or []."""
    import ssl
    path = ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    if not path or not os.path.isfile(path):
        return []
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return []
    import warnings
    from cryptography import x509
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a few old roots have serials RFC 5280 disallows
        for label, block in pki.pem_blocks(data):
            if label == "CERTIFICATE":
                try:
                    cert = x509.load_pem_x509_certificate(block)
                    list(cert.extensions)
                    out.append(cert)
                except ValueError:
                    continue
    return out


def _jobs(pki_dir, layout, nodes, users, node_users, ui_generate, options):
    """``[(key, certs_dir, spec, ca_role, extra)]`` of every certificate to keep (validates, writes nothing)."""
    jobs = []
    client_role = rules.client_ca_role(layout)
    for user in users:
        rules.check_client_user(user, "client user")
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


def check_inputs(layout, nodes=None, users=None, node_users=None, lifetime=None, renew_before=None,
                 ui_sans=None):
    """Refuse bad input before anything is written (the role runs it before the CA step).

    Every client user (:func:`rules.check_client_user`), every node's SANs
    and DB Console names (:func:`pki.parse_hosts`), the layout, and each
    kind's renewal window against the lifetime. ``renew_before`` is the
    result of :func:`renewal.windows`. Reads and writes no file.
    """
    rules.layout_files(layout)
    for user in list(users or []) + list(node_users or []):
        rules.check_client_user(user, "client user")
    if not isinstance(nodes or {}, dict):
        raise CrdbTlsError("nodes must be a mapping of host name to {sans: [...]}, got %r" % (nodes,))
    for host in sorted(nodes or {}):
        info = nodes[host] or {}
        if not isinstance(info, dict):
            raise CrdbTlsError("node %s: want a mapping with sans, got %r" % (host, info))
        pki.parse_hosts(info.get("sans") or [], what="SANs of node %s" % host)
        pki.parse_hosts(info.get("ui_sans") or [], what="DB Console SANs of node %s" % host)
    pki.parse_hosts(ui_sans or [], what="ui_sans")
    renewal.check_leaf_windows(renew_before or {}, rules.DEFAULT_LEAF_LIFETIME if lifetime in (None, "") else lifetime)


def issue(pki_dir, layout, nodes=None, users=None, node_users=None, ui_generate=False, ui_cert_src=None,
          ui_key_src=None, ui_sans=None, key_type=pki.DEFAULT_KEY_TYPE, key_size=None, lifetime=None,
          renew_before=None, organization=rules.DEFAULT_ORGANIZATION, ocsp_url=None, pkcs8=False,
          passphrases=None, workers=None, check_mode=False, now=None, signing_options=None,
          key_location="controller", csrs=None, client_csrs=None, renew_before_by_kind=None,
          client_ca_ocsp_url=None, ui_ca_src=None):
    """Keep every certificate of a fleet right; returns ``{"hosts": {...}, "users": {...}}``.

    ``renew_before`` is the window of every kind; ``renew_before_by_kind``
    (``{"node": "30d", "client": ..., "ui": ...}``) overrides it per kind
    (see ``renewal.windows``). The CA itself is never renewed here.
    ``signing_options``: ``{ca_role: options}`` from :func:`signing.options` for each CA whose key is not
    in the PKI dir (an external signer command or the offline CSR hand-off); the others sign with their key.
    ``key_location="node"``: the hosts made their keys; see :func:`issue_from_csrs`.
    ``ocsp_url`` goes into the certificates of the cluster CA, and into those
    of the client CA too unless ``client_ca_ocsp_url`` (split_ca: the URL of
    the client CA's own responder) is given.
    """
    renew_before = renewal.check_leaf_windows(renewal.windows(renew_before, renew_before_by_kind),
                                              rules.DEFAULT_LEAF_LIFETIME if lifetime in (None, "") else lifetime)
    check_inputs(layout, nodes, users, node_users, lifetime, renew_before, ui_sans)
    if key_location == "node":
        if ui_cert_src or pkcs8:
            raise CrdbTlsError("key_location node: %s would put a private key in the PKI dir; keys are made on "
                               "the hosts in this mode" % ("ui_cert_src" if ui_cert_src else "pkcs8"))
        return issue_from_csrs(pki_dir, layout, nodes=nodes, users=users, node_users=node_users, csrs=csrs,
                               client_csrs=client_csrs, ui_generate=ui_generate, lifetime=lifetime,
                               renew_before=renew_before, organization=organization, ocsp_url=ocsp_url,
                               passphrases=passphrases, workers=workers, check_mode=check_mode, now=now,
                               signing_options=signing_options)
    if key_location != "controller":
        raise CrdbTlsError("key_location %r must be controller or node" % (key_location,))
    if csrs or client_csrs:
        raise CrdbTlsError("csrs and client_csrs are for key_location node")
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
    provided_ui = vet_provided_ui(ui_cert_src, ui_key_src, ui_sans, now, ca_src=ui_ca_src) if ui_cert_src else None
    signing_options = _check_signing_options(layout, signing_options)
    if check_mode and not _has_ca(pki_dir):
        options = {"organization": organization or None, "lifetime": lifetime, "ocsp_urls": ocsp_urls, "pkcs8": pkcs8}
        return _plan_without_ca(pki_dir, layout, nodes, users, node_users,
                                _jobs(pki_dir, layout, nodes, users, node_users, ui_generate, options),
                                provided_ui is not None)
    fileio.require_dir(pki_dir, "PKI directory")
    # One run at a time per PKI dir (crdb.tls.ca holds the same lock): a
    # concurrent run waits, then finds everything issued.
    with fileio.dir_lock(pki_dir):
        result = _issue_locked(pki_dir, layout, nodes, users, node_users, ui_generate, provided_ui, key_type,
                               key_size, lifetime, renew_before, organization, ocsp_urls, pkcs8, passphrases or {},
                               workers, check_mode, now, signing_options)
        if not check_mode:
            _record_install_checks(pki_dir, layout, nodes, users, ui_sans)
        return result


def _commit_set(directory, entries, fixes):
    """Write one issued dir's new files as one journaled set, then fix modes and owners in place."""
    if entries:
        files = fileio.FileSet(directory)
        for entry in entries.values():
            files.add(*entry)
        files.commit()
    for name, mode, owner, group in fixes:
        fileio.set_attributes(os.path.join(directory, name), mode, owner, group)


def _record_install_checks(pki_dir, layout, nodes, users, ui_sans):
    """Run crdb.tls.install's controller check on each set the roles will install, with their parameters.

    Problems are not raised here: the install of that set reports them.
    """
    sets = []
    for host in sorted(nodes):
        sans = list((nodes[host] or {}).get("sans") or [])
        sets.append((issued_dir(pki_dir, host),
                     dict(expected_hosts=sans, expected_ui_hosts=list(ui_sans or []), layout=layout, purpose="node")))
    sets += [(user_dir(pki_dir, user), dict(layout=layout, purpose="client")) for user in users]
    for directory, params in sets:
        if os.path.isdir(directory) and not stamp.matches(directory, stamp.shipped_names(directory), **params):
            certsdir.install_problems(directory, **params)


def _check_signing_options(layout, signing_options):
    """``{role: options}`` without the roles signing with their key; a client CA option needs split_ca."""
    out = dict((role, opts) for role, opts in (signing_options or {}).items() if opts)
    if "client_ca" in out and rules.client_ca_role(layout) != "client_ca":
        raise CrdbTlsError("a signer for the client CA (client_signer_command / client_csr_dir) applies to the "
                           "split_ca layout only; layout %s signs everything with the CA" % layout)
    return out


def _load_signer(pki_dir, role, passphrases, signing_options, now):
    """What signs for ``role``: its key in the PKI dir, or a :mod:`signing` backend."""
    if role in signing_options:
        return signing.backend(pki_dir, role, signing_options[role])
    return authority.load(pki_dir, role, passphrases.get(role), now)


def _job_host(job_key):
    """The host a job's certificate is for (a node, or a client host of key_location node), None for a user's."""
    owner = job_key[0]
    if owner == USERS_DIR:
        return None
    return owner[1] if isinstance(owner, tuple) else owner


def _plan_external(job, backend, key_type, key_size, renew_before, bundle, index_path, check_mode, now,
                   csr_pem=None):
    """A job's plan when ``backend`` (command or hand-off) signs instead of a CA key.

    ``csr_pem``: the CSR a host made for a key it keeps (key_location node), signed or handed off as it is.
    """
    key, directory, spec, _role, extra = job
    host = _job_host(key)
    try:
        return signing.plan(directory, spec, backend, signing.handoff_name(host, spec), who=host or key[1],
                            key_type=key_type, key_size=key_size, renew_before=renew_before,
                            pkcs8=extra.get("pkcs8", False), ca_bundle=bundle, index_path=index_path,
                            check_mode=check_mode, now=now, csr_pem=csr_pem)
    except CrdbTlsError as exc:
        # Reported with every other host's problem by _check_handoff, before anything is written.
        failed = signing.ExternalPlan(directory, spec)
        who = host or key[1]
        message = str(exc)
        failed.error = message if message.startswith(who + ":") else "%s: %s: %s" % (who, spec.filename, message)
        if spec.profile == "node" and message.startswith("signer command"):
            failed.error += ("\n(a CA that refuses CN=node in server certificates needs the split_node layout: "
                             "node.crt then names the host, client.node.crt carries CN=node)")
        return failed


def _check_handoff_names(jobs, cas):
    """Every certificate signed through a hand-off gets its own CSR name (checked before anything is written)."""
    names = {}
    for job_key, _directory, spec, role, _extra in jobs:
        if not isinstance(cas[role], signing.HandoffSigner):
            continue
        name = signing.handoff_name(_job_host(job_key), spec)
        if name in names:
            raise CrdbTlsError("%s and %s would share the hand-off name %s in the CSR dir: rename the host"
                               % (_job_label(names[name]), _job_label(job_key), name))
        names[name] = job_key


def _job_label(job_key):
    owner, name = job_key
    return "/".join((owner[1] if isinstance(owner, tuple) else owner, name))


def _check_handoff(plans, signing_options, check_mode):
    """Stop (before anything is committed) on what a CA refused or returned wrong, or while hand-off
    certificates are not back."""
    errors = sorted(p.error for p in plans.values() if p is not None and getattr(p, "error", None))
    if errors:
        raise CrdbTlsError("%d certificate(s) could not be signed or were refused; nothing was written:\n%s"
                           % (len(errors), "\n".join(errors)) if len(errors) > 1 else errors[0])
    if check_mode:
        return
    waiting = [p for p in plans.values() if p is not None and getattr(p, "awaiting", None)]
    if waiting:
        dirs = [o["csr_dir"] for o in signing_options.values() if o.get("csr_dir")]
        raise signing.awaiting_error(sorted(waiting, key=lambda p: p.awaiting), dirs)


def _issue_locked(pki_dir, layout, nodes, users, node_users, ui_generate, provided_ui, key_type, key_size,
                  lifetime, renew_before, organization, ocsp_urls, pkcs8, passphrases, workers, check_mode, now,
                  signing_options=None):
    roles_needed = set(["ca"]) | set(r for p, r in rules.layout_profiles(layout).items())
    roles_needed.add(rules.client_ca_role(layout))
    cas, bundles, indexes, revoked = {}, {}, {}, {}
    for role in sorted(roles_needed):
        cas[role] = _load_signer(pki_dir, role, passphrases, signing_options or {}, now)
        bundles[role] = authority.bundle(pki_dir, role)
        indexes[role] = authority.paths(pki_dir, role)["index"]
        revoked[role] = ledger.revoked_serials(indexes[role])   # a revoked certificate is re-issued
    options = {"organization": organization or None, "lifetime": lifetime, "ocsp_urls": ocsp_urls, "pkcs8": pkcs8}
    # Every name is validated before the first directory is made.
    jobs = _jobs(pki_dir, layout, nodes, users, node_users, ui_generate, options)
    _check_handoff_names(jobs, cas)
    if not check_mode:
        fileio.ensure_private_dir(os.path.join(pki_dir, ISSUED_DIR))
        fileio.ensure_private_dir(os.path.join(pki_dir, ISSUED_DIR, USERS_DIR))
        for job in jobs:
            fileio.ensure_private_dir(job[1])

    def run(job):
        key, directory, spec, role, extra = job
        if check_mode and not os.path.isdir(directory):
            return key, None
        bundle = bundles[role] if key[0] != "_users" else bundles["ca"]
        if signing.is_backend(cas[role]):
            return key, _plan_external(job, cas[role], key_type, key_size,
                                       renewal.window_for(renew_before, spec.filename), bundle, indexes[role],
                                       check_mode, now)
        return key, issuance.plan(directory, spec, cas[role], key_type=key_type, key_size=key_size,
                                  renew_before=renewal.window_for(renew_before, spec.filename),
                                  pkcs8=extra.get("pkcs8", False), ca_bundle=bundle, index_path=indexes[role],
                                  revoked=revoked[role], now=now)

    pool_size = workers or max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=pool_size) as pool:
        plans = dict(pool.map(run, jobs))
    _check_handoff(plans, signing_options or {}, check_mode)

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
    planned_users = {}   # user -> {file name: new content or None (not known before the run)}
    specs = dict((job[0], job[2]) for job in jobs)
    for (owner, what), plan in plans.items():
        out = users_out[what] if owner == "_users" else hosts[owner]
        if plan is None:
            # Check mode, its dir not made yet: everything in it is new.
            out["changed"] = True
            out["reasons"].append("%s: not issued yet" % what)
            names = _job_files(what if owner == "_users" else specs[(owner, what)].filename, owner)
            out.setdefault("planned", []).extend(names)
            if owner == "_users":
                planned_users[what] = dict((n, None) for n in names)
            continue
        if not check_mode:
            if plan.issued is not None:
                issued.setdefault(plan.index_path, []).append(plan.issued)
            plan.index_path = None   # recorded below, one locked update per CA
        if owner == "_users":
            if not check_mode:
                user_plans.append(plan)
            elif plan.files:
                # What the run would write, kept in memory only: the node dirs compare with it.
                planned_users[what] = dict((f[0], f[1]) for f in plan.files)
            if check_mode:
                out.setdefault("planned", []).extend([f[0] for f in plan.files] + [f[0] for f in plan.attribute_fixes])
        else:
            # Collected in check mode too (never committed then): they are what the install would get.
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
            if name in planned_users.get(user, {}):
                user_files[name] = (planned_users[user][name], mode)
                if user_files[name][0] is None:
                    for host in nodes:
                        pending[host][name] = (name, None, mode, None, None)
                        hosts[host]["changed"] = True
                        hosts[host]["reasons"].append("%s: not issued yet" % name)
            else:
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

    diff = []
    if check_mode:
        # What the install of each set compares with, and the diff shown with --check --diff.
        for host in sorted(nodes):
            hosts[host]["planned"] = sorted(set(pending[host]) | set(f[0] for f in host_fixes[host])
                                            | set(hosts[host].get("planned") or []))
        for user in users_out:
            users_out[user]["planned"] = sorted(set(users_out[user].get("planned") or []))
        diff = _diff(pki_dir, hosts, users_out, pending)

    def commit(host):
        _commit_set(issued_dir(pki_dir, host), pending[host], host_fixes[host])

    try:
        todo = [h for h in sorted(nodes) if pending[h] or host_fixes[h]] if not check_mode else []
        if todo:
            with ThreadPoolExecutor(max_workers=pool_size) as pool:
                list(pool.map(commit, todo))
    finally:
        for index_path, certs in issued.items():
            ledger.record(index_path, certs)
    if not check_mode:
        signing.remove_waiting_keys(plans.values())
    changed = any(v["changed"] for v in hosts.values()) or any(v["changed"] for v in users_out.values())
    out = {"changed": changed, "hosts": hosts, "users": users_out,
           "issued_count": sum(len(c) for c in issued.values())}
    if diff:
        out["diff"] = diff
    return out


def _has_ca(pki_dir):
    """Whether the cluster CA's trust bundle is there (check mode plans a first deploy without it)."""
    return os.path.isfile(authority.paths(pki_dir, "ca")["bundle"])


def _plan_without_ca(pki_dir, layout, nodes, users, node_users, jobs, provided_ui):
    """Check mode before the first run: every file of every set is new; nothing is read or written."""
    why = "no CA in %s yet (first deploy)" % pki_dir
    hosts = dict((h, {"changed": True, "reasons": [], "dir": issued_dir(pki_dir, h), "fingerprints": {},
                      "planned": []}) for h in nodes)
    users_out = dict((u, {"changed": True, "reasons": [], "dir": user_dir(pki_dir, u), "fingerprints": {},
                          "planned": []}) for u in users)
    for job in jobs:
        owner, what = job[0]
        if isinstance(owner, tuple) or (owner != "_users" and owner not in hosts):
            continue   # a client host's CSR dir (key_location node): its install plans on its own
        out = users_out[what] if owner == "_users" else hosts[owner]
        names = _job_files(what if owner == "_users" else job[2].filename, owner)
        out["planned"].extend(names)
        out["reasons"].append("%s: not issued yet, %s" % (names[0], why))
    extra = [rules.CA_ROLES["ca"]] + ([rules.CA_ROLES["client_ca"]] if layout == "split_ca" else [])
    extra += ["ui.crt", "ui.key"] if provided_ui else []
    for user in node_users:
        extra += _job_files(user, "_users")
    for host in hosts:
        hosts[host]["planned"] = sorted(set(hosts[host]["planned"] + extra))
    for user in users_out:
        # A user's set carries the cluster CA's bundle (what clients verify nodes with).
        users_out[user]["planned"] = sorted(set(users_out[user]["planned"] + [rules.CA_ROLES["ca"]]))
    out = {"changed": bool(hosts or users_out), "hosts": hosts, "users": users_out, "issued_count": 0}
    diff = _diff(pki_dir, hosts, users_out, {})
    if diff:
        out["diff"] = diff
    return out


def _job_files(what, owner):
    """The file names a job writes: the certificate and its key (``what`` is a user or a cert file name)."""
    cert = rules.client_cert_name(what) if owner == "_users" else what
    return [cert, rules.key_name(cert)]


def _describe_data(name, data):
    """One line about a file of an issued set, for a diff; never key material."""
    if data is None:
        return "%s: to be issued" % name
    if not name.endswith(rules.CERT_SUFFIX):
        return "%s: %s (%d bytes)" % (name, "private key" if rules.KEY_SUFFIX in name else "file", len(data))
    try:
        certs = pki.load_certificates(data, name)
    except CrdbTlsError as exc:
        return "%s: unreadable (%s)" % (name, exc)
    cert = certs[0]
    return "%s: %s; SANs %s; until %s; sha256 %s%s" % (
        name, cert.subject.rfc4514_string(), ", ".join(pki.san_strings(cert)) or "none",
        pki.not_after(cert).strftime("%Y-%m-%d %H:%M UTC"), pki.fingerprint(cert)[:16],
        "; %d more in the file" % (len(certs) - 1) if len(certs) > 1 else "")


def _diff(pki_dir, hosts, users_out, pending):
    """Ansible diffs (one per changed issued dir): what is there, what the run would put there."""
    out = []
    targets = [(issued_dir(pki_dir, h), hosts[h], pending.get(h, {})) for h in sorted(hosts)]
    targets += [(user_dir(pki_dir, u), users_out[u], {}) for u in sorted(users_out)]
    for directory, info, files in targets:
        if not info["changed"]:
            continue
        before, after = [], []
        for name in info.get("planned") or []:
            path = os.path.join(directory, name)
            current = fileio.read_optional(path) if os.path.isfile(path) else None
            before.append(_describe_data(name, current) if current is not None else "%s: absent" % name)
            new = files[name][1] if name in files else None
            after.append(_describe_data(name, new) if new is not None or current is None
                         else "%s: to be re-issued" % name)
        after.extend("# %s" % r for r in info["reasons"])
        out.append({"before_header": directory, "after_header": directory,
                    "before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"})
    return out


# --------------------------------------------------------------------------
# key_location=node: the hosts made their keys, only CSRs came here
# --------------------------------------------------------------------------

def _csr_jobs(pki_dir, layout, nodes, users, node_users, csrs, client_csrs, ui_generate, options):
    """``[((owner, name), dir, spec, ca_role, (public_key, csr_pem))]`` for every CSR given; everything checked first."""
    jobs = []
    client_role = rules.client_ca_role(layout)
    unknown = sorted(set(csrs) - set(nodes))
    if unknown:
        raise CrdbTlsError("csrs names %s, not in nodes" % ", ".join(unknown))
    for host in sorted(nodes):
        info = nodes[host] or {}
        sans = list(info.get("sans") or [])
        if not sans:
            raise CrdbTlsError("node %s has no SANs: give it at least its address or name" % host)
        specs = {}
        for profile, role in sorted(rules.layout_profiles(layout).items()):
            spec = pki.build_spec(profile, hosts=sans if rules.PROFILES[profile]["sans"] else None,
                                  organization=options["organization"], lifetime=options["lifetime"],
                                  ocsp_url=options["ocsp_url"])
            specs[spec.filename] = (spec, role)
        if ui_generate:
            spec = pki.build_spec("ui", hosts=list(info.get("ui_sans") or []) or sans,
                                  organization=options["organization"], lifetime=options["lifetime"],
                                  ocsp_url=options["ocsp_url"])
            specs[spec.filename] = (spec, "ca")
        for user in node_users:
            spec = pki.build_spec("client", user=rules.check_client_user(user, "client user"),
                                  organization=options["organization"], lifetime=options["lifetime"],
                                  ocsp_url=options["ocsp_url"])
            specs[spec.filename] = (spec, client_role)
        jobs.extend(_csr_host_jobs(host, issued_dir(pki_dir, host), specs, csrs.get(host) or {}))
    for host in sorted(client_csrs):
        specs = {}
        for user in users:
            spec = pki.build_spec("client", user=rules.check_client_user(user, "client user"),
                                  organization=options["organization"], lifetime=options["lifetime"],
                                  ocsp_url=options["ocsp_url"])
            specs[spec.filename] = (spec, client_role)
        jobs.extend(_csr_host_jobs((CLIENTS_DIR, host), client_dir(pki_dir, host), specs,
                                   client_csrs.get(host) or {}))
    return jobs


def _csr_host_jobs(owner, directory, specs, host_csrs):
    what = owner[1] if isinstance(owner, tuple) else owner
    jobs = []
    for name in sorted(host_csrs):
        if name not in specs:
            raise CrdbTlsError("host %s sent a CSR for %s, which it does not get (it gets %s)"
                               % (what, name, ", ".join(sorted(specs))))
        spec, role = specs[name]
        data = host_csrs[name]
        data = data if isinstance(data, bytes) else str(data).encode("utf-8")
        public_key = pki.csr_public_key(data, "host %s: CSR for %s" % (what, name))
        jobs.append(((owner, name), directory, spec, role, (public_key, data)))
    return jobs


def issue_from_csrs(pki_dir, layout, nodes=None, users=None, node_users=None, csrs=None, client_csrs=None,
                    ui_generate=False, lifetime=None, renew_before=None, organization=rules.DEFAULT_ORGANIZATION,
                    ocsp_url=None, passphrases=None, workers=None, check_mode=False, now=None, signing_options=None):
    """Sign the public keys of the hosts' CSRs; the issued dirs get certificates only.

    ``csrs``: ``{node: {cert file: CSR PEM}}`` for the nodes of ``nodes``;
    ``client_csrs``: ``{client host: {client.<user>.crt: CSR PEM}}`` (users of
    ``users``), issued into ``issued/_clients/<host>/``. A CSR carries only the
    public key that is certified: names, EKUs and lifetime come from the
    profile and ``nodes``, as for keys made here. A certificate already in the
    issued dir for the same public key that still fits is kept (a CSR sent
    again after a failed install is not signed twice). Hosts keep the
    certificates they did not ask for. Key files left in an issued dir by
    ``key_location=controller`` are removed. ``renew_before``: one window, or
    the per-kind windows of :func:`renewal.windows`. ``signing_options``: as
    for :func:`issue`; a signer command or the hand-off then gets each host's
    CSR as it is (hand-off name ``<host>.<cert>``), and what comes back is
    vetted like any certificate of the collection.
    """
    now = now or pki.utcnow()
    if not isinstance(renew_before, dict):
        renew_before = renewal.windows(renew_before)
    renewal.check_leaf_windows(renew_before, rules.DEFAULT_LEAF_LIFETIME if lifetime in (None, "") else lifetime)
    nodes = dict(nodes or {})
    users = list(dict.fromkeys(users or []))
    node_users = list(dict.fromkeys(users if node_users is None else node_users))
    csrs, client_csrs = dict(csrs or {}), dict(client_csrs or {})
    rules.layout_files(layout)
    options = {"organization": organization or None, "lifetime": lifetime, "ocsp_url": ocsp_url}
    jobs = _csr_jobs(pki_dir, layout, nodes, users, node_users, csrs, client_csrs, ui_generate, options)
    signing_options = _check_signing_options(layout, signing_options)
    if check_mode and not _has_ca(pki_dir):
        return _plan_without_ca(pki_dir, layout, nodes, [], [], jobs, False)
    fileio.require_dir(pki_dir, "PKI directory")
    with fileio.dir_lock(pki_dir):
        return _issue_from_csrs_locked(pki_dir, layout, nodes, client_csrs, jobs, renew_before,
                                       passphrases or {}, workers, check_mode, now, signing_options)


def _issue_from_csrs_locked(pki_dir, layout, nodes, client_csrs, jobs, renew_before, passphrases, workers,
                            check_mode, now, signing_options):
    roles_needed = set(["ca", rules.client_ca_role(layout)]) | set(rules.layout_profiles(layout).values())
    cas, bundles, indexes = {}, {}, {}
    for role in sorted(roles_needed):
        cas[role] = _load_signer(pki_dir, role, passphrases, signing_options, now)
        bundles[role] = authority.bundle(pki_dir, role)
        indexes[role] = authority.paths(pki_dir, role)["index"]
    targets = dict((h, issued_dir(pki_dir, h)) for h in nodes)
    targets.update(((CLIENTS_DIR, h), client_dir(pki_dir, h)) for h in client_csrs)
    if not check_mode:
        fileio.ensure_private_dir(os.path.join(pki_dir, ISSUED_DIR))
        if client_csrs:
            fileio.ensure_private_dir(os.path.join(pki_dir, ISSUED_DIR, CLIENTS_DIR))
        for directory in targets.values():
            fileio.ensure_private_dir(directory)

    _check_handoff_names(jobs, cas)

    def run(job):
        key, directory, spec, role, (public_key, csr_pem) = job
        if check_mode and not os.path.isdir(directory):
            return key, None
        window = renewal.window_for(renew_before, spec.filename)
        if signing.is_backend(cas[role]):
            return key, _plan_external((key, directory, spec, role, {}), cas[role], pki.DEFAULT_KEY_TYPE, None,
                                       window, None, indexes[role], check_mode, now, csr_pem=csr_pem)
        return key, issuance.plan(directory, spec, cas[role], renew_before=window, public_key=public_key,
                                  index_path=indexes[role], now=now)

    pool_size = workers or max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=pool_size) as pool:
        plans = list(pool.map(run, jobs))
    _check_handoff(dict(plans), signing_options, check_mode)
    outs = dict((t, {"changed": False, "reasons": [], "dir": d, "fingerprints": {}}) for t, d in targets.items())
    pending = dict((t, {}) for t in targets)
    fixes = dict((t, []) for t in targets)
    issued = {}
    for (owner, name), plan in plans:
        out = outs[owner]
        if plan is None:
            out["changed"] = True
            out["reasons"].append("%s: not issued yet" % name)
            continue
        out["changed"] = out["changed"] or plan.changed
        out["reasons"].extend(plan.reasons)
        if plan.certificate is not None:
            out["fingerprints"][name] = pki.fingerprint(plan.certificate)
        if plan.issued is not None:
            issued.setdefault(plan.index_path, []).append(plan.issued)
        for entry in plan.files:
            pending[owner][entry[0]] = entry
        fixes[owner].extend(plan.attribute_fixes)
    for target, directory in targets.items():
        wanted = [bundles["ca"]]
        if layout == "split_ca" and not isinstance(target, tuple):
            wanted.append(bundles["client_ca"])
        for name, data in wanted:
            current = fileio.read_optional(os.path.join(directory, name)) if os.path.isdir(directory) else None
            if current != data:
                pending[target][name] = (name, data, rules.CERT_MODE, None, None)
                outs[target]["changed"] = True
                outs[target]["reasons"].append("%s updated" % name)
        stale = sorted(n for n in os.listdir(directory) if n.endswith(KEY_SUFFIXES)) \
            if os.path.isdir(directory) else []
        for name in stale:
            outs[target]["changed"] = True
            outs[target]["reasons"].append("%s removed: keys are made on the hosts (key_location node)" % name)
            if not check_mode:
                os.unlink(os.path.join(directory, name))

    def commit(target):
        _commit_set(targets[target], pending[target], fixes[target])

    try:
        todo = [t for t in targets if pending[t] or fixes[t]] if not check_mode else []
        if todo:
            with ThreadPoolExecutor(max_workers=pool_size) as pool:
                list(pool.map(commit, todo))
    finally:
        if not check_mode:
            for index_path, certs in issued.items():
                ledger.record(index_path, certs)
    hosts = dict((t, v) for t, v in outs.items() if not isinstance(t, tuple))
    clients = dict((t[1], v) for t, v in outs.items() if isinstance(t, tuple))
    changed = any(v["changed"] for v in outs.values())
    return {"changed": changed, "hosts": hosts, "users": {}, "clients": clients,
            "issued_count": sum(len(c) for c in issued.values()) if not check_mode else 0}
