# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The certificate engine: keys, names, profiles, CAs and signing.

Plain functions with no module-level state: every call takes what it needs
and returns new objects, so a batch of certificates can be made in parallel
(``fleet`` makes a fleet's keys in a thread pool). Signing takes a public key, so a key made here and a key
made elsewhere (a CSR) go through the same path.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import ipaddress
import re
import secrets

from ansible_collections.crdb.tls.plugins.module_utils import durations, pem, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, AuthorityInformationAccessOID
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by the modules
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _exc

KEY_TYPES = {"rsa": (2048, 3072, 4096), "ecdsa": (256, 384)}
DEFAULT_KEY_TYPE = "rsa"
DEFAULT_KEY_SIZE = 2048
MIN_RSA_BITS = 2048
SERIAL_LIMIT = 2 ** 128
WEAK_HASHES = ("md5", "sha1")

if HAS_CRYPTOGRAPHY:
    _CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1}
    EKU_OIDS = {
        rules.EKU_SERVER: ExtendedKeyUsageOID.SERVER_AUTH,
        rules.EKU_CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH,
        rules.EKU_OCSP: ExtendedKeyUsageOID.OCSP_SIGNING,
    }
    EKU_NAMES = dict((v, k) for k, v in EKU_OIDS.items())

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)


# Pure time helpers live in durations.py (no cryptography); these names keep the callers of pki short.
utcnow = durations.utcnow
parse_duration = durations.parse_duration
parse_window = durations.parse_window


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------

def check_key_spec(key_type, key_size):
    """Validate a key type and size; returns ``(key_type, key_size)``."""
    if key_type not in KEY_TYPES:
        raise CrdbTlsError("key_type %r is not supported (use one of: %s)"
                           % (key_type, ", ".join(sorted(KEY_TYPES))))
    if key_size is None:
        key_size = DEFAULT_KEY_SIZE if key_type == "rsa" else 256
    try:
        key_size = int(key_size)
    except (TypeError, ValueError):
        raise CrdbTlsError("key_size %r is not a number" % (key_size,))
    if key_type == "rsa" and key_size < MIN_RSA_BITS:
        raise CrdbTlsError("key_size %d: RSA keys below %d bits are refused (use 2048, 3072 or 4096)"
                           % (key_size, MIN_RSA_BITS))
    if key_size not in KEY_TYPES[key_type]:
        raise CrdbTlsError("key_size %d is not supported for %s keys (use one of: %s)"
                           % (key_size, key_type, ", ".join(str(s) for s in KEY_TYPES[key_type])))
    return key_type, key_size


def generate_key(key_type=DEFAULT_KEY_TYPE, key_size=None):
    """A new private key: RSA 2048/3072/4096 or ECDSA P-256/P-384."""
    key_type, key_size = check_key_spec(key_type, key_size)
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return ec.generate_private_key(_CURVES[key_size]())


def key_spec_of(key):
    """``(key_type, key_size)`` of a private or public key, or ``(name, None)``."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa", key.key_size
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ecdsa", key.curve.key_size
    return type(key).__name__, None


def describe_key_spec(spec):
    key_type, key_size = spec
    if key_type == "ecdsa":
        return "ECDSA P-%s" % key_size
    if key_type == "rsa":
        return "RSA %s" % key_size
    return str(key_type)


def private_key_pem(key, passphrase=None):
    """PEM bytes of a private key: PKCS#1 for RSA (as ``cockroach cert``), SEC1 for EC."""
    if passphrase:
        encryption = serialization.BestAvailableEncryption(_to_bytes(passphrase))
    else:
        encryption = serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL, encryption)


def private_key_pkcs8_der(key):
    """DER PKCS#8, unencrypted: ``client.<user>.key.pk8`` for Java clients."""
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_pem_private_key(data, password, trusted):
    if trusted:
        try:
            return serialization.load_pem_private_key(data, password=password,
                                                      unsafe_skip_rsa_key_validation=True)
        except TypeError as exc:
            if "unsafe_skip_rsa_key_validation" not in str(exc):
                raise
            # cryptography < 39 (Debian 12 has 38) always validates.
    return serialization.load_pem_private_key(data, password=password)


def load_private_key(data, source, passphrase=None, trusted=False):
    """Parse a PEM private key; errors name ``source`` and never echo the data.

    ``trusted``: a key this collection wrote itself. RSA's costly consistency
    check (50-170 ms a key) is skipped for it; whether it matches its
    certificate is still checked by the callers.
    """
    if not data or not data.strip():
        raise CrdbTlsError("%s: the file is empty, expected a PEM private key" % source)
    try:
        key = _load_pem_private_key(data, _to_bytes(passphrase) if passphrase else None, trusted)
    except TypeError as exc:
        if "encrypted" in str(exc).lower() or "password" in str(exc).lower():
            if passphrase:
                raise CrdbTlsError("%s: the key is not encrypted but a passphrase was given" % source)
            raise CrdbTlsError("%s: the key is encrypted and no passphrase was given" % source)
        raise CrdbTlsError("%s: cannot read the private key (%s)" % (source, exc))
    except (ValueError, UnsupportedAlgorithm) as exc:
        if passphrase and b"ENCRYPTED" in data:
            raise CrdbTlsError("%s: cannot decrypt the private key: wrong passphrase?" % source)
        raise CrdbTlsError("%s: not a readable PEM private key (%s)" % (source, _short(exc)))
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CrdbTlsError("%s: %s keys are not supported (RSA or ECDSA only)"
                           % (source, type(key).__name__.lstrip("_")))
    check_public_key_strength(key.public_key(), source)
    return key


def check_public_key_strength(public_key, source):
    key_type, key_size = key_spec_of(public_key)
    if key_type == "rsa" and key_size < MIN_RSA_BITS:
        raise CrdbTlsError("%s: RSA %d-bit key is too weak (at least %d bits)"
                           % (source, key_size, MIN_RSA_BITS))
    if key_type == "ecdsa" and key_size not in KEY_TYPES["ecdsa"]:
        raise CrdbTlsError("%s: ECDSA curve of %d bits is not supported (P-256 or P-384)"
                           % (source, key_size))


def public_key_bytes(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def keys_match(certificate, private_key):
    """True when the certificate carries the private key's public key."""
    return public_key_bytes(certificate.public_key()) == public_key_bytes(private_key.public_key())


# --------------------------------------------------------------------------
# Certificates: parse, serialise, describe
# --------------------------------------------------------------------------

def pem_blocks(data):
    """``[(label, whole_block_bytes)]`` of every PEM block in ``data``."""
    return pem.blocks(data)


def load_certificates(data, source):
    """Every certificate in a PEM file, in order; each block must be CERTIFICATE."""
    if not data or not data.strip():
        raise CrdbTlsError("%s: the file is empty, expected PEM certificates" % source)
    blocks = pem_blocks(data)
    if not blocks:
        raise CrdbTlsError("%s: no PEM block found (is this a certificate file?)" % source)
    certs = []
    for index, (label, block) in enumerate(blocks, 1):
        if label != "CERTIFICATE":
            raise CrdbTlsError("%s: PEM block %d is %r; CockroachDB accepts only CERTIFICATE "
                               "blocks in a certificate file" % (source, index, label))
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise CrdbTlsError("%s: PEM block %d is not a valid certificate (%s)"
                               % (source, index, _short(exc)))
    return certs


def certificates_pem(certificates):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def fingerprint(certificate):
    """SHA-256 of the DER certificate, lower-case hex."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_hex(certificate_or_serial):
    serial = getattr(certificate_or_serial, "serial_number", certificate_or_serial)
    text = "%X" % serial
    return text if len(text) % 2 == 0 else "0" + text


def not_after(certificate):
    try:
        return certificate.not_valid_after_utc
    except AttributeError:  # cryptography < 42 (Debian 12 has 38)
        return certificate.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def not_before(certificate):
    try:
        return certificate.not_valid_before_utc
    except AttributeError:  # cryptography < 42
        return certificate.not_valid_before.replace(tzinfo=datetime.timezone.utc)


def common_name(certificate_or_name):
    name = getattr(certificate_or_name, "subject", certificate_or_name)
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return values[0].value if values else None


def organization(certificate):
    values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return values[0].value if values else None


def _extension(certificate, ext_class):
    try:
        return certificate.extensions.get_extension_for_class(ext_class).value
    except x509.ExtensionNotFound:
        return None


def san_strings(certificate):
    """SANs as strings, IPs first kept in certificate order."""
    san = _extension(certificate, x509.SubjectAlternativeName)
    if san is None:
        return []
    out = []
    for name in san:
        if isinstance(name, x509.IPAddress):
            out.append(str(name.value))
        elif isinstance(name, (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier)):
            out.append(name.value)
    return out


def dns_sans(certificate):
    san = _extension(certificate, x509.SubjectAlternativeName)
    return list(san.get_values_for_type(x509.DNSName)) if san is not None else []


def ekus(certificate):
    """EKU names (``serverAuth``...), or None when the extension is absent (any usage)."""
    ext = _extension(certificate, x509.ExtendedKeyUsage)
    if ext is None:
        return None
    return [EKU_NAMES.get(oid, oid.dotted_string) for oid in ext]


def ocsp_urls(certificate):
    aia = _extension(certificate, x509.AuthorityInformationAccess)
    if aia is None:
        return []
    return [d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP]


def is_ca(certificate):
    bc = _extension(certificate, x509.BasicConstraints)
    return bool(bc is not None and bc.ca)


def signature_hash_name(certificate):
    algorithm = certificate.signature_hash_algorithm
    return algorithm.name if algorithm is not None else None


def describe(certificate):
    """A JSON-friendly summary (no key material)."""
    return {
        "subject": certificate.subject.rfc4514_string(),
        "common_name": common_name(certificate),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": serial_hex(certificate),
        "not_before": not_before(certificate).isoformat(),
        "not_after": not_after(certificate).isoformat(),
        "sans": san_strings(certificate),
        "ekus": ekus(certificate),
        "is_ca": is_ca(certificate),
        "key": describe_key_spec(key_spec_of(certificate.public_key())),
        "ocsp_urls": ocsp_urls(certificate),
        "fingerprint_sha256": fingerprint(certificate),
    }


def issued_by(certificate, issuer):
    """True when ``issuer`` signed ``certificate`` (names and signature)."""
    if certificate.issuer != issuer.subject:
        return False
    try:
        if hasattr(certificate, "verify_directly_issued_by"):
            certificate.verify_directly_issued_by(issuer)
        else:  # cryptography < 40
            _verify_signature(certificate, issuer.public_key())
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _verify_signature(certificate, public_key):
    algorithm = certificate.signature_hash_algorithm
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(algorithm))
    else:
        raise UnsupportedAlgorithm("unsupported issuer key type %s" % type(public_key).__name__)


def verify_chain(leaf, intermediates, trust, now=None, max_depth=8):
    """Walk ``leaf`` up through ``intermediates`` to a certificate in ``trust``.

    Returns None when the chain verifies (signatures, CA flags and dates),
    else a message saying where it breaks.
    """
    now = now or utcnow()
    path = [leaf]
    pool = list(intermediates)
    for _depth in range(max_depth):
        current = path[-1]
        for anchor in trust:
            if issued_by(current, anchor):
                return _check_chain_dates(path + [anchor], now)
        nxt = None
        for candidate in pool:
            if issued_by(current, candidate):
                nxt = candidate
                break
        if nxt is None:
            what = "the certificate" if current is leaf else "intermediate " + current.subject.rfc4514_string()
            return "%s is not signed by any trusted CA (issuer %s)" % (what, current.issuer.rfc4514_string())
        pool.remove(nxt)
        path.append(nxt)
    return "chain longer than %d certificates" % max_depth


def _check_chain_dates(chain, now):
    for cert in chain[1:]:
        if not is_ca(cert):
            return "%s signed the certificate but is not a CA" % cert.subject.rfc4514_string()
    for cert in chain:
        if not_after(cert) < now:
            return "%s expired on %s" % (cert.subject.rfc4514_string(), not_after(cert).isoformat())
        if not_before(cert) > now:
            return "%s is not valid before %s" % (cert.subject.rfc4514_string(), not_before(cert).isoformat())
    return None


def chain_order_problem(certificates):
    """None when every certificate after the first issued the one before it."""
    for index in range(1, len(certificates)):
        if not issued_by(certificates[index - 1], certificates[index]):
            return ("certificate %d (%s) did not issue certificate %d (%s): intermediates must follow "
                    "the leaf, each followed by its issuer"
                    % (index + 1, certificates[index].subject.rfc4514_string(), index,
                       certificates[index - 1].subject.rfc4514_string()))
    return None


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

def validate_dns_name(name, what="host"):
    """Return ``name`` when it is a valid DNS name (a leading ``*.`` label allowed)."""
    problem = None
    if not name.isascii():
        problem = "has non-ASCII characters (use its IDNA/punycode form)"
    elif len(name) > 253:
        problem = "is longer than 253 characters"
    elif name.endswith("."):
        problem = "ends with a dot"
    elif name.split(".")[-1].isdigit():
        # RFC 3696 section 2: a top-level label is never all digits, so this is a mistyped IP.
        problem = "looks like an IP address but is not a valid one"
    else:
        labels = name.split(".")
        for index, label in enumerate(labels):
            if label == "*" and index == 0 and len(labels) > 1:
                continue
            if not _DNS_LABEL.match(label):
                problem = "has an invalid label %r (letters, digits and '-' only, 1-63 characters, " \
                          "no leading or trailing '-'; '*' only as the whole first label)" % label
                break
    if problem:
        raise CrdbTlsError("%s %r is neither an IP address nor a valid DNS name: it %s"
                           % (what, name, problem))
    return name


def parse_host(host, what="host"):
    """An IP SAN when ``host`` parses as IPv4/IPv6, else a DNS SAN."""
    if not isinstance(host, str) or not host.strip():
        raise CrdbTlsError("%s %r is empty or not a string" % (what, host))
    text = host.strip()
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if "%" in candidate:
        # ipaddress accepts fe80::1%eth0, but a certificate's IP SAN has no room for a zone.
        raise CrdbTlsError("%s %r carries a zone (%%%s): an IP SAN cannot hold one; give the address without "
                           "it (a link-local address is a poor SAN anyway)" % (what, host, candidate.split("%", 1)[1]))
    try:
        return x509.IPAddress(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    return x509.DNSName(validate_dns_name(text, what))


def parse_hosts(hosts, what="hosts"):
    """General names for a list of hosts, duplicates removed, order kept."""
    names, seen = [], set()
    for host in hosts or []:
        name = parse_host(host, what="%s entry" % what)
        key = (type(name).__name__, str(name.value).lower())
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


def san_keys(general_names):
    """Comparable set of SANs (IPs normalised, DNS case-insensitive)."""
    out = set()
    for name in general_names:
        if isinstance(name, x509.IPAddress):
            out.add(("ip", str(name.value)))
        elif isinstance(name, x509.DNSName):
            out.add(("dns", name.value.lower()))
    return out


def certificate_san_keys(certificate):
    san = _extension(certificate, x509.SubjectAlternativeName)
    return san_keys(list(san)) if san is not None else set()


def host_covered(certificate, host):
    """True when ``host`` is one of the certificate's SANs (wildcards honoured)."""
    wanted = parse_host(host)
    keys = certificate_san_keys(certificate)
    if isinstance(wanted, x509.IPAddress):
        return ("ip", str(wanted.value)) in keys
    name = wanted.value.lower()
    if ("dns", name) in keys:
        return True
    head, _sep, rest = name.partition(".")
    return bool(rest) and ("dns", "*." + rest) in keys


# --------------------------------------------------------------------------
# Profiles and requests
# --------------------------------------------------------------------------

class CertSpec(object):
    """What a certificate should contain. Built by :func:`build_spec`."""

    def __init__(self, profile, common_name, hosts, organization, lifetime, ocsp_url, user):
        self.profile = profile
        self.common_name = common_name
        self.hosts = hosts            # list of x509.GeneralName
        self.organization = organization
        self.lifetime = lifetime      # datetime.timedelta
        self.ocsp_url = ocsp_url
        self.user = user

    @property
    def ekus(self):
        return rules.PROFILES[self.profile]["ekus"]

    @property
    def filename(self):
        return rules.cert_file_for(self.profile, self.user)

    def subject(self):
        attrs = []
        if self.organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        return x509.Name(attrs)

    def as_dict(self):
        return {
            "profile": self.profile,
            "common_name": self.common_name,
            "sans": [str(n.value) for n in self.hosts],
            "organization": self.organization,
            "ekus": list(self.ekus),
            "lifetime_hours": int(self.lifetime.total_seconds() // 3600),
            "ocsp_url": self.ocsp_url,
        }


def build_spec(profile, user=None, hosts=None, common_name=None,
               organization=rules.DEFAULT_ORGANIZATION, lifetime=None, ocsp_url=None):
    """Validate what a certificate of ``profile`` should contain."""
    if profile not in rules.LEAF_PROFILES:
        raise CrdbTlsError("profile %r is not a leaf profile (use one of: %s)"
                           % (profile, ", ".join(rules.LEAF_PROFILES)))
    info = rules.PROFILES[profile]
    names = parse_hosts(hosts or [], what="hosts")
    if profile == "client":
        if user is None:
            raise CrdbTlsError("profile 'client' needs user (the SQL user name, e.g. root)")
        rules.check_client_user(user, "user")
    elif user is not None and profile != "node_client":
        raise CrdbTlsError("user is only used with profile 'client', not %r" % profile)
    if info["sans"] and not names:
        raise CrdbTlsError("profile %r needs at least one host (IP address or DNS name) "
                           "for the Subject Alternative Name" % profile)
    if info["cn"] is None and profile != "client" and common_name is None and not names:
        raise CrdbTlsError("profile %r needs common_name (it has no host to take one from)" % profile)
    fixed_cn = info["cn"] if profile != "client" else user
    if fixed_cn is not None:
        if common_name is not None and common_name != fixed_cn:
            raise CrdbTlsError("common_name %r is not allowed for profile %r: CockroachDB requires "
                               "CN=%s" % (common_name, profile, fixed_cn))
        cn = fixed_cn
    elif common_name is not None:
        if not str(common_name).strip():
            raise CrdbTlsError("common_name must not be empty")
        cn = str(common_name)
    else:
        dns = [n.value for n in names if isinstance(n, x509.DNSName)]
        cn = dns[0] if dns else str(names[0].value)
    lifetime = parse_duration(lifetime, "lifetime")
    if lifetime is None:
        lifetime = rules.DEFAULT_LEAF_LIFETIME
    if lifetime <= datetime.timedelta(0):
        raise CrdbTlsError("lifetime %r must be positive" % (lifetime,))
    if ocsp_url is not None and not re.match(r"^https?://[^\s/]+", ocsp_url):
        raise CrdbTlsError("ocsp_url %r is not an http(s) URL" % (ocsp_url,))
    return CertSpec(profile, cn, names, organization or None, lifetime, ocsp_url or None,
                    user if profile == "client" else None)


# --------------------------------------------------------------------------
# Certificate authorities
# --------------------------------------------------------------------------

class CertificateAuthority(object):
    """A CA able to sign: its certificate, key, the intermediates above it and the trust roots.

    ``chain`` is the list of intermediates from the signer's issuer up to (not
    including) the root; ``roots`` is what goes into ``ca.crt``.
    """

    def __init__(self, certificate, key, chain=None, roots=None):
        self.certificate = certificate
        self.key = key
        self.chain = list(chain or [])
        self.roots = list(roots or [certificate])

    @property
    def leaf_chain(self):
        """Certificates that follow a leaf in its file (empty for a root signer)."""
        if self.certificate in self.roots:
            return []
        return [self.certificate] + self.chain

    def check_lifetime(self, leaf_not_after, what="the certificate"):
        ca_end = not_after(self.certificate)
        for cert in self.chain:
            ca_end = min(ca_end, not_after(cert))
        if leaf_not_after > ca_end:
            raise CrdbTlsError(
                "%s would be valid until %s, after its CA expires (%s): shorten lifetime or "
                "renew the CA" % (what, leaf_not_after.strftime("%Y-%m-%d %H:%M UTC"),
                                  ca_end.strftime("%Y-%m-%d %H:%M UTC")))


def ca_certificate_problems(certificate, source, now=None):
    """Reasons a certificate cannot serve as a CockroachDB CA (empty when fine)."""
    now = now or utcnow()
    problems = []
    bc = _extension(certificate, x509.BasicConstraints)
    subject = certificate.subject.rfc4514_string()
    if bc is None or not bc.ca:
        problems.append("%s: %s is not a CA certificate (basicConstraints CA:TRUE missing); "
                        "it looks like a leaf" % (source, subject))
    ku = _extension(certificate, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        problems.append("%s: %s has keyUsage without keyCertSign" % (source, subject))
    if not_after(certificate) <= now:
        problems.append("%s: CA %s expired on %s" % (source, subject, not_after(certificate).isoformat()))
    if not_before(certificate) > now:
        problems.append("%s: CA %s is not valid before %s"
                        % (source, subject, not_before(certificate).isoformat()))
    hash_name = signature_hash_name(certificate)
    if hash_name in WEAK_HASHES:
        problems.append("%s: CA %s is signed with %s, which is refused (use SHA-256 or better)"
                        % (source, subject, hash_name.upper()))
    try:
        check_public_key_strength(certificate.public_key(), "%s: CA %s" % (source, subject))
    except CrdbTlsError as exc:
        problems.append(str(exc))
    return problems


def load_ca(cert_data, key_data, cert_source, key_source, passphrase=None, roots_data=None,
            roots_source=None, now=None, trusted=False):
    """Load and vet a CA that will sign: refuse leaves, mismatched keys, expiry, SHA-1, weak RSA.

    ``cert_data`` holds the signing CA certificate first, optionally followed
    by its issuers up to the root. When the signer is an intermediate, the
    root(s) come from the end of that chain (self-signed) or ``roots_data``.
    """
    certs = load_certificates(cert_data, cert_source)
    signer = certs[0]
    problems = ca_certificate_problems(signer, cert_source, now)
    if problems:
        raise CrdbTlsError("; ".join(problems))
    order = chain_order_problem(certs)
    if order:
        raise CrdbTlsError("%s: %s" % (cert_source, order))
    for extra in certs[1:]:
        extra_problems = ca_certificate_problems(extra, cert_source, now)
        if extra_problems:
            raise CrdbTlsError("; ".join(extra_problems))
    key = load_private_key(key_data, key_source, passphrase, trusted=trusted)
    if not keys_match(signer, key):
        raise CrdbTlsError("%s does not match the CA certificate in %s (%s): the public keys differ"
                           % (key_source, cert_source, signer.subject.rfc4514_string()))
    chain = [c for c in certs[1:] if not _self_signed(c)]
    roots = [c for c in certs if _self_signed(c)]
    if roots_data is not None:
        roots = load_certificates(roots_data, roots_source or "roots")
    if not roots:
        raise CrdbTlsError("%s: %s is an intermediate CA but no root was given: put its issuers up "
                           "to the self-signed root after it in the same file"
                           % (cert_source, signer.subject.rfc4514_string()))
    problem = verify_chain(signer, chain, roots, now)
    if problem and not _self_signed(signer):
        raise CrdbTlsError("%s: the CA chain does not verify: %s" % (cert_source, problem))
    return CertificateAuthority(signer, key, chain, roots)


def _self_signed(certificate):
    return certificate.issuer == certificate.subject and issued_by(certificate, certificate)


def _signature_hash(key):
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


# notBefore is back-dated as `cockroach cert` does (rules.BACKDATE, 24h), but
# never by more than this share of the lifetime: a 1-hour certificate is
# back-dated 6 minutes, not 24 hours (which would make it 96% used up when
# issued and put it inside any fractional window at once).
BACKDATE_MAX_SHARE = 0.1


def backdate(lifetime):
    """How far before now a certificate valid for ``lifetime`` (a timedelta) starts."""
    return min(rules.BACKDATE, lifetime * BACKDATE_MAX_SHARE)


def new_serial():
    """A random positive serial below 2^128."""
    return secrets.randbelow(SERIAL_LIMIT - 1) + 1


def generate_ca(key, common_name=rules.DEFAULT_CA_COMMON_NAME, organization=rules.DEFAULT_ORGANIZATION,
                lifetime=None, now=None, path_length=1):
    """A self-signed CA certificate for ``key`` (CA:TRUE, pathlen 1, as ``cockroach cert``)."""
    now = now or utcnow()
    lifetime = parse_duration(lifetime, "lifetime")
    if lifetime is None:
        lifetime = rules.DEFAULT_CA_LIFETIME
    if lifetime <= datetime.timedelta(0):
        raise CrdbTlsError("lifetime %r must be positive" % (lifetime,))
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    name = x509.Name(attrs)
    public_key = key.public_key()
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name)
               .public_key(public_key)
               .serial_number(new_serial())
               .not_valid_before(now - backdate(lifetime))
               .not_valid_after(now + lifetime)
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    return builder.sign(key, _signature_hash(key))


def issue(spec, public_key, ca, now=None, serial=None):
    """Sign a certificate of ``spec`` for ``public_key`` with ``ca``.

    The public key may come from a key this engine made or from a CSR.
    Refuses a certificate that would outlive its CA.
    """
    now = now or utcnow()
    check_public_key_strength(public_key, "the public key to certify")
    end = now + spec.lifetime
    ca.check_lifetime(end, "the %s certificate %r" % (spec.profile, spec.common_name))
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (x509.CertificateBuilder()
               .subject_name(spec.subject())
               .issuer_name(ca.certificate.subject)
               .public_key(public_key)
               .serial_number(serial or new_serial())
               .not_valid_before(now - backdate(spec.lifetime))
               .not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=is_rsa, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([EKU_OIDS[e] for e in spec.ekus]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.certificate.public_key()), critical=False))
    if spec.hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(spec.hosts), critical=False)
    if spec.ocsp_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(spec.ocsp_url))]), critical=False)
    if rules.EKU_OCSP in spec.ekus:
        # RFC 6960 4.2.2.2.1: clients need not check the responder's own status.
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    return builder.sign(ca.key, _signature_hash(ca.key))


def csr_public_key(csr_data, source):
    """The public key of a PEM CSR after checking its self-signature."""
    try:
        csr = x509.load_pem_x509_csr(csr_data)
    except ValueError as exc:
        raise CrdbTlsError("%s: not a valid PEM certificate signing request (%s)" % (source, _short(exc)))
    if not csr.is_signature_valid:
        raise CrdbTlsError("%s: the CSR's signature does not verify" % source)
    public_key = csr.public_key()
    check_public_key_strength(public_key, source)
    return public_key


def make_csr(spec, key):
    """A CSR carrying ``spec``'s subject and SANs, signed by ``key`` (for external signers)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(spec.subject())
    if spec.hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(spec.hosts), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage([EKU_OIDS[e] for e in spec.ekus]), critical=False)
    return builder.sign(key, _signature_hash(key)).public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------
# Does an existing certificate still fit?
# --------------------------------------------------------------------------

def drift(certificate, spec):
    """Reasons ``certificate`` no longer matches ``spec`` (empty when it does); see :func:`verifier.spec_problems`."""
    from ansible_collections.crdb.tls.plugins.module_utils import verifier
    return [p.message for p in verifier.spec_problems(certificate, spec)]


def renewal_reason(certificate, renew_before, now=None):
    """A reason when the certificate is inside its renewal window, expired or not yet valid (None when fine).

    ``renew_before``: a :class:`durations.Window` (``33%`` is a third of the
    certificate's own lifetime, notBefore to notAfter), a timedelta, or None.
    The reason says which rule fired: ``expires on ...: 9h left of 24h, inside
    the 33% window (8h)``.
    """
    now = now or utcnow()
    end = not_after(certificate)
    if end <= now:
        return "expired on %s" % end.strftime("%Y-%m-%d %H:%M UTC")
    lifetime = end - not_before(certificate)
    length = durations.window_length(renew_before, lifetime)
    if length and end - length <= now:
        return "expires on %s: %s left of %s, inside the %s window" % (
            end.strftime("%Y-%m-%d %H:%M UTC"), durations.format_span(end - now), durations.format_span(lifetime),
            durations.describe_window(renew_before, lifetime))
    if not_before(certificate) > now + datetime.timedelta(minutes=5):
        return "not valid before %s" % not_before(certificate).isoformat()
    return None


def _to_bytes(value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _short(exc):
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
