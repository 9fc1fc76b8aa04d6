"""thaw's Python bootstrap: Lambda's handler contract on top of the /run/thaw files.

Runs inside the microVM under CPython for WASI. WASI preview 1 has no sockets, so
the guest serves the Lambda Runtime API as files (see guest/src/vfs.rs):
next invocation -> /run/thaw/next + /run/thaw/event, response -> /run/thaw/response,
errors -> /run/thaw/error and /run/thaw/init_error, snapshot point ->
/run/thaw/restore. Handler semantics follow AWS Lambda's Python runtime.
"""
import json
import os
import sys
import time
import traceback

import _thaw_compat
import snapshot_restore_py  # imported at init so restores do not pay for it

_thaw_compat.install()

RUN = "/run/thaw/"


# Raw os calls, not open(): no buffered-file objects, fewer WASI calls per invoke.
_READ_FLAGS = os.O_RDONLY
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def _read(name):
    fd = os.open(RUN + name, _READ_FLAGS)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _write(name, body):
    fd = os.open(RUN + name, _WRITE_FLAGS)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _safe_str(exc):
    try:
        return str(exc)
    except BaseException:  # a hostile __str__ must not take the runtime down
        return "<str() of the %s raised>" % type(exc).__name__


def _error_body(exc, error_type=None):
    # Lambda shows the user's frames, not the runtime's.
    try:
        tb = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("/var/runtime/")]
        stack = traceback.format_list(tb)
    except BaseException:
        stack = []
    return {
        "errorMessage": _safe_str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": stack,
    }


def _log_error(body):
    sys.stderr.write("[ERROR] %s: %s\n" % (body["errorType"], body["errorMessage"]))
    for line in body["stackTrace"]:
        sys.stderr.write(line)
    sys.stderr.flush()


class LambdaContext:
    """The `context` argument, as in Lambda's Python runtime."""

    def __init__(self, header):
        self.aws_request_id = header.get("request_id", "")
        self.invoked_function_arn = header.get("invoked_function_arn", "")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = header.get("cognito_identity")
        self.client_context = header.get("client_context")
        self._deadline_ms = int(header.get("deadline_ms", 0))

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def __repr__(self):
        return "LambdaContext([aws_request_id=%s,function_name=%s,function_version=%s])" % (
            self.aws_request_id, self.function_name, self.function_version)


def _load_handler(spec):
    """Imports `module.function`; raises (error_type, message) on failure."""
    module_name, _, func_name = spec.rpartition(".")
    if not module_name:
        raise _InitError("Runtime.MalformedHandlerName", "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % spec)
    import importlib
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise _InitError("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_name, e))
    except SyntaxError as e:
        raise _InitError("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (module_name, e))
    fn = getattr(module, func_name, None)
    if fn is None:
        raise _InitError("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (func_name, module_name))
    return fn


class _InitError(Exception):
    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


def _init():
    _read("runtime_ready")
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
    try:
        return _load_handler(os.environ["_HANDLER"])
    except _InitError as e:
        body = {"errorMessage": str(e), "errorType": e.error_type, "requestId": "", "stackTrace": []}
    except Exception as e:  # an exception raised by the module's own init code
        body = _error_body(e)
    _log_error(body)
    _write("init_error", json.dumps(body).encode())
    return None


def _invoke(handler, header, raw):
    try:
        event = json.loads(raw) if raw else {}
    except (ValueError, RecursionError) as e:
        return "error", {"errorMessage": "Unable to parse event: %s" % _safe_str(e), "errorType": "Runtime.InvalidEvent", "requestId": "", "stackTrace": []}
    try:
        result = handler(event, LambdaContext(header))
    except BaseException as e:  # KeyboardInterrupt, SystemExit too: the instance stays warm
        body = _error_body(e)
        _log_error(body)
        return "error", body
    try:
        return "response", json.dumps(result).encode()
    except BaseException as e:
        body = {"errorMessage": "Unable to marshal response: %s" % _safe_str(e), "errorType": "Runtime.MarshalError", "requestId": "", "stackTrace": []}
        _log_error(body)
        return "error", body


def _probe(header, raw):
    """The runtime's own invoke path without the handler (a probe the host sends to a
    throwaway clone at build time to learn which memory an invocation touches before
    the first real one; the handler, which may have side effects, never runs)."""
    json.loads(raw) if raw else {}
    LambdaContext(header).get_remaining_time_in_millis()
    return "response", json.dumps(None).encode()


def _run_hooks(hooks):
    for func, args, kwargs in hooks:
        func(*args, **kwargs)


def _before_snapshot():
    """Runs before-snapshot hooks when this instance is being snapshotted."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "snap-start":
        return None
    try:
        _run_hooks(snapshot_restore_py.get_before_snapshot())
    except Exception as e:
        body = _error_body(e, "Runtime.BeforeSnapshotError")
        _log_error(body)
        _write("init_error", json.dumps(body).encode())
        return False
    return None


def _after_restore():
    """A restored clone: fresh randomness, then after-restore hooks.

    The guest CSPRNG behind os.urandom was already reseeded by the VMM; `random`
    is reseeded only if init imported it (importing it now would cost ~4 ms, and
    a later import seeds itself from the fresh os.urandom anyway).
    """
    if "random" in sys.modules:
        sys.modules["random"].seed()
    try:
        _run_hooks(snapshot_restore_py.get_after_restore())
    except Exception as e:
        body = _error_body(e, "Runtime.AfterRestoreError")
        _log_error(body)
        return body
    return None


def main():
    handler = _init()
    if handler is None:
        return
    if _before_snapshot() is False:
        return
    _read("function_ready")
    while True:
        header = json.loads(_read("next"))
        raw = _read("event")
        _thaw_compat.set_request_id(header.get("request_id", ""))
        if header.get("probe"):
            kind, body = _probe(header, raw)
            _write(kind, body)
            continue
        failed = _after_restore() if header.get("restored") else None
        if failed is not None:
            kind, body = "error", failed
        else:
            kind, body = _invoke(handler, header, raw)
        sys.stdout.flush()
        sys.stderr.flush()
        if kind == "error":
            body["requestId"] = header.get("request_id", "")
            body = json.dumps(body).encode()
        _write(kind, body)


main()
