"""thaw-net-bench's client: the same code runs as a thaw function (app.py) and in a
bare host python3 (`python3 app.py`, event on stdin). One call runs one variant's
whole loop and times every request with time.perf_counter_ns."""
import http.client
import io
import json
import ssl
import sys
import time
import zlib


def _get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {r.status}")
    return body


def _timed(ev, once):
    """Runs `once` warmup + n times; the n measured times in ns."""
    out = []
    for _ in range(ev["warmup"] + ev["n"]):
        t = time.perf_counter_ns()
        body = once()
        out.append(time.perf_counter_ns() - t)
        if "size" in ev and len(body) > 100:
            if len(body) != ev["size"] or zlib.adler32(body) != ev["adler32"]:
                raise RuntimeError(f"download: wrong data ({len(body)} bytes)")
        elif body != b"hello, world\n":
            raise RuntimeError(f"wrong body {body[:40]!r}")
    return out[ev["warmup"]:]


def _fresh(ev, path):
    """One request on a new connection."""
    conn = http.client.HTTPConnection(ev["host"], ev["port"], timeout=30)
    try:
        return _get(conn, path)
    finally:
        conn.close()


def keepalive(ev):
    conn = http.client.HTTPConnection(ev["host"], ev["port"], timeout=30)
    out = _timed(ev, lambda: _get(conn, "/small"))
    conn.close()
    return out


def new_connection(ev):
    return _timed(ev, lambda: _fresh(ev, "/small"))


def download(ev):
    conn = http.client.HTTPConnection(ev["host"], ev["port"], timeout=30)
    out = _timed(ev, lambda: _get(conn, "/big"))
    conn.close()
    return out


def tls(ev):
    ctx = ssl.create_default_context(cadata=ev["cadata"])

    def once():
        conn = http.client.HTTPSConnection(ev["host"], ev["tls_port"], timeout=30, context=ctx)
        try:
            return _get(conn, "/small")
        finally:
            conn.close()

    return _timed(ev, once)


class _Loopless:
    """A socket stand-in: requests go nowhere, every response is canned."""

    RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: 13\r\n\r\nhello, world\n")

    def sendall(self, data):
        pass

    def makefile(self, mode):
        return io.BytesIO(self.RESPONSE)

    def close(self):
        pass


def no_network(ev):
    """The keep-alive loop's Python work (http.client formatting and parsing)
    with the socket replaced by an in-memory one: what CPython itself costs."""
    conn = http.client.HTTPConnection(ev["host"], ev["port"], timeout=30)
    conn.sock = _Loopless()
    return _timed(ev, lambda: _get(conn, "/small"))


VARIANTS = {
    "no_network": no_network,
    "keepalive": keepalive,
    "new_connection": new_connection,
    "download": download,
    "tls": tls,
}


def handler(event, context):
    t = time.perf_counter_ns()
    samples = VARIANTS[event["variant"]](event)
    return {"samples_ns": samples, "loop_ns": time.perf_counter_ns() - t}


if __name__ == "__main__":
    # Host side: one JSON event per line on stdin, one JSON answer per line out.
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(handler(json.loads(line), None)), flush=True)
