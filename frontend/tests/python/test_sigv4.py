"""SigV4 against `thaw serve` with botocore's own signer (no thaw code): a correctly signed client
works; a wrong access key, a wrong secret, a stale or future date, a tampered body, an unsigned
request and UNSIGNED-PAYLOAD each get Lambda's 403 error shape.

Usage: python3 test_sigv4.py ENDPOINT ACCESS_KEY_ID SECRET_ACCESS_KEY
(frontend/tests/auth.rs starts a server over the fake backend and runs this.)
"""
import datetime
import io
import json
import sys
import urllib.error
import urllib.request
import zipfile

import boto3
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ENDPOINT, KEY, SECRET = sys.argv[1], sys.argv[2], sys.argv[3]


def client(key=KEY, secret=SECRET):
    return boto3.client("lambda", endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 0}))


def expect_error(fn, code, status=403, contains=None):
    try:
        fn()
    except ClientError as e:
        err = e.response["Error"]
        meta = e.response["ResponseMetadata"]
        assert err["Code"] == code, (code, e.response)
        assert meta["HTTPStatusCode"] == status, e.response
        assert meta["HTTPHeaders"].get("x-amzn-errortype", "").startswith(code), e.response
        if contains:
            assert contains in err["Message"], e.response
        return err["Message"]
    raise AssertionError(f"expected {code}")


def raw(method, path, body, headers):
    """Sends a request as given (no signing) and returns (status, headers, JSON body)."""
    req = urllib.request.Request(ENDPOINT + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"{}")


def signed(method, path, body, key=KEY, secret=SECRET, unsigned_payload=False):
    """A request signed by botocore's SigV4Auth: its headers."""
    req = AWSRequest(method=method, url=ENDPOINT + path, data=body)
    if unsigned_payload:
        req.context["payload_signing_enabled"] = False
        # botocore only skips payload hashing over https; pretend, then send over http.
        req.url = req.url.replace("http://", "https://", 1)
    SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(req)
    headers = dict(req.headers)
    host = ENDPOINT.split("://", 1)[1]
    headers["Host"] = host
    return headers


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def main():
    good = client()
    # 1. A correctly signed client: control plane and invoke.
    good.create_function(FunctionName="signed", Runtime="python3.12", Role="arn:aws:iam::000000000000:role/x",
                         Handler="app.handler", Code={"ZipFile": zip_of({"app.py": "def handler(e, c): return e"})})
    good.get_waiter("function_active_v2").wait(FunctionName="signed", WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    assert "signed" in [f["FunctionName"] for f in good.list_functions()["Functions"]]
    r = good.invoke(FunctionName="signed", Payload=json.dumps({"k": "v"}), Qualifier="$LATEST")
    assert r["StatusCode"] == 200, r
    assert json.loads(r["Payload"].read()) == {"echo": {"k": "v"}}
    good.get_function(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:signed:$LATEST")

    # 2. Wrong key, wrong secret.
    expect_error(lambda: client(key="AKIDNOTCONFIGURED").list_functions(), "UnrecognizedClientException",
                 contains="The security token included in the request is invalid.")
    expect_error(lambda: client(secret=SECRET + "x").invoke(FunctionName="signed", Payload=b"{}"),
                 "InvalidSignatureException", contains="does not match the signature you provided")

    # 3. Stale and future dates (botocore's clock moved by 20 minutes).
    real_now = botocore.auth.get_current_datetime
    try:
        for delta, text in [(-20, "Signature expired"), (20, "Signature not yet current")]:
            botocore.auth.get_current_datetime = lambda d=delta: real_now() + datetime.timedelta(minutes=d)
            expect_error(lambda: client().list_functions(), "InvalidSignatureException", contains=text)
        botocore.auth.get_current_datetime = lambda: real_now() - datetime.timedelta(minutes=14)
        client().list_functions()
    finally:
        botocore.auth.get_current_datetime = real_now

    # 4. A body changed after signing; the original body still passes.
    path = "/2015-03-31/functions/signed/invocations"
    headers = signed("POST", path, b'{"amount": 1}')
    status, h, body = raw("POST", path, b'{"amount": 9}', headers)
    assert status == 403 and h.get("x-amzn-errortype") == "InvalidSignatureException", (status, h, body)
    status, _, body = raw("POST", path, b'{"amount": 1}', headers)
    assert status == 200 and body == {"echo": {"amount": 1}}, (status, body)
    # A signed path moved to another function.
    status, _, _ = raw("POST", "/2015-03-31/functions/other/invocations", b'{"amount": 1}', headers)
    assert status == 403

    # 5. Unsigned requests, and UNSIGNED-PAYLOAD (refused unless allow_unsigned_payload).
    status, h, body = raw("GET", "/2015-03-31/functions", None, {})
    assert status == 403 and h.get("x-amzn-errortype") == "MissingAuthenticationTokenException", (status, h)
    assert body == {"message": "Missing Authentication Token"}, body
    headers = signed("POST", path, b"{}", unsigned_payload=True)
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    status, h, body = raw("POST", path, b"{}", headers)
    assert status == 403 and h.get("x-amzn-errortype") == "InvalidSignatureException", (status, h, body)

    # 6. /health stays public; /metrics takes the bearer form.
    with urllib.request.urlopen(ENDPOINT + "/health") as r:
        assert r.status == 200 and r.read() == b"ok"
    req = urllib.request.Request(ENDPOINT + "/metrics", headers={"Authorization": f"Bearer {KEY}:{SECRET}"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200 and b"faas" in r.read()
    status, h, _ = raw("GET", "/metrics", None, {"Authorization": f"Bearer {KEY}:wrong"})
    assert status == 403 and h.get("x-amzn-errortype") == "UnrecognizedClientException", (status, h)
    print("sigv4: all checks passed")


if __name__ == "__main__":
    main()
