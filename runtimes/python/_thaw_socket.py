"""`_socket` for thaw's guest: outbound TCP through the host.

The microVM has no network stack. A socket is a host object (the VMM owns the real
socket and checks the function's egress policy); the guest sees it as a file
descriptor. `os.read`/`os.write` on that fd move bytes, `select` waits on it, and
everything else (create, connect, resolve, options, timeouts, TLS) is a request
written to the control file /run/thaw/net (format: guest/src/net.rs).

The bootstrap installs this module as `_socket`, so the standard library's
`socket` module (and `http.client`, `urllib`, `asyncio`, `urllib3`, `requests`,
botocore on top of it) works unchanged. Not supported: listening sockets, UDP,
Unix-domain sockets other than `socketpair()`.
"""
import errno as _errno
import os as _os
import struct as _struct

_CONTROL = "/run/thaw/net"
_SOCKET_FILE = "/run/thaw/socket"
_REQUEST = _struct.Struct("<IIQQQQ")
_REPLY = _struct.Struct("<qI")
_FOREVER = (1 << 64) - 1
_MESSAGE_ROOM = 4096

# Control ops (thaw_abi::net::op, plus the guest's own SETTIMEOUT).
_SOCKET, _SOCKETPAIR, _CONNECT, _RECV, _SHUTDOWN = 1, 2, 3, 5, 6
_RESOLVE, _START_TLS, _HANDSHAKE, _GETOPT, _SETOPT = 9, 10, 11, 12, 13
_SETTIMEOUT = 100
# GETOPT / SETOPT codes.
_OPT_ERROR, _OPT_PEER, _OPT_LOCAL = 1, 2, 3
_OPT_TLS_ALPN, _OPT_TLS_PEER_CERT, _OPT_TLS_INFO = 4, 5, 6
_OPT_NODELAY, _OPT_KEEPALIVE = 7, 8
_GAI_NONAME = -1001

AF_UNSPEC = 0
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
SOCK_NONBLOCK = 0x800
SOCK_CLOEXEC = 0x80000
SOL_SOCKET = 1
SO_DEBUG = 1
SO_REUSEADDR = 2
SO_TYPE = 3
SO_ERROR = 4
SO_DONTROUTE = 5
SO_BROADCAST = 6
SO_SNDBUF = 7
SO_RCVBUF = 8
SO_KEEPALIVE = 9
SO_OOBINLINE = 10
SO_LINGER = 13
SO_REUSEPORT = 15
SO_RCVLOWAT = 18
SO_SNDLOWAT = 19
SO_RCVTIMEO = 20
SO_SNDTIMEO = 21
SOMAXCONN = 4096
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPV6_V6ONLY = 26
TCP_NODELAY = 1
TCP_MAXSEG = 2
TCP_KEEPIDLE = 4
TCP_KEEPINTVL = 5
TCP_KEEPCNT = 6
MSG_OOB = 1
MSG_PEEK = 2
MSG_DONTWAIT = 0x40
MSG_WAITALL = 0x100
MSG_NOSIGNAL = 0x4000
SHUT_RD = 0
SHUT_WR = 1
SHUT_RDWR = 2
AI_PASSIVE = 1
AI_CANONNAME = 2
AI_NUMERICHOST = 4
AI_V4MAPPED = 8
AI_ALL = 0x10
AI_ADDRCONFIG = 0x20
AI_NUMERICSERV = 0x400
NI_NUMERICHOST = 1
NI_NUMERICSERV = 2
NI_NOFQDN = 4
NI_NAMEREQD = 8
NI_DGRAM = 16
NI_MAXHOST = 1025
NI_MAXSERV = 32
EAI_AGAIN = -3
EAI_FAIL = -4
EAI_FAMILY = -6
EAI_NONAME = -2
EAI_SERVICE = -8
EAI_SOCKTYPE = -7
INADDR_ANY = 0
INADDR_LOOPBACK = 0x7F000001
INADDR_BROADCAST = 0xFFFFFFFF
INADDR_NONE = 0xFFFFFFFF

has_ipv6 = True
error = OSError
timeout = TimeoutError


class herror(OSError):
    pass


class gaierror(OSError):
    pass


_SERVICES = {"http": 80, "https": 443, "ftp": 21, "ssh": 22, "smtp": 25, "domain": 53,
             "pop3": 110, "imap": 143, "ldap": 389, "imaps": 993, "pop3s": 995,
             "postgresql": 5432, "mysql": 3306, "redis": 6379}

_default_timeout = None
_control_fd = -1


def _control():
    global _control_fd
    if _control_fd < 0:
        _control_fd = _os.open(_CONTROL, _os.O_RDWR)
    return _control_fd


def _token(fd):
    """The guest's name for socket fd `fd` (its inode: fd numbers are renumbered
    between the module and the guest)."""
    return _os.fstat(fd).st_ino


def _call(op, tok=0, a0=0, a1=0, a2=0, data=b"", room=0):
    """One control request; returns (result, message, output bytes)."""
    c = _control()
    _os.write(c, _REQUEST.pack(op, 0, tok, a0, a1, a2) + data)
    reply = _os.read(c, _REPLY.size + _MESSAGE_ROOM + room)
    result, mlen = _REPLY.unpack_from(reply)
    end = _REPLY.size + mlen
    return result, reply[_REPLY.size:end].decode("utf-8", "replace"), reply[end:]


def _error(result, message=""):
    if result == _GAI_NONAME:
        return gaierror(EAI_NONAME, message or "Name or service not known")
    code = -result
    return OSError(code, message or _os.strerror(code))


def _check(result, message=""):
    if result < 0:
        raise _error(result, message)
    return result


def _wait_ms(t):
    return _FOREVER if t is None else max(0, int(t * 1000))


def _port(port):
    if port is None:
        return 0
    if isinstance(port, (bytes, bytearray)):
        port = port.decode()
    if isinstance(port, str):
        if port.isdigit():
            port = int(port)
        elif port in _SERVICES:
            port = _SERVICES[port]
        else:
            raise gaierror(EAI_SERVICE, "Servname not supported for ai_socktype")
    if not isinstance(port, int):
        raise TypeError("getaddrinfo() argument 2 must be integer or string")
    if not 0 <= port <= 65535:
        raise OverflowError("port must be 0-65535.")
    return port


def _literal(host):
    """The IP literal `host` is, or None."""
    try:
        inet_pton(AF_INET6 if ":" in host else AF_INET, host.split("%", 1)[0])
        return host.split("%", 1)[0]
    except (OSError, ValueError):
        return None


def _host_text(host):
    if isinstance(host, (bytes, bytearray)):
        return bytes(host).decode("ascii")
    if not isinstance(host, str):
        raise TypeError("str, bytes or bytearray expected, not %s" % type(host).__name__)
    return host


def _resolve(host, family):
    """IP literals for `host`, resolved on the host."""
    if host in ("", "<broadcast>"):
        host = "0.0.0.0" if family != AF_INET6 else "::"
    lit = _literal(host)
    if lit is not None:
        return [lit]
    try:
        name = host.encode("idna")
    except UnicodeError:
        raise gaierror(EAI_NONAME, "Name or service not known") from None
    if len(name) > 253:
        raise UnicodeError("label too long")
    result, msg, out = _call(_RESOLVE, 0, family, data=name, room=16 << 10)
    _check(result, msg)
    return [a for a in out.decode().split("\n") if a]


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    port = _port(port)
    if host is None:
        ips = ["0.0.0.0" if flags & AI_PASSIVE else "127.0.0.1"]
        if family == AF_INET6:
            ips = ["::" if flags & AI_PASSIVE else "::1"]
    else:
        host = _host_text(host)
        if flags & AI_NUMERICHOST and _literal(host) is None:
            raise gaierror(EAI_NONAME, "Name or service not known")
        ips = _resolve(host, family)
    if type not in (0, SOCK_STREAM, SOCK_DGRAM):
        raise gaierror(EAI_SOCKTYPE, "ai_socktype not supported")
    kinds = [type] if type else [SOCK_STREAM]
    out = []
    for ip in ips:
        fam = AF_INET6 if ":" in ip else AF_INET
        if family not in (AF_UNSPEC, fam):
            continue
        addr = (ip, port, 0, 0) if fam == AF_INET6 else (ip, port)
        for kind in kinds:
            out.append((fam, kind, IPPROTO_TCP if kind == SOCK_STREAM else IPPROTO_UDP, "", addr))
    if not out:
        raise gaierror(EAI_FAMILY if ips else EAI_NONAME, "Address family for hostname not supported")
    return out


def gethostbyname(name):
    return getaddrinfo(name, 0, AF_INET)[0][4][0]


def gethostbyname_ex(name):
    ips = [a[4][0] for a in getaddrinfo(name, 0, AF_INET)]
    return name, [], ips


def gethostbyaddr(ip):
    raise herror(1, "Unknown host")


def gethostname():
    return _os.environ.get("HOSTNAME", "localhost")


def getnameinfo(sockaddr, flags):
    host, port = sockaddr[0], sockaddr[1]
    return host, str(port)


def getservbyname(name, proto=None):
    if name in _SERVICES:
        return _SERVICES[name]
    raise OSError("service/proto not found")


def getservbyport(port, proto=None):
    for name, p in _SERVICES.items():
        if p == port:
            return name
    raise OSError("port/proto not found")


def getdefaulttimeout():
    return _default_timeout


def _timeout_value(value):
    if value is None:
        return None
    value = float(value)
    if value < 0:
        raise ValueError("Timeout value out of range")
    return value


def setdefaulttimeout(value):
    global _default_timeout
    _default_timeout = _timeout_value(value)


def htons(x):
    return ((x & 0xFF) << 8) | ((x >> 8) & 0xFF)


ntohs = htons


def htonl(x):
    return int.from_bytes((x & 0xFFFFFFFF).to_bytes(4, "little"), "big")


ntohl = htonl


def inet_aton(s):
    parts = s.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise OSError("illegal IP address string passed to inet_aton")
    return bytes(int(p) for p in parts)


def inet_ntoa(b):
    if len(b) != 4:
        raise OSError("packed IP wrong length for inet_ntoa")
    return ".".join(str(x) for x in b)


def inet_pton(family, s):
    if family == AF_INET:
        return inet_aton(s)
    if family == AF_INET6:
        import ipaddress
        try:
            return ipaddress.IPv6Address(s).packed
        except ValueError:
            raise OSError("illegal IP address string passed to inet_pton") from None
    raise OSError(_errno.EAFNOSUPPORT, "Address family not supported by protocol")


def inet_ntop(family, b):
    if family == AF_INET:
        return inet_ntoa(b)
    if family == AF_INET6:
        import ipaddress
        return str(ipaddress.IPv6Address(bytes(b)))
    raise ValueError("unknown address family %d" % family)


def _unsupported(what):
    return OSError(_errno.ENOTSUP, "%s is not supported in thaw's sandbox (outbound TCP only)" % what)


def dup(fd):
    raise _unsupported("dup()")


def close(fd):
    _os.close(fd)


def _parse_addr(text, family):
    ip, _, port = text.rpartition(" ")
    if family == AF_INET6:
        return ip, int(port), 0, 0
    return ip, int(port)


class socket:
    """A host socket seen through a guest fd (see the module doc)."""

    __slots__ = ("_fd", "_tok", "_family", "_type", "_proto", "_timeout", "_opts")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        family = AF_INET if family in (-1, None) else int(family)
        type = SOCK_STREAM if type in (-1, None) else int(type)
        proto = 0 if proto in (-1, None) else int(proto)
        self._fd = -1
        self._opts = {}
        kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        if fileno is None:
            if kind != SOCK_STREAM:
                raise _unsupported("a socket of type %d" % kind)
            if family not in (AF_INET, AF_INET6):
                raise OSError(_errno.EAFNOSUPPORT, "Address family not supported by protocol")
            fd = _os.open(_SOCKET_FILE, _os.O_RDWR)
            tok = _token(fd)
            result, msg, _ = _call(_SOCKET, tok, family, SOCK_STREAM)
            if result < 0:
                _os.close(fd)
                raise _error(result, msg)
            self._fd, self._tok = fd, tok
        else:
            self._fd = int(fileno)
            self._tok = _token(self._fd)
        self._family, self._type, self._proto = family, kind, proto
        self._timeout = None
        if type & SOCK_NONBLOCK:
            self.settimeout(0.0)
        elif _default_timeout is not None:
            self.settimeout(_default_timeout)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    family = property(lambda self: self._family)
    type = property(lambda self: self._type)
    proto = property(lambda self: self._proto)
    timeout = property(lambda self: self._timeout)

    def _live(self):
        """The socket's control token (EBADF once closed)."""
        if self._fd < 0:
            raise OSError(_errno.EBADF, "Bad file descriptor")
        return self._tok

    def fileno(self):
        return self._fd

    def close(self):
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _os.close(fd)

    def detach(self):
        fd, self._fd = self._fd, -1
        return fd

    def settimeout(self, value):
        value = _timeout_value(value)
        result, msg, _ = _call(_SETTIMEOUT, self._live(),
                               _FOREVER if value is None else int(value * 1_000_000))
        _check(result, msg)
        self._timeout = value

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self.settimeout(None if flag else 0.0)

    def getblocking(self):
        return self._timeout != 0.0

    def _timed_out(self, e):
        """An EAGAIN from a read or write: a timeout unless non-blocking."""
        if self._timeout:
            return TimeoutError("timed out")
        return e

    def _connect(self, address):
        if not isinstance(address, tuple) or len(address) < 2:
            raise TypeError("%s(): AF_INET address must be tuple, not %s" % (
                "connect", type(address).__name__))
        host = _host_text(address[0])
        port = _port(address[1])
        ip = _literal(host)
        if ip is None:
            ip = getaddrinfo(host, port, self._family, SOCK_STREAM)[0][4][0]
        result, msg, _ = _call(_CONNECT, self._live(), port, 0, _wait_ms(self._timeout),
                               ip.encode())
        return result, msg

    def connect(self, address):
        result, msg = self._connect(address)
        if result >= 0:
            return
        code = -result
        if code in (_errno.EINPROGRESS, _errno.EAGAIN):
            if self._timeout == 0.0:
                raise BlockingIOError(_errno.EINPROGRESS, "Operation now in progress")
            raise TimeoutError("timed out")
        raise _error(result, msg)

    def connect_ex(self, address):
        result, _ = self._connect(address)
        if result >= 0:
            return 0
        if -result == _errno.EAGAIN:
            return _errno.EINPROGRESS if self._timeout == 0.0 else _errno.ETIMEDOUT
        return -result if result != _GAI_NONAME else _errno.EINVAL

    def recv(self, bufsize, flags=0):
        tok = self._live()
        fd = self._fd
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if flags & MSG_PEEK:
            wait = 0 if flags & MSG_DONTWAIT else _wait_ms(self._timeout)
            result, msg, out = _call(_RECV, tok, MSG_PEEK, bufsize, wait, room=bufsize)
            if result < 0 and -result == _errno.EAGAIN:
                raise self._timed_out(BlockingIOError(_errno.EAGAIN, "Resource temporarily unavailable"))
            _check(result, msg)
            return out
        try:
            return _os.read(fd, bufsize)
        except BlockingIOError as e:
            raise self._timed_out(e) from None

    def recv_into(self, buffer, nbytes=0, flags=0):
        view = memoryview(buffer).cast("B")
        if nbytes:
            view = view[:nbytes]
        if flags:
            data = self.recv(len(view), flags)
            view[:len(data)] = data
            return len(data)
        self._live()
        fd = self._fd
        try:
            return _os.readv(fd, [view])
        except BlockingIOError as e:
            raise self._timed_out(e) from None

    def recvfrom(self, bufsize, flags=0):
        return self.recv(bufsize, flags), self.getpeername()

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        return self.recv_into(buffer, nbytes, flags), self.getpeername()

    def send(self, data, flags=0):
        self._live()
        fd = self._fd
        try:
            return _os.write(fd, data)
        except BlockingIOError as e:
            raise self._timed_out(e) from None

    def sendall(self, data, flags=0):
        view = memoryview(data).cast("B")
        while view:
            view = view[self.send(view, flags):]

    def sendto(self, data, flags_or_addr, addr=None):
        return self.send(data)

    def shutdown(self, how):
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise ValueError("invalid shutdown how")
        result, msg, _ = _call(_SHUTDOWN, self._live(), how)
        _check(result, msg)

    def getsockopt(self, level, option, buflen=0):
        tok = self._live()
        if level == SOL_SOCKET and option == SO_ERROR:
            result, msg, _ = _call(_GETOPT, tok, _OPT_ERROR, room=0)
            value = _check(result, msg)
            # The host reports a Linux errno; translate the common ones.
            value = _LINUX_ERRNO.get(value, value)
        elif level == SOL_SOCKET and option == SO_TYPE:
            value = SOCK_STREAM
        else:
            value = self._opts.get((level, option), 0)
        if buflen:
            return int(value).to_bytes(4, "little")[:buflen]
        return value

    def setsockopt(self, level, option, value, optlen=None):
        tok = self._live()
        if value is None:
            value = 0
        if isinstance(value, (bytes, bytearray)):
            value = int.from_bytes(bytes(value)[:4].ljust(4, b"\0"), "little")
        code = None
        if level == IPPROTO_TCP and option == TCP_NODELAY:
            code = _OPT_NODELAY
        elif level == SOL_SOCKET and option == SO_KEEPALIVE:
            code = _OPT_KEEPALIVE
        if code is not None:
            result, msg, _ = _call(_SETOPT, tok, code, int(bool(value)))
            _check(result, msg)
        self._opts[(level, option)] = value

    def _addr(self, which):
        result, msg, out = _call(_GETOPT, self._live(), which, room=128)
        _check(result, msg)
        return _parse_addr(out.decode(), self._family)

    def getpeername(self):
        return self._addr(_OPT_PEER)

    def getsockname(self):
        try:
            return self._addr(_OPT_LOCAL)
        except OSError:
            return ("::", 0, 0, 0) if self._family == AF_INET6 else ("0.0.0.0", 0)

    def bind(self, address):
        raise _unsupported("bind()")

    def listen(self, backlog=0):
        raise _unsupported("listen()")

    def _accept(self):
        raise _unsupported("accept()")

    def __repr__(self):
        return "<_socket.socket fd=%d, family=%d, type=%d, proto=%d>" % (
            self._fd, self._family, self._type, self._proto)


SocketType = socket

# Linux errno -> this platform's (WASI's) errno, for SO_ERROR.
_LINUX_ERRNO = {111: _errno.ECONNREFUSED, 110: _errno.ETIMEDOUT, 104: _errno.ECONNRESET,
                113: _errno.EHOSTUNREACH, 101: _errno.ENETUNREACH, 13: _errno.EACCES,
                1: _errno.EPERM, 32: _errno.EPIPE, 103: _errno.ECONNABORTED}


def socketpair(family=AF_UNIX, type=SOCK_STREAM, proto=0):
    a = _os.open(_SOCKET_FILE, _os.O_RDWR)
    b = _os.open(_SOCKET_FILE, _os.O_RDWR)
    result, msg, _ = _call(_SOCKETPAIR, _token(a), _token(b))
    if result < 0:
        _os.close(a)
        _os.close(b)
        raise _error(result, msg)
    return socket(family, type, proto, a), socket(family, type, proto, b)


# --- TLS (used by the `ssl` module) ---------------------------------------------

def _start_tls(tok, request):
    result, msg, _ = _call(_START_TLS, tok, data=request)
    return result, msg


def _handshake(tok, wait_ms):
    result, msg, _ = _call(_HANDSHAKE, tok, 0, 0, wait_ms)
    return result, msg


def _tls_opt(tok, which, room=64 << 10):
    result, msg, out = _call(_GETOPT, tok, which, room=room)
    _check(result, msg)
    return out
