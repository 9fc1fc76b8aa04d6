"""Black-box test of the Lambda API deploy tools use, with stock boto3 and the real aws cli
(v1 from PyPI and v2, Debian's `awscli`, whichever are installed) against `thaw serve`:
configuration updates and their waiters, a failed code update that keeps the old code
serving, a weighted alias whose two versions both serve, lists and pages, tags, account
settings, a function URL called with a plain HTTP client, JSON logs, SnapStart's REPORT form,
an async event arriving at its OnFailure destination, and a replay of Terraform's
`aws_lambda_function` + `aws_lambda_provisioned_concurrency_config` call sequence.

Usage: THAW_ACCESS_KEY_ID=... THAW_SECRET_ACCESS_KEY=... python3 test_deploy_api.py http://127.0.0.1:9000
(frontend/tests/serve_kvm.rs starts a server on free ports and runs this.)
"""
import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import zipfile

import boto3
from botocore.config import Config

ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("THAW_ENDPOINT", "http://127.0.0.1:9000")
KEY = os.environ.get("THAW_ACCESS_KEY_ID", "x")
SECRET = os.environ.get("THAW_SECRET_ACCESS_KEY", "x")
ROLE = "arn:aws:iam::000000000000:role/thaw"
WAIT = {"Delay": 1, "MaxAttempts": 180}

APP = '''
import errno, json, logging, os

def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    if "rawPath" in event:
        return {"statusCode": 201, "headers": {"x-path": event["rawPath"]}, "cookies": ["a=1"],
                "body": json.dumps({"q": event.get("queryStringParameters"), "body": event.get("body")})}
    if "tmp_mb" in event:
        # EphemeralStorage: how much of a /tmp file fits.
        written, full = 0, False
        try:
            with open("/tmp/big", "wb") as f:
                for _ in range(event["tmp_mb"]):
                    f.write(bytes(1 << 20))
                    written += 1
        except OSError as e:
            full = e.errno == errno.ENOSPC
        os.remove("/tmp/big")
        return {"written_mb": written, "enospc": full}
    logging.getLogger("app").warning("warned %s", event.get("n"))
    return {"greeting": os.environ.get("GREETING"), "version": context.function_version, "event": event}
'''

# Remembers every event it gets in /tmp (one instance: reserved concurrency 1), and returns
# them when asked.
SINK = '''
import json, os
PATH = "/tmp/records.jsonl"

def handler(event, context):
    if event.get("read"):
        if not os.path.exists(PATH):
            return []
        with open(PATH) as f:
            return [json.loads(line) for line in f]
    with open(PATH, "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {"stored": True}
'''

BROKEN = 'raise RuntimeError("broken at import")\ndef handler(event, context):\n    return 1\n'


def zipped(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
    return buf.getvalue()


def client(retries=None):
    cfg = Config(retries=retries) if retries else Config()
    return boto3.client("lambda", endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id=KEY, aws_secret_access_key=SECRET, config=cfg)


def wait(pred, what, timeout=300):
    t0 = time.time()
    while True:
        v = pred()
        if v:
            return v
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def invoke(lam, name, payload, **kw):
    r = lam.invoke(FunctionName=name, Payload=json.dumps(payload), **kw)
    return r, json.loads(r["Payload"].read())


def fresh(lam, name):
    try:
        lam.delete_function(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        pass


def config_updates(lam):
    name = "deploy-cfg"
    fresh(lam, name)
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zipped(APP)}, Environment={"Variables": {"GREETING": "one"}},
                        Tags={"team": "core"})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    r, body = invoke(lam, name, {}, LogType="Tail")
    assert body["greeting"] == "one", body
    # The first invocation restores the snapshot: SnapStart's REPORT fields, no Init Duration.
    report = [l for l in base64.b64decode(r["LogResult"]).decode().splitlines() if l.startswith("REPORT")][0]
    assert re.search(r"\tRestore Duration: [\d.]+ ms\tBilled Restore Duration: \d+ ms", report), report
    assert "Init Duration" not in report, report
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}, cfg
    assert cfg["LoggingConfig"]["LogFormat"] == "Text", cfg

    # UpdateFunctionConfiguration -> InProgress -> Successful; a stale RevisionId is refused.
    try:
        lam.update_function_configuration(FunctionName=name, Timeout=5, RevisionId="stale")
        raise AssertionError("stale RevisionId accepted")
    except lam.exceptions.PreconditionFailedException:
        pass
    up = lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"GREETING": "two"}},
                                           MemorySize=256, Timeout=5, RevisionId=cfg["RevisionId"])
    assert up["LastUpdateStatus"] in ("InProgress", "Successful"), up
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["MemorySize"] == 256 and cfg["Timeout"] == 5 and cfg["LastUpdateStatus"] == "Successful", cfg
    assert invoke(lam, name, {})[1]["greeting"] == "two"

    # A code update whose init fails: Failed with the reason, the old code keeps serving.
    lam.update_function_code(FunctionName=name, ZipFile=zipped(BROKEN))
    cfg = wait(lambda: (lambda c: c if c["LastUpdateStatus"] != "InProgress" else None)(
        lam.get_function_configuration(FunctionName=name)), "the broken update to finish")
    assert cfg["LastUpdateStatus"] == "Failed" and cfg["State"] == "Active", cfg
    assert "broken at import" in cfg["LastUpdateStatusReason"], cfg
    r, body = invoke(lam, name, {})
    assert "FunctionError" not in r and body["greeting"] == "two", body

    # JSON logs: platform records and the application's own lines as JSON.
    lam.update_function_code(FunctionName=name, ZipFile=zipped(APP))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    lam.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    r, body = invoke(lam, name, {"n": 7}, LogType="Tail")
    log = base64.b64decode(r["LogResult"]).decode()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    types = [x.get("type") for x in records]
    assert "platform.start" in types and "platform.report" in types, log
    app = [x for x in records if x.get("message") == "warned 7"]
    assert app and app[0]["level"] == "WARN" and app[0]["logger"] == "app" and app[0]["requestId"], log
    report = [x for x in records if x.get("type") == "platform.report"][0]["record"]
    assert report["metrics"]["memorySizeMB"] == 256 and report["metrics"]["durationMs"] > 0, report
    print("JSON log:\n" + log)

    # EphemeralStorage sizes /tmp (within MemorySize, which /tmp lives in).
    lam.update_function_configuration(FunctionName=name, MemorySize=1024, Timeout=60, EphemeralStorage={"Size": 512})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    out = invoke(lam, name, {"tmp_mb": 600})[1]
    assert out == {"written_mb": 512, "enospc": True}, out
    lam.update_function_configuration(FunctionName=name, EphemeralStorage={"Size": 1024})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert lam.get_function_configuration(FunctionName=name)["EphemeralStorage"] == {"Size": 1024}
    out = invoke(lam, name, {"tmp_mb": 600})[1]
    assert out == {"written_mb": 600, "enospc": False}, out
    return name


def weighted_alias(lam, name):
    lam.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "Text"},
                                      Environment={"Variables": {"GREETING": "v1"}},
                                      SnapStart={"ApplyOn": "PublishedVersions"})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    v1 = lam.publish_version(FunctionName=name)["Version"]
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=v1, WaiterConfig=WAIT)
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"GREETING": "v2"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    v2 = lam.publish_version(FunctionName=name)["Version"]
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=v2, WaiterConfig=WAIT)
    c = lam.get_function_configuration(FunctionName=name, Qualifier=v2)
    assert c["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}, c

    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v1,
                     RoutingConfig={"AdditionalVersionWeights": {v2: 0.5}})
    seen = {v1: 0, v2: 0}
    for _ in range(120):
        r, body = invoke(lam, name, {}, Qualifier="live")
        seen[r["ExecutedVersion"]] += 1
        assert body["greeting"] == ("v1" if r["ExecutedVersion"] == v1 else "v2"), (r["ExecutedVersion"], body)
    # 120 draws at p = 0.5: mean 60, sd ~5.5; 30..90 is more than 5 sd either way.
    assert 30 <= seen[v2] <= 90, seen
    print("weighted alias served:", seen)

    aliases = lam.list_aliases(FunctionName=name)["Aliases"]
    assert [a["Name"] for a in aliases] == ["live"], aliases
    a = lam.update_alias(FunctionName=name, Name="live", FunctionVersion=v2, RoutingConfig={"AdditionalVersionWeights": {}})
    assert a["FunctionVersion"] == v2 and not a.get("RoutingConfig", {}).get("AdditionalVersionWeights"), a
    page = lam.list_versions_by_function(FunctionName=name, MaxItems=1)
    assert len(page["Versions"]) == 1 and page["NextMarker"], page
    every = [v["Version"] for p in lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
             for v in p["Versions"]]
    assert every == ["$LATEST", v1, v2], every
    lam.delete_alias(FunctionName=name, Name="live")
    assert lam.list_aliases(FunctionName=name)["Aliases"] == []
    return v2


def tags_and_account(lam, name):
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"env": "test"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "core", "env": "test"}
    lam.untag_resource(Resource=arn, TagKeys=["env"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "core"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"team": "core"}
    cs = lam.get_function_code_signing_config(FunctionName=name)
    assert cs["FunctionName"] == name and not cs.get("CodeSigningConfigArn"), cs
    acct = lam.get_account_settings()
    assert acct["AccountLimit"]["ConcurrentExecutions"] > 0 and acct["AccountUsage"]["FunctionCount"] >= 1, acct


def function_url(lam, name):
    u = lam.create_function_url_config(FunctionName=name, AuthType="NONE", Cors={"AllowOrigins": ["*"]})
    url = u["FunctionUrl"]
    assert lam.get_function_url_config(FunctionName=name)["FunctionUrl"] == url
    assert [c["FunctionUrl"] for c in lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]] == [url]
    assert url.startswith("http://127.0.0.1:"), url  # loopback only
    req = urllib.request.Request(url + "hello/world?x=1&x=2", data=b"plain text", method="POST",
                                 headers={"Content-Type": "text/plain", "Origin": "https://a.example"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201, resp.status
        assert resp.headers["x-path"] == "/hello/world"
        assert resp.headers["set-cookie"] == "a=1"
        assert resp.headers["access-control-allow-origin"] == "*"
        body = json.loads(resp.read())
    assert body == {"q": {"x": "1,2"}, "body": "plain text"}, body
    lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    try:
        urllib.request.urlopen(url, timeout=30)
        raise AssertionError("unsigned request to an AWS_IAM URL served")
    except urllib.error.HTTPError as e:
        assert e.code == 403, e.code
    lam.delete_function_url_config(FunctionName=name)
    print("function URL:", url)


def permissions(lam, name):
    # aws_lambda_permission: add, read back the policy, remove.
    added = lam.add_permission(FunctionName=name, StatementId="url-public", Action="lambda:InvokeFunctionUrl",
                               Principal="*", FunctionUrlAuthType="NONE")
    assert json.loads(added["Statement"])["Sid"] == "url-public", added
    got = lam.get_policy(FunctionName=name)
    doc = json.loads(got["Policy"])
    assert [s["Sid"] for s in doc["Statement"]] == ["url-public"], doc
    assert doc["Statement"][0]["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"] == "NONE", doc
    try:
        lam.add_permission(FunctionName=name, StatementId="url-public", Action="lambda:InvokeFunction", Principal="*")
        raise AssertionError("a duplicate statement id was accepted")
    except lam.exceptions.ResourceConflictException:
        pass
    lam.remove_permission(FunctionName=name, StatementId="url-public", RevisionId=got["RevisionId"])
    try:
        lam.get_policy(FunctionName=name)
        raise AssertionError("the policy outlived its last statement")
    except lam.exceptions.ResourceNotFoundException:
        pass


def destinations(lam):
    src, sink = "deploy-src", "deploy-sink"
    for n, code in ((sink, SINK), (src, APP)):
        fresh(lam, n)
        lam.create_function(FunctionName=n, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": zipped(code)})
    for n in (sink, src):
        lam.get_waiter("function_active_v2").wait(FunctionName=n, WaiterConfig=WAIT)
    lam.put_function_concurrency(FunctionName=sink, ReservedConcurrentExecutions=1)
    sink_arn = lam.get_function(FunctionName=sink)["Configuration"]["FunctionArn"]
    lam.put_function_event_invoke_config(FunctionName=src, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": sink_arn}})
    got = lam.get_function_event_invoke_config(FunctionName=src)
    assert got["MaximumRetryAttempts"] == 0 and got["DestinationConfig"]["OnFailure"]["Destination"] == sink_arn, got
    lam.update_function_event_invoke_config(FunctionName=src, MaximumEventAgeInSeconds=600)
    listed = lam.list_function_event_invoke_configs(FunctionName=src)["FunctionEventInvokeConfigs"]
    assert len(listed) == 1 and listed[0]["MaximumEventAgeInSeconds"] == 600, listed
    r = lam.invoke(FunctionName=src, InvocationType="Event", Payload=json.dumps({"fail": True, "id": 42}))
    assert r["StatusCode"] == 202
    slow = client(retries={"max_attempts": 0})

    def records():
        try:
            return invoke(slow, sink, {"read": True})[1]
        except slow.exceptions.TooManyRequestsException:
            return None

    recs = wait(lambda: records(), "the OnFailure record", timeout=120)
    rec = recs[0]
    assert rec["requestContext"]["condition"] == "RetriesExhausted", rec
    assert rec["requestPayload"] == {"fail": True, "id": 42}, rec
    assert rec["responseContext"]["functionError"] == "Unhandled", rec
    assert rec["responsePayload"]["errorMessage"] == "asked to fail", rec
    print("OnFailure record:", json.dumps(rec)[:300])
    lam.delete_function_event_invoke_config(FunctionName=src)
    for n in (src, sink):
        lam.delete_function(FunctionName=n)


def terraform_replay(lam):
    """The calls Terraform's aws_lambda_function and aws_lambda_provisioned_concurrency_config
    make for create, read (plan), update config, update code, publish, delete."""
    name = "deploy-tf"
    fresh(lam, name)
    # create
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zipped(APP)}, Publish=False, Tags={"tf": "yes"},
                        Environment={"Variables": {"GREETING": "tf"}})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    # read (every plan)
    for _ in range(2):
        fn = lam.get_function(FunctionName=name)
        lam.get_function_code_signing_config(FunctionName=name)
        lam.list_versions_by_function(FunctionName=name, MaxItems=50)
        lam.list_tags(Resource=fn["Configuration"]["FunctionArn"])
        lam.get_function_concurrency(FunctionName=name)
    # update config, then code (each followed by the updated waiter)
    lam.update_function_configuration(FunctionName=name, Timeout=10, Description="tf")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    lam.update_function_code(FunctionName=name, ZipFile=zipped(APP + "\n# v2\n"), Publish=True)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    v = versions[-1]
    assert v != "$LATEST", versions
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=v, WaiterConfig=WAIT)
    # provisioned concurrency config
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=v, ProvisionedConcurrentExecutions=1)
    pc = wait(lambda: (lambda c: c if c["Status"] != "IN_PROGRESS" else None)(
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=v)), "READY")
    assert pc["Status"] == "READY", pc
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert len(listed) == 1 and listed[0]["FunctionArn"].endswith(f":{name}:{v}"), listed
    r, body = invoke(lam, name, {}, Qualifier=v)
    assert body["version"] == v and body["greeting"] == "tf", body
    # destroy
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=v)
    lam.delete_function(FunctionName=name)
    try:
        lam.get_function(FunctionName=name)
        raise AssertionError("deleted")
    except lam.exceptions.ResourceNotFoundException:
        pass


def aws_cli(name):
    """The same operations through the aws cli, v1 and v2 where installed."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               AWS_PAGER="", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    # v1: scripts/setup.sh's venv (or this Python's awscli package); v2: Debian's /usr/bin/aws.
    cache = os.environ.get("THAW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "thaw")
    candidates = [[os.path.join(cache, "awscli-v1", "bin", "aws")], [sys.executable, "-m", "awscli"], ["/usr/bin/aws"]]
    clis = []
    for cmd in candidates:
        try:
            out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, env=env, timeout=60)
        except FileNotFoundError:
            continue
        version = (out.stdout + out.stderr).strip()
        major = version.split("/")[1][:1] if version.startswith("aws-cli/") else None
        if out.returncode == 0 and major and major not in [v.split("/")[1][:1] for _, v in clis]:
            clis.append((cmd, version))
    majors = sorted({v.split("/")[1][0] for _, v in clis})
    if majors != ["1", "2"]:
        print(f"SKIPPED: aws cli v1 and v2 not both installed (found {majors}; scripts/setup.sh installs both)")
    for cmd, version in clis:
        def aws(*args):
            out = subprocess.run(cmd + ["--endpoint-url", ENDPOINT, "--output", "json", "lambda", *args],
                                 capture_output=True, text=True, env=env, timeout=120)
            assert out.returncode == 0, (version, args, out.stdout, out.stderr)
            return json.loads(out.stdout) if out.stdout.strip() else None

        aws("update-function-configuration", "--function-name", name, "--description", version[:60],
            "--environment", "Variables={GREETING=cli}")
        aws("wait", "function-updated-v2", "--function-name", name)
        cfg = aws("get-function-configuration", "--function-name", name)
        assert cfg["Environment"]["Variables"]["GREETING"] == "cli" and cfg["LastUpdateStatus"] == "Successful", cfg
        assert name in [f["FunctionName"] for f in aws("list-functions")["Functions"]]
        assert aws("list-aliases", "--function-name", name)["Aliases"] == []
        assert aws("list-versions-by-function", "--function-name", name)["Versions"][0]["Version"] == "$LATEST"
        assert aws("get-account-settings")["AccountLimit"]["ConcurrentExecutions"] > 0
        assert "ProvisionedConcurrencyConfigs" in aws("list-provisioned-concurrency-configs", "--function-name", name)
        arn = cfg["FunctionArn"]
        aws("tag-resource", "--resource", arn, "--tags", "cli=yes")
        assert aws("list-tags", "--resource", arn)["Tags"]["cli"] == "yes"
        aws("untag-resource", "--resource", arn, "--tag-keys", "cli")
        aws("get-function-code-signing-config", "--function-name", name)
        u = aws("create-function-url-config", "--function-name", name, "--auth-type", "NONE")
        assert aws("get-function-url-config", "--function-name", name)["FunctionUrl"] == u["FunctionUrl"]
        aws("delete-function-url-config", "--function-name", name)
        aws("put-function-event-invoke-config", "--function-name", name, "--maximum-retry-attempts", "1")
        assert aws("get-function-event-invoke-config", "--function-name", name)["MaximumRetryAttempts"] == 1
        aws("delete-function-event-invoke-config", "--function-name", name)
        print(f"aws cli OK: {version}")


def main():
    lam = client()
    name = config_updates(lam)
    weighted_alias(lam, name)
    tags_and_account(lam, name)
    function_url(lam, name)
    permissions(lam, name)
    aws_cli(name)
    lam.delete_function(FunctionName=name)
    destinations(lam)
    terraform_replay(lam)
    print("deploy API black-box test: OK")


if __name__ == "__main__":
    main()
