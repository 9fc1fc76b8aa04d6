"""Black-box test of `thaw serve` with stock boto3 (no thaw code): create a function from a zip
of examples/hello, publish a version, set provisioned concurrency and wait for READY, invoke
(sync, Event, DryRun, Tail), see 429 with client retries disabled after reserving 0, delete.

Usage: THAW_ACCESS_KEY_ID=... THAW_SECRET_ACCESS_KEY=... python3 test_boto3.py http://127.0.0.1:9000
(frontend/tests/boto3_kvm.rs starts a server on free ports and runs this.)
"""
import base64
import io
import json
import os
import re
import sys
import time
import zipfile

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("THAW_ENDPOINT", "http://127.0.0.1:9000")
HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "..", "examples", "hello")
NAME = "boto3-hello"


def client(retries=None):
    cfg = Config(retries=retries) if retries else Config()
    # The server verifies SigV4 signatures: sign with the key pair it was configured with.
    return boto3.client("lambda", endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id=os.environ.get("THAW_ACCESS_KEY_ID", "x"),
                        aws_secret_access_key=os.environ.get("THAW_SECRET_ACCESS_KEY", "x"), config=cfg)


def example_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(os.listdir(EXAMPLE)):
            z.write(os.path.join(EXAMPLE, name), name)
    return buf.getvalue()


def wait(pred, what, timeout=300):
    t0 = time.time()
    while True:
        v = pred()
        if v:
            return v
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def main():
    lam = client()
    try:
        lam.delete_function(FunctionName=NAME)
    except lam.exceptions.ResourceNotFoundException:
        pass

    created = lam.create_function(FunctionName=NAME, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/thaw",
                                  Handler="app.handler", Code={"ZipFile": example_zip()}, MemorySize=512, Timeout=3,
                                  Environment={"Variables": {"GREETING": "hi"}})
    assert created["State"] == "Pending", created
    assert created["Version"] == "$LATEST"
    t0 = time.time()
    lam.get_waiter("function_active_v2").wait(FunctionName=NAME, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    print(f"create -> Active: {time.time() - t0:.2f} s")
    fn = lam.get_function(FunctionName=NAME)
    assert fn["Configuration"]["State"] == "Active", fn
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert NAME in names, names

    # Sync invoke with Tail.
    r = lam.invoke(FunctionName=NAME, Payload=json.dumps({"x": 1}), LogType="Tail")
    body = json.loads(r["Payload"].read())
    assert r["StatusCode"] == 200 and body["message"] == "hello" and body["event"] == {"x": 1}, (r, body)
    assert r["ExecutedVersion"] == "$LATEST"
    log = base64.b64decode(r["LogResult"]).decode()
    assert "START RequestId:" in log and "END RequestId:" in log and "REPORT RequestId:" in log, log
    # Max Memory Used is measured: some MB, less than the configured Memory Size.
    used = int(re.search(r"Max Memory Used: (\d+) MB", log).group(1))
    size = int(re.search(r"Memory Size: (\d+) MB", log).group(1))
    assert 0 < used < size, log
    assert "hello from " + NAME in log, log
    print("tail log:\n" + log)

    # Publish, provisioned concurrency, READY.
    v = lam.publish_version(FunctionName=NAME)
    assert v["Version"] == "1", v
    wait(lambda: lam.get_function(FunctionName=NAME, Qualifier="1")["Configuration"]["State"] == "Active", "version 1 Active")
    lam.create_alias(FunctionName=NAME, Name="live", FunctionVersion="1")
    assert lam.get_alias(FunctionName=NAME, Name="live")["FunctionVersion"] == "1"
    pc = lam.put_provisioned_concurrency_config(FunctionName=NAME, Qualifier="1", ProvisionedConcurrentExecutions=2)
    assert pc["RequestedProvisionedConcurrentExecutions"] == 2, pc
    t0 = time.time()
    pc = wait(lambda: (lambda c: c if c["Status"] != "IN_PROGRESS" else None)(
        lam.get_provisioned_concurrency_config(FunctionName=NAME, Qualifier="1")), "READY")
    assert pc["Status"] == "READY" and pc["AvailableProvisionedConcurrentExecutions"] == 2, pc
    print(f"provisioned 2 -> READY: {time.time() - t0:.2f} s")
    r = lam.invoke(FunctionName=NAME, Qualifier="live", Payload=b"{}", LogType="Tail")
    assert r["StatusCode"] == 200 and r["ExecutedVersion"] == "1", r
    assert "Init Duration" not in base64.b64decode(r["LogResult"]).decode(), "provisioned invoke is warm"
    r = lam.invoke(FunctionName=f"arn:aws:lambda:us-east-1:000000000000:function:{NAME}:1", Payload=b"{}")
    assert r["ExecutedVersion"] == "1"

    # Event and DryRun.
    r = lam.invoke(FunctionName=NAME, InvocationType="Event", Payload=b'{"async": true}')
    assert r["StatusCode"] == 202, r
    r = lam.invoke(FunctionName=NAME, InvocationType="DryRun")
    assert r["StatusCode"] == 204, r

    # Throttling: reserve 0 on a function without provisioned concurrency, retries off -> 429.
    lam.delete_provisioned_concurrency_config(FunctionName=NAME, Qualifier="1")
    lam.put_function_concurrency(FunctionName=NAME, ReservedConcurrentExecutions=0)
    strict = client(retries={"max_attempts": 0})
    try:
        strict.invoke(FunctionName=NAME, Payload=b"{}")
        raise AssertionError("expected TooManyRequestsException")
    except strict.exceptions.TooManyRequestsException as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert e.response.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded", e.response
        print("429:", e.response["Error"])
    lam.delete_function_concurrency(FunctionName=NAME)
    assert lam.invoke(FunctionName=NAME, Payload=b"{}")["StatusCode"] == 200

    # Errors map to botocore exceptions.
    try:
        lam.get_function(FunctionName="does-not-exist")
        raise AssertionError("expected ResourceNotFoundException")
    except lam.exceptions.ResourceNotFoundException:
        pass
    try:
        lam.get_provisioned_concurrency_config(FunctionName=NAME, Qualifier="1")
        raise AssertionError("expected ProvisionedConcurrencyConfigNotFoundException")
    except lam.exceptions.ProvisionedConcurrencyConfigNotFoundException:
        pass

    lam.delete_function(FunctionName=NAME)
    try:
        lam.get_function(FunctionName=NAME)
        raise AssertionError("deleted function still there")
    except lam.exceptions.ResourceNotFoundException:
        pass
    print("boto3 black-box test: OK")


if __name__ == "__main__":
    main()
