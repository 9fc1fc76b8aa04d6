"""Function URL overhead: the same warm hello invocation through the Lambda API's Invoke
(`POST /2015-03-31/functions/NAME/invocations`) and through the function's URL (payload
2.0 in and out), both with a keep-alive plain HTTP client, interleaved, against an
anonymous loopback `thaw serve`. Prints both p50s and their difference.

Usage: python3 url_overhead.py API_PORT [N]
"""
import http.client
import io
import json
import sys
import time
import urllib.parse
import zipfile

import boto3
import botocore

port = int(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
c = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                 aws_access_key_id="x", aws_secret_access_key="y",
                 config=botocore.config.Config(retries={"max_attempts": 0}))
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("app.py", "def handler(event, context):\n    return {'hello': 'url'}\n")
name = f"urlbench-{int(time.time())}"
c.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                  Handler="app.handler", Code={"ZipFile": buf.getvalue()})
c.get_waiter("function_active_v2").wait(FunctionName=name)
url = urllib.parse.urlparse(c.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])
api = http.client.HTTPConnection("127.0.0.1", port)
fu = http.client.HTTPConnection(url.hostname, url.port)


def direct():
    api.request("POST", f"/2015-03-31/functions/{name}/invocations", body=b"{}")
    r = api.getresponse()
    body = r.read()
    assert r.status == 200 and json.loads(body) == {"hello": "url"}, (r.status, body)


def through_url():
    fu.request("GET", url.path + "x?y=1")
    r = fu.getresponse()
    body = r.read()
    assert r.status == 200 and json.loads(body) == {"hello": "url"}, (r.status, body)


for _ in range(200):  # warm both paths
    direct()
    through_url()
a, b = [], []
for _ in range(n):
    t = time.perf_counter(); direct(); a.append(time.perf_counter() - t)
    t = time.perf_counter(); through_url(); b.append(time.perf_counter() - t)
a.sort(); b.sort()
pa, pb = a[n // 2] * 1e6, b[n // 2] * 1e6
print(f"{n} warm invokes each: Invoke API p50 {pa:.0f} us, function URL p50 {pb:.0f} us, "
      f"URL overhead {pb - pa:+.0f} us (p99 {a[n * 99 // 100] * 1e6:.0f} / {b[n * 99 // 100] * 1e6:.0f} us)")
c.delete_function(FunctionName=name)
