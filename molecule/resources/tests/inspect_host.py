"""Run INSIDE a test container (python3 -c) by the molecule verifiers.

One `podman exec` collects everything the checks need, since each exec costs
about half a second here: for every certs dir given, the owner, group, mode
and type of the dir and of each file, each file's SHA-256, and for each
certificate what the `openssl` CLI says about it (subject, SANs, EKUs, SHA-256
fingerprint, number of certificates, public key, `openssl verify` against each
CA file); the public key of every *.key file on the whole filesystem; names of
CA key files anywhere; the global IPv4 addresses; users' homes and groups.

argv[1] is a JSON object: {"dirs": [...], "users": [...], "cafiles": {name: PEM}}
(cafiles: extra CA files, e.g. the controller's ca-client.crt, to verify with).
Prints one JSON object.
"""

import grp
import hashlib
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import tempfile


def run(args):
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False)
    return proc.returncode, proc.stdout


def output(args):
    """What ``args`` printed (stdout and stderr), whatever its exit code."""
    return run(args)[1]


def describe(path):
    st = os.lstat(path)
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"owner": user, "group": group, "mode": "%04o" % stat.S_IMODE(st.st_mode), "type": kind}


def cert_facts(path, cafiles):
    facts = {}
    facts["x509"] = output(["openssl", "x509", "-in", path, "-noout", "-nameopt", "RFC2253", "-subject",
                            "-ext", "subjectAltName,extendedKeyUsage"])
    out = output(["openssl", "x509", "-in", path, "-noout", "-fingerprint", "-sha256"])
    facts["fingerprint"] = out.strip().split("=", 1)[-1].replace(":", "").lower()
    facts["pubkey"] = output(["openssl", "x509", "-in", path, "-noout", "-pubkey"])
    with open(path) as handle:
        facts["count"] = handle.read().count("BEGIN CERTIFICATE")
    facts["verify"] = {}
    for name, cafile in sorted(cafiles.items()):
        facts["verify"][name] = run(["openssl", "verify", "-CAfile", cafile, "-untrusted", path, path])
    return facts


def inspect_dir(directory, extra_cafiles):
    if not os.path.isdir(directory):
        return None
    out = {".": describe(directory)}
    cafiles = dict(extra_cafiles)
    for name in ("ca.crt", "ca-client.crt"):
        if os.path.isfile(os.path.join(directory, name)):
            cafiles[name] = os.path.join(directory, name)
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        entry = describe(path)
        if entry["type"] == "file":
            with open(path, "rb") as handle:
                entry["sha256"] = hashlib.sha256(handle.read()).hexdigest()
            if name.endswith(".crt"):
                entry.update(cert_facts(path, {} if name.startswith("ca") else cafiles))
        out[name] = entry
    return out


def find(*args):
    out = output(["find", "/", "-xdev"] + list(args) + ["-print"])
    return sorted(line for line in out.splitlines() if line)


def main():
    request = json.loads(sys.argv[1])
    tmp = tempfile.mkdtemp()
    extra = {}
    for name, pem in sorted(request.get("cafiles", {}).items()):
        path = os.path.join(tmp, name)
        with open(path, "w") as handle:
            handle.write(pem)
        extra[name] = path
    result = {"dirs": {}, "users": {}, "keys": {}}
    for user in request.get("users", []):
        entry = pwd.getpwnam(user)
        result["users"][user] = {"home": entry.pw_dir, "group": grp.getgrgid(entry.pw_gid).gr_name}
    for directory in request.get("dirs", []):
        directory = os.path.expanduser(directory)
        result["dirs"][directory] = inspect_dir(directory, extra)
    result["ca_key_files"] = find("(", "-name", "ca*.key", "-o", "-name", "ca*.key.pk8", "-o",
                                  "-name", "*.signer.pem", ")")
    for path in find("-type", "f", "-name", "*.key"):
        result["keys"][path] = output(["openssl", "pkey", "-in", path, "-pubout"])
    out = output(["ip", "-4", "-o", "addr", "show", "scope", "global"])
    result["ips"] = sorted(set(re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)))
    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
