"""N concurrent cold starts of one freshly published function through `thaw serve`'s HTTP
API: every invoke is answered (status 200 and the handler's body), restores/s = N / wall
time of the burst, and the latency distribution. Usage: burst.py N PORT."""
import asyncio, io, json, sys, time, zipfile
import boto3, botocore

N, PORT = int(sys.argv[1]), int(sys.argv[2])
c = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{PORT}", region_name="us-east-1",
                 aws_access_key_id="x", aws_secret_access_key="y",
                 config=botocore.config.Config(retries={"max_attempts": 0}))
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("app.py", "def handler(event, context):\n    return {'hello': event.get('name')}\n")
name = f"burst-{int(time.time())}"
c.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                  Handler="app.handler", Code={"ZipFile": buf.getvalue()}, MemorySize=512)
c.get_waiter("function_active_v2").wait(FunctionName=name)
# One invoke first: records the final working set (as after any deploy's first request).
c.invoke(FunctionName=name, Payload=b'{"name":"warmup"}')
time.sleep(2.5)  # the server runs with keep_warm_ttl_s = 1: that instance is gone

async def one(i, start):
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    body = json.dumps({"name": str(i)}).encode()
    req = (f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: x\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    await start.wait()
    t0 = time.perf_counter()
    w.write(req); await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    data = await r.readexactly(length)
    dt = time.perf_counter() - t0
    w.close()
    status = int(head.split(b" ")[1])
    return status, json.loads(data), dt, t0

async def main():
    start = asyncio.Event()
    tasks = [asyncio.create_task(one(i, start)) for i in range(N)]
    await asyncio.sleep(0.5)  # all connected
    t0 = time.perf_counter(); start.set()
    res = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    ok = sum(1 for s, b, _, _ in res if s == 200 and b == {"hello": b and b.get("hello")} and b.get("hello") is not None)
    lat = sorted(dt for _, _, dt, _ in res)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    print(f"burst of {N} cold starts: {ok}/{N} answered 200 with the handler's body, wall {wall*1000:.0f} ms, "
          f"{N/wall:.0f} restores/s; latency p50 {q(.5):.1f} p90 {q(.9):.1f} p99 {q(.99):.1f} max {lat[-1]*1000:.1f} ms")
    statuses = {}
    for s, _, _, _ in res: statuses[s] = statuses.get(s, 0) + 1
    print("statuses", statuses)
asyncio.run(main())
