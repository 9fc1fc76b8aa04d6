import boto3, io, zipfile, time, json, sys, botocore
c = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{sys.argv[1] if len(sys.argv) > 1 else 19000}", region_name="us-east-1",
                 aws_access_key_id="x", aws_secret_access_key="y",
                 config=botocore.config.Config(retries={"max_attempts": 0}))
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("app.py", "def handler(event, context):\n    return {'hello': event.get('name')}\n")
code = buf.getvalue()
firsts, laters = [], []
for i in range(5):
    name = f"fc{i}-{int(time.time()*1000)}"
    c.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                      Handler="app.handler", Code={"ZipFile": code}, MemorySize=512)
    c.get_waiter("function_active_v2").wait(FunctionName=name)
    t = time.perf_counter(); c.invoke(FunctionName=name, Payload=b'{"name":"a"}'); firsts.append(time.perf_counter()-t)
    t = time.perf_counter(); c.invoke(FunctionName=name, Payload=b'{"name":"a"}'); warm = time.perf_counter()-t
    time.sleep(2.5)  # keep-warm TTL 1 s: the next invoke restores again
    t = time.perf_counter(); c.invoke(FunctionName=name, Payload=b'{"name":"a"}'); laters.append(time.perf_counter()-t)
    print(f"{name}: first {firsts[-1]*1000:.1f} ms, warm {warm*1000:.2f} ms, later cold {laters[-1]*1000:.1f} ms", flush=True)
firsts.sort(); laters.sort()
print(f"median first {firsts[2]*1000:.1f} ms, median later cold {laters[2]*1000:.1f} ms, ratio {firsts[2]/laters[2]:.2f}")
