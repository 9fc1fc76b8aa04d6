"""`ssl` for thaw's guest: TLS terminated on the host (rustls).

CPython for WASI has no OpenSSL, so this module gives the standard `ssl` API on top
of thaw's host sockets: `SSLContext.wrap_socket(sock, server_hostname=...)` asks
the VMM to run a TLS client over the connected host socket (SNI, ALPN, certificate
verification against the system roots, thaw's `[egress] ca_bundle` and the CAs
this context loaded); after the handshake the guest reads and writes plaintext
on the same fd. Certificates are verified on the host; failures raise
`SSLCertVerificationError` here.

What works: client contexts (`create_default_context`, `PROTOCOL_TLS_CLIENT`),
`load_verify_locations` (cafile/capath/cadata), `load_default_certs`,
`verify_mode` (CERT_NONE / CERT_REQUIRED), `check_hostname`, ALPN,
`getpeercert()` (binary form, and the dict form's subject, issuer, validity and
subjectAltName), `version()`, `cipher()`, `selected_alpn_protocol()`. Not
supported (clear errors): server-side TLS, client certificates
(`load_cert_chain`), `MemoryBIO`/`SSLObject` (so asyncio's TLS streams), session
reuse, renegotiation.
"""
import base64 as _base64
import os as _os
import socket as _socket_mod
from collections import namedtuple as _namedtuple
from enum import Enum as _Enum, IntEnum as _IntEnum, IntFlag as _IntFlag

import _thaw_socket as _net

# OpenSSL-style identification: libraries gate features on these. The TLS here is
# rustls on the host; it offers TLS 1.2 and 1.3 only.
OPENSSL_VERSION = "OpenSSL 3.0.0 (compatible; thaw host TLS with rustls)"
OPENSSL_VERSION_INFO = (3, 0, 0, 0, 0)
OPENSSL_VERSION_NUMBER = 0x30000000
_OPENSSL_API_VERSION = OPENSSL_VERSION_INFO

HAS_SNI = True
HAS_ALPN = True
HAS_NPN = False
HAS_ECDH = True
HAS_NEVER_CHECK_COMMON_NAME = True
HAS_TLSv1 = False
HAS_TLSv1_1 = False
HAS_TLSv1_2 = True
HAS_TLSv1_3 = True
HAS_SSLv2 = False
HAS_SSLv3 = False
HAS_PSK = False
CHANNEL_BINDING_TYPES = []


class _SSLMethod(_IntEnum):
    PROTOCOL_SSLv23 = 2
    PROTOCOL_TLS_CLIENT = 16
    PROTOCOL_TLS_SERVER = 17


PROTOCOL_SSLv23 = PROTOCOL_TLS = _SSLMethod.PROTOCOL_SSLv23
PROTOCOL_TLS_CLIENT = _SSLMethod.PROTOCOL_TLS_CLIENT
PROTOCOL_TLS_SERVER = _SSLMethod.PROTOCOL_TLS_SERVER


class Options(_IntFlag):
    OP_ALL = 0x80000050
    OP_NO_SSLv2 = 0
    OP_NO_SSLv3 = 0x02000000
    OP_NO_TLSv1 = 0x04000000
    OP_NO_TLSv1_1 = 0x10000000
    OP_NO_TLSv1_2 = 0x08000000
    OP_NO_TLSv1_3 = 0x20000000
    OP_NO_COMPRESSION = 0x00020000
    OP_NO_TICKET = 0x00004000
    OP_NO_RENEGOTIATION = 0x40000000
    OP_CIPHER_SERVER_PREFERENCE = 0x00400000
    OP_SINGLE_DH_USE = 0
    OP_SINGLE_ECDH_USE = 0
    OP_ENABLE_MIDDLEBOX_COMPAT = 0x00100000
    OP_IGNORE_UNEXPECTED_EOF = 0x00000080
    OP_LEGACY_SERVER_CONNECT = 0x00000004


globals().update(Options.__members__)


class VerifyMode(_IntEnum):
    CERT_NONE = 0
    CERT_OPTIONAL = 1
    CERT_REQUIRED = 2


CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED = VerifyMode


class VerifyFlags(_IntFlag):
    VERIFY_DEFAULT = 0
    VERIFY_CRL_CHECK_LEAF = 0x4
    VERIFY_CRL_CHECK_CHAIN = 0xC
    VERIFY_X509_STRICT = 0x20
    VERIFY_X509_TRUSTED_FIRST = 0x8000
    VERIFY_ALLOW_PROXY_CERTS = 0x40
    VERIFY_X509_PARTIAL_CHAIN = 0x80000


globals().update(VerifyFlags.__members__)


class TLSVersion(_IntEnum):
    MINIMUM_SUPPORTED = -2
    MAXIMUM_SUPPORTED = -1
    SSLv3 = 0x0300
    TLSv1 = 0x0301
    TLSv1_1 = 0x0302
    TLSv1_2 = 0x0303
    TLSv1_3 = 0x0304


class AlertDescription(_IntEnum):
    ALERT_DESCRIPTION_CLOSE_NOTIFY = 0
    ALERT_DESCRIPTION_HANDSHAKE_FAILURE = 40
    ALERT_DESCRIPTION_BAD_CERTIFICATE = 42
    ALERT_DESCRIPTION_CERTIFICATE_EXPIRED = 45
    ALERT_DESCRIPTION_UNKNOWN_CA = 48
    ALERT_DESCRIPTION_INTERNAL_ERROR = 80


globals().update(AlertDescription.__members__)


class SSLErrorNumber(_IntEnum):
    SSL_ERROR_SSL = 1
    SSL_ERROR_WANT_READ = 2
    SSL_ERROR_WANT_WRITE = 3
    SSL_ERROR_WANT_X509_LOOKUP = 4
    SSL_ERROR_SYSCALL = 5
    SSL_ERROR_ZERO_RETURN = 6
    SSL_ERROR_WANT_CONNECT = 7
    SSL_ERROR_EOF = 8
    SSL_ERROR_INVALID_ERROR_CODE = 10


globals().update(SSLErrorNumber.__members__)


class SSLError(OSError):
    """A TLS failure (the host's reason is in the message)."""

    library = "SSL"
    reason = None

    def __str__(self):
        if len(self.args) >= 2 and isinstance(self.args[1], str):
            return self.args[1]
        return super().__str__()


class SSLZeroReturnError(SSLError):
    pass


class SSLWantReadError(SSLError):
    pass


class SSLWantWriteError(SSLError):
    pass


class SSLSyscallError(SSLError):
    pass


class SSLEOFError(SSLError):
    pass


class SSLCertVerificationError(SSLError, ValueError):
    verify_code = 1
    verify_message = ""


CertificateError = SSLCertVerificationError
socket_error = OSError


class Purpose(_Enum):
    SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
    CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"


DefaultVerifyPaths = _namedtuple(
    "DefaultVerifyPaths",
    "cafile capath openssl_cafile_env openssl_cafile openssl_capath_env openssl_capath")


def get_default_verify_paths():
    return DefaultVerifyPaths(None, None, "SSL_CERT_FILE", "", "SSL_CERT_DIR", "")


def DER_cert_to_PEM_cert(der):
    body = _base64.encodebytes(bytes(der)).decode("ascii")
    return "-----BEGIN CERTIFICATE-----\n" + body + "-----END CERTIFICATE-----\n"


def PEM_cert_to_DER_cert(pem):
    pem = pem.strip()
    head, tail = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    if not pem.startswith(head) or not pem.endswith(tail):
        raise ValueError("Invalid PEM encoding; must start with %s and end with %s" % (head, tail))
    return _base64.decodebytes(pem[len(head):-len(tail)].encode("ascii"))


def RAND_bytes(n):
    return _os.urandom(n)


def RAND_status():
    return True


def RAND_add(data, entropy):
    pass


_PROTO = 65  # WASI's EPROTO: how the host reports TLS failures


def _tls_error(result, message):
    """The exception for a failed START_TLS/HANDSHAKE (host reason in `message`)."""
    code = -result
    text = message or _os.strerror(code)
    if code != _PROTO:
        return OSError(code, text)
    low = text.lower()
    if "certificate" in low or "verif" in low or "issuer" in low:
        e = SSLCertVerificationError(
            1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: " + text)
        e.verify_message = text
        e.reason = "CERTIFICATE_VERIFY_FAILED"
        return e
    e = SSLError(1, "[SSL] " + text)
    e.reason = text
    return e


class SSLContext:
    """A client-side TLS configuration (see the module doc)."""

    sslsocket_class = None
    sslobject_class = None

    def __init__(self, protocol=None, *args, **kwargs):
        if protocol is None:
            protocol = PROTOCOL_TLS
        if protocol == PROTOCOL_TLS_SERVER:
            self._server = True
        else:
            self._server = False
        self.protocol = _SSLMethod(protocol)
        client = protocol == PROTOCOL_TLS_CLIENT
        self._verify_mode = CERT_REQUIRED if client else CERT_NONE
        self._check_hostname = client
        self.options = Options.OP_ALL | Options.OP_NO_SSLv3 | Options.OP_NO_COMPRESSION
        self.verify_flags = VerifyFlags.VERIFY_X509_TRUSTED_FIRST
        self.minimum_version = TLSVersion.MINIMUM_SUPPORTED
        self.maximum_version = TLSVersion.MAXIMUM_SUPPORTED
        self.post_handshake_auth = False
        self.hostname_checks_common_name = False
        self.sni_callback = None
        self.security_level = 2
        self.keylog_filename = None
        self._alpn = []
        self._cas = []
        self._ciphers = None

    @property
    def verify_mode(self):
        return self._verify_mode

    @verify_mode.setter
    def verify_mode(self, value):
        value = VerifyMode(value)
        if value == CERT_NONE and self._check_hostname:
            raise ValueError("Cannot set verify_mode to CERT_NONE when check_hostname is enabled.")
        self._verify_mode = value

    @property
    def check_hostname(self):
        return self._check_hostname

    @check_hostname.setter
    def check_hostname(self, value):
        value = bool(value)
        if value and self._verify_mode == CERT_NONE:
            self._verify_mode = CERT_REQUIRED
        self._check_hostname = value

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        if cafile is None and capath is None and cadata is None:
            raise TypeError("cafile, capath and cadata cannot be all omitted")
        if cafile is not None:
            with open(_os.fspath(cafile), "rb") as f:
                self._add_pem(f.read())
        if capath is not None:
            for name in sorted(_os.listdir(capath)):
                path = _os.path.join(capath, name)
                if _os.path.isfile(path):
                    with open(path, "rb") as f:
                        self._add_pem(f.read(), strict=False)
        if cadata is not None:
            if isinstance(cadata, str):
                self._add_pem(cadata.encode("ascii"))
            else:
                self._cas.append(DER_cert_to_PEM_cert(bytes(cadata)).encode("ascii"))

    def _add_pem(self, data, strict=True):
        if b"-----BEGIN CERTIFICATE-----" not in data:
            if strict:
                raise SSLError(136, "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found")
            return
        self._cas.append(data)

    def load_default_certs(self, purpose=Purpose.SERVER_AUTH):
        pass  # the host always trusts the system roots (plus thaw's ca_bundle)

    def set_default_verify_paths(self):
        pass

    def load_cert_chain(self, certfile, keyfile=None, password=None):
        raise SSLError(1, "client certificates are not supported by thaw's host TLS")

    def set_alpn_protocols(self, protocols):
        out = []
        for p in protocols:
            b = p.encode("ascii") if isinstance(p, str) else bytes(p)
            if not 0 < len(b) <= 255:
                raise SSLError(1, "ALPN protocols must be 1 to 255 in length")
            out.append(b.decode("ascii"))
        self._alpn = out

    def set_npn_protocols(self, protocols):
        raise NotImplementedError("NPN is not supported")

    def set_ciphers(self, ciphers):
        self._ciphers = ciphers  # rustls picks from its own safe suites

    def get_ciphers(self):
        return [{"name": n, "protocol": v} for n, v in (
            ("TLS_AES_256_GCM_SHA384", "TLSv1.3"), ("TLS_AES_128_GCM_SHA256", "TLSv1.3"),
            ("TLS_CHACHA20_POLY1305_SHA256", "TLSv1.3"),
            ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2"), ("ECDHE-RSA-AES256-GCM-SHA384", "TLSv1.2"))]

    def set_ecdh_curve(self, name):
        pass

    def get_ca_certs(self, binary_form=False):
        return []

    def cert_store_stats(self):
        return {"x509_ca": len(self._cas), "crl": 0, "x509": len(self._cas)}

    def session_stats(self):
        return {}

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    suppress_ragged_eofs=True, server_hostname=None, session=None):
        if server_side or self._server:
            raise SSLError(1, "server-side TLS is not supported by thaw's host TLS")
        if self._check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        return SSLSocket._create(sock, self, server_hostname, do_handshake_on_connect,
                                 suppress_ragged_eofs)

    def wrap_bio(self, *args, **kwargs):
        raise NotImplementedError("SSLObject/MemoryBIO are not supported: TLS runs on the host")

    def _request(self, server_hostname):
        lines = []
        if server_hostname:
            lines.append("server_name %s" % server_hostname)
        if self._alpn:
            lines.append("alpn %s" % ",".join(self._alpn))
        lines.append("verify %d" % (0 if self._verify_mode == CERT_NONE else 1))
        lines.append("check_hostname %d" % (1 if self._check_hostname else 0))
        head = ("\n".join(lines) + "\n").encode("ascii")
        if self._cas:
            head += b"ca\n" + b"\n".join(self._cas)
        return head


class MemoryBIO:
    def __init__(self):
        raise NotImplementedError("MemoryBIO is not supported: TLS runs on the host")


class SSLObject:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("SSLObject is not supported: TLS runs on the host")


class SSLSession:
    pass


class SSLSocket(_socket_mod.socket):
    """A TLS client stream: the host runs TLS, this socket carries plaintext."""

    def __init__(self, *args, **kwargs):
        raise TypeError("%s does not have a public constructor. Instances are returned by "
                        "SSLContext.wrap_socket()." % type(self).__name__)

    @classmethod
    def _create(cls, sock, context, server_hostname, do_handshake, suppress_ragged_eofs):
        timeout = sock.gettimeout()
        self = cls.__new__(cls, sock.family, sock.type, sock.proto)
        _socket_mod.socket.__init__(self, sock.family, sock.type, sock.proto, fileno=sock.detach())
        self._context = context
        self.server_hostname = server_hostname
        self.server_side = False
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self.do_handshake_on_connect = do_handshake
        self._handshaked = False
        self._tls_started = False
        self.settimeout(timeout)
        try:
            self.getpeername()
            connected = True
        except OSError:
            connected = False
        if connected and do_handshake:
            self.do_handshake()
        return self

    context = property(lambda self: self._context)
    session = None
    session_reused = False

    def connect(self, address):
        super().connect(address)
        if self.do_handshake_on_connect:
            self.do_handshake()

    def do_handshake(self, block=False):
        fd = self._live()
        if not self._tls_started:
            result, msg = _net._start_tls(fd, self._context._request(self.server_hostname))
            if result < 0:
                raise _tls_error(result, msg)
            self._tls_started = True
        t = self.gettimeout()
        result, msg = _net._handshake(fd, _net._wait_ms(None if block else t))
        if result < 0:
            if -result == 6:  # EAGAIN
                if t == 0.0:
                    raise SSLWantReadError(2, "The operation did not complete (read)")
                raise TimeoutError("_ssl.c:983: The handshake operation timed out")
            raise _tls_error(result, msg)
        self._handshaked = True

    def _check_tls(self):
        if not self._handshaked:
            raise OSError(107, "socket is not connected (no TLS handshake yet)")

    def read(self, len=1024, buffer=None):
        self._check_tls()
        if buffer is not None:
            return self.recv_into(buffer, len)
        return self.recv(len)

    def write(self, data):
        self._check_tls()
        return self.send(data)

    def recv(self, bufsize=1024, flags=0):
        try:
            return super().recv(bufsize, flags)
        except ConnectionResetError:
            if self.suppress_ragged_eofs:
                return b""
            raise

    def recv_into(self, buffer, nbytes=None, flags=0):
        try:
            return super().recv_into(buffer, nbytes or 0, flags)
        except ConnectionResetError:
            if self.suppress_ragged_eofs:
                return 0
            raise

    def pending(self):
        return 0

    def getpeercert(self, binary_form=False):
        self._check_tls()
        der = _net._tls_opt(self._live(), _net._OPT_TLS_PEER_CERT)
        if binary_form:
            return der or None
        if not der or self._context.verify_mode == CERT_NONE:
            return {}
        return _cert_dict(der)

    def selected_alpn_protocol(self):
        if not self._handshaked:
            return None
        out = _net._tls_opt(self._live(), _net._OPT_TLS_ALPN, room=256)
        return out.decode("ascii") or None

    def selected_npn_protocol(self):
        return None

    def _info(self):
        if not self._handshaked:
            return None, None
        text = _net._tls_opt(self._live(), _net._OPT_TLS_INFO, room=256).decode()
        version, _, suite = text.partition(" ")
        return version or None, suite or None

    def version(self):
        return self._info()[0]

    def cipher(self):
        version, suite = self._info()
        if suite is None:
            return None
        bits = 256 if "256" in suite or "CHACHA20" in suite else 128
        return suite, version, bits

    def shared_ciphers(self):
        c = self.cipher()
        return [c] if c else None

    def compression(self):
        return None

    def get_channel_binding(self, cb_type="tls-unique"):
        return None

    def unwrap(self):
        raise NotImplementedError("unwrap() is not supported by thaw's host TLS")

    def verify_client_post_handshake(self):
        raise SSLError(1, "post-handshake authentication is not supported")


SSLContext.sslsocket_class = SSLSocket
SSLContext.sslobject_class = SSLObject


def create_default_context(purpose=Purpose.SERVER_AUTH, *, cafile=None, capath=None, cadata=None):
    if purpose == Purpose.SERVER_AUTH:
        context = SSLContext(PROTOCOL_TLS_CLIENT)
    else:
        context = SSLContext(PROTOCOL_TLS_SERVER)
    if cafile or capath or cadata:
        context.load_verify_locations(cafile, capath, cadata)
    return context


def _create_unverified_context(protocol=None, *, cert_reqs=CERT_NONE, check_hostname=False,
                               purpose=Purpose.SERVER_AUTH, certfile=None, keyfile=None,
                               cafile=None, capath=None, cadata=None):
    context = SSLContext(protocol or PROTOCOL_TLS_CLIENT)
    context.check_hostname = check_hostname
    context.verify_mode = cert_reqs
    if cafile or capath or cadata:
        context.load_verify_locations(cafile, capath, cadata)
    return context


_create_default_https_context = create_default_context
_create_stdlib_context = _create_unverified_context


def wrap_socket(sock, keyfile=None, certfile=None, server_side=False, cert_reqs=CERT_NONE,
                ssl_version=PROTOCOL_TLS, ca_certs=None, do_handshake_on_connect=True,
                suppress_ragged_eofs=True, ciphers=None, server_hostname=None):
    context = _create_unverified_context(cert_reqs=cert_reqs, cafile=ca_certs)
    return context.wrap_socket(sock, server_side, do_handshake_on_connect,
                               suppress_ragged_eofs, server_hostname)


def get_server_certificate(addr, ssl_version=PROTOCOL_TLS_CLIENT, ca_certs=None, timeout=None):
    context = _create_unverified_context(cafile=ca_certs)
    with _socket_mod.create_connection(addr, timeout) as sock:
        with context.wrap_socket(sock, server_hostname=addr[0]) as s:
            return DER_cert_to_PEM_cert(s.getpeercert(True))


def cert_time_to_seconds(cert_time):
    import calendar
    import time
    return calendar.timegm(time.strptime(cert_time, "%b %d %H:%M:%S %Y GMT"))


# --- getpeercert(): the dict form, from the DER the host hands over --------------

_OIDS = {"2.5.4.3": "commonName", "2.5.4.6": "countryName", "2.5.4.7": "localityName",
         "2.5.4.8": "stateOrProvinceName", "2.5.4.10": "organizationName",
         "2.5.4.11": "organizationalUnitName", "1.2.840.113549.1.9.1": "emailAddress",
         "2.5.4.5": "serialNumber"}
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _der(data, at):
    """(tag, content start, content end) of the DER element at `at`."""
    tag = data[at]
    n = data[at + 1]
    at += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[at:at + k], "big")
        at += k
    return tag, at, at + n


def _children(data, start, end):
    out = []
    while start < end:
        tag, s, e = _der(data, start)
        out.append((tag, s, e))
        start = e
    return out


def _oid(b):
    first = b[0]
    parts = [first // 40, first % 40]
    v = 0
    for x in b[1:]:
        v = (v << 7) | (x & 0x7F)
        if not x & 0x80:
            parts.append(v)
            v = 0
    return ".".join(map(str, parts))


def _name(data, s, e):
    rdns = []
    for _, rs, re_ in _children(data, s, e):
        rdn = []
        for _, as_, ae in _children(data, rs, re_):
            (ot, os_, oe), (vt, vs, ve) = _children(data, as_, ae)[:2]
            oid = _oid(data[os_:oe])
            rdn.append((_OIDS.get(oid, oid), data[vs:ve].decode("utf-8", "replace")))
        rdns.append(tuple(rdn))
    return tuple(rdns)


def _time(data, tag, s, e):
    t = data[s:e].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(t[:2])
        year += 2000 if year < 50 else 1900
        t = str(year) + t[2:]
    y, mo, d, h, mi, sec = t[:4], int(t[4:6]), int(t[6:8]), t[8:10], t[10:12], t[12:14]
    return "%s %2d %s:%s:%s %s GMT" % (_MONTHS[mo - 1], d, h, mi, sec, y)


def _cert_dict(der):
    try:
        _, cs, ce = _der(der, 0)
        tbs = _children(der, cs, ce)[0]
        fields = _children(der, tbs[1], tbs[2])
        i = 1 if fields[0][0] == 0xA0 else 0
        serial = der[fields[i][1]:fields[i][2]].hex().upper()
        issuer = _name(der, fields[i + 2][1], fields[i + 2][2])
        validity = _children(der, fields[i + 3][1], fields[i + 3][2])
        subject = _name(der, fields[i + 4][1], fields[i + 4][2])
        cert = {"subject": subject, "issuer": issuer, "version": 3, "serialNumber": serial,
                "notBefore": _time(der, *validity[0]), "notAfter": _time(der, *validity[1])}
        sans = []
        for tag, s, e in fields[i + 5:]:
            if tag != 0xA3:
                continue
            _, xs, xe = _der(der, s)
            for _, es, ee in _children(der, xs, xe):
                parts = _children(der, es, ee)
                if _oid(der[parts[0][1]:parts[0][2]]) != "2.5.29.17":
                    continue
                _, ss, se = _der(der, parts[-1][1])
                for gtag, gs, ge in _children(der, ss, se):
                    if gtag == 0x82:
                        sans.append(("DNS", der[gs:ge].decode("ascii", "replace")))
                    elif gtag == 0x87:
                        raw = der[gs:ge]
                        fam = _net.AF_INET if len(raw) == 4 else _net.AF_INET6
                        sans.append(("IP Address", _net.inet_ntop(fam, raw).upper()
                                     if fam == _net.AF_INET6 else _net.inet_ntop(fam, raw)))
        if sans:
            cert["subjectAltName"] = tuple(sans)
        return cert
    except (IndexError, ValueError):
        return {}
