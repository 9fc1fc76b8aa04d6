import boto3, io, zipfile, time, sys, botocore, urllib.request, re
N = int(sys.argv[1]); port = sys.argv[2]
c = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                 aws_access_key_id="x", aws_secret_access_key="y",
                 config=botocore.config.Config(retries={"max_attempts": 0}))
def meminfo():
    d = {}
    for l in open("/proc/meminfo"):
        k, v = l.split(":"); d[k] = int(v.split()[0])
    return d
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("app.py", "def handler(event, context):\n    return {'hello': event.get('name')}\n")
name = f"dens-{int(time.time())}"
c.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                  Handler="app.handler", Code={"ZipFile": buf.getvalue()}, MemorySize=512)
c.get_waiter("function_active_v2").wait(FunctionName=name)
v = c.publish_version(FunctionName=name)["Version"]
time.sleep(1)
m0 = meminfo()
t0 = time.perf_counter()
c.put_provisioned_concurrency_config(FunctionName=name, Qualifier=v, ProvisionedConcurrentExecutions=N)
while True:
    r = c.get_provisioned_concurrency_config(FunctionName=name, Qualifier=v)
    if r["Status"] != "IN_PROGRESS": break
    time.sleep(0.05)
ready = time.perf_counter() - t0
time.sleep(0.5)
m1 = meminfo()
used = (m0["MemAvailable"] - m1["MemAvailable"]) + (m0["HugePages_Free"] - m1["HugePages_Free"]) * 2048
print(f"status {r['Status']} {r.get('StatusReason','')} allocated {r['AllocatedProvisionedConcurrentExecutions']}")
print(f"{N} provisioned: READY in {ready:.2f} s, host memory {used/1024:.0f} MiB = {used/1024/N:.1f} MiB each (hugetlb pages used {m0['HugePages_Free']-m1['HugePages_Free']})")
lat = []
for i in range(200):
    t = time.perf_counter(); c.invoke(FunctionName=name, Qualifier=v, Payload=b'{"name":"a"}'); lat.append(time.perf_counter() - t)
lat.sort(); print(f"warm invoke p50 through boto3/HTTP {lat[100]*1000:.2f} ms")
import http.client
h = http.client.HTTPConnection("127.0.0.1", int(port))
raw = []
for i in range(1000):
    t = time.perf_counter()
    h.request("POST", f"/2015-03-31/functions/{name}/invocations?Qualifier={v}", body=b'{"name":"a"}')
    r = h.getresponse(); r.read()
    raw.append(time.perf_counter() - t)
    assert r.status == 200, r.status
raw.sort(); print(f"warm invoke p50 through plain HTTP keep-alive (http.client) {raw[500]*1000:.3f} ms, p99 {raw[990]*1000:.3f} ms")
m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
for l in m.splitlines():
    if l.startswith("thaw_memory_used_bytes") or l.startswith("thaw_instance_memory") or l.startswith("thaw_memory_admission"):
        print(l)
c.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=v)
