"""The first cold start after the service restarts (issue 14): a new `thaw serve`
process has nothing in memory (no decompressed chunks, no VM shells, no reset VMs), but
the host keeps the page cache and the hugetlbfs module and working-set images.

Usage: restart_cold_start.py THAW_BINARY CONFIG DATA_DIR [PORT] [N] [--drop-images]

Starts `thaw serve` on 127.0.0.1:PORT (loopback only), creates N functions and invokes
each once (the first restore records its working set), stops the service (SIGTERM) and
starts it again on the same data directory, then times the first invoke of each
function in the new process, and a cold start after the keep-warm TTL in that process
for comparison (run with `[limits] keep_warm_ttl_s = 1`). Times include boto3's own
~1-2 ms per call. `--drop-images` deletes the working-set images (`thaw-ws-*` on the
hugetlbfs mount, `$THAW_HUGETLBFS` or /dev/hugepages) before the restart, to show the
restart without them.
"""
import glob
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile

import boto3
import botocore

exe, config, data = sys.argv[1], sys.argv[2], sys.argv[3]
port = int(sys.argv[4]) if len(sys.argv) > 4 else 19020
n = int(sys.argv[5]) if len(sys.argv) > 5 else 5
drop_images = "--drop-images" in sys.argv[6:]


def serve():
    p = subprocess.Popen(
        [exe, "serve", "--config", config, "--data", data,
         "--http", f"127.0.0.1:{port}", "--grpc", f"127.0.0.1:{port + 1}",
         "--urls", f"127.0.0.1:{port + 2}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("thaw serve did not come up")


def client():
    return boto3.client(
        "lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="y",
        config=botocore.config.Config(retries={"max_attempts": 0}))


def timed_invoke(c, name):
    t = time.perf_counter()
    r = c.invoke(FunctionName=name, Payload=b'{"name":"a"}')
    body = r["Payload"].read()
    assert b'"hello": "a"' in body, body
    return (time.perf_counter() - t) * 1000


buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("app.py", "def handler(event, context):\n    return {'hello': event.get('name')}\n")
code = buf.getvalue()

p = serve()
c = client()
names = [f"rs{i}-{int(time.time() * 1000)}" for i in range(n)]
for name in names:
    c.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                      Handler="app.handler", Code={"ZipFile": code}, MemorySize=512)
    c.get_waiter("function_active_v2").wait(FunctionName=name)
    timed_invoke(c, name)
time.sleep(1.0)  # background image builds finish
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
if drop_images:
    for f in glob.glob(os.path.join(os.environ.get("THAW_HUGETLBFS", "/dev/hugepages"), "thaw-ws-*")):
        os.remove(f)

p = serve()
c = client()
firsts, laters = [], []
try:
    for name in names:
        firsts.append(timed_invoke(c, name))
    time.sleep(2.5)  # keep-warm TTL 1 s: the next invoke is a cold start in this process
    for name in names:
        laters.append(timed_invoke(c, name))
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
finally:
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
for name, f, l in zip(names, firsts, laters):
    print(f"{name}: first after restart {f:.1f} ms, later cold {l:.1f} ms")
firsts.sort()
laters.sort()
image_restores = [l for l in metrics.splitlines() if l.startswith("thaw_ws_image_restores_total ")]
print(f"median first after restart {firsts[n // 2]:.1f} ms, median later cold {laters[n // 2]:.1f} ms, "
      f"ratio {firsts[n // 2] / laters[n // 2]:.2f}; {image_restores[0] if image_restores else ''}")
