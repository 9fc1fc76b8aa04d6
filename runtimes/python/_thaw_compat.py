"""What CPython for WASI lacks and Lambda functions expect, installed by the bootstrap.

- `_socket` is thaw's host-socket module (`_thaw_socket`), so `socket`, `ssl`
  (`/var/runtime/ssl.py`, TLS on the host), `http.client`, `urllib`, `asyncio`,
  `urllib3`, `requests` and botocore work.
- `concurrent.futures.thread` exists again (`_thaw_futures_thread`: sequential
  semantics), so `ThreadPoolExecutor` and `loop.run_in_executor` work.
- `threading.Thread.start()` runs the thread's target to completion at once on the
  calling thread (WASI has no threads); `join()` and `is_alive()` then behave as
  for a finished thread. A target that waits for the caller to do something after
  `start()` returns blocks.
- Lambda's logging contract: the root logger gets Lambda's handler and format
  (`[LEVEL]\\t<time>\\t<request id>\\t<message>`, or one JSON object per record when
  `AWS_LAMBDA_LOG_FORMAT=JSON`), level from `AWS_LAMBDA_LOG_LEVEL`.

The module replacements are resolved lazily by a meta-path finder, so a function
that never imports `socket` or `threading` pays nothing for them.
"""
import importlib.abc
import importlib.util
import sys

_RUNTIME = "/var/runtime/"
_REPLACE = {"_socket": "_thaw_socket.py",
            "concurrent.futures.thread": "_thaw_futures_thread.py"}


class _Finder(importlib.abc.MetaPathFinder):
    """Serves thaw's replacements and patches `threading` after it loads."""

    def find_spec(self, name, path=None, target=None):
        if name in _REPLACE:
            return importlib.util.spec_from_file_location(name, _RUNTIME + _REPLACE[name])
        if name == "threading":
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    spec.loader = _PatchingLoader(spec.loader)
                    return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _patch_threading(module)


def _patch_threading(threading):
    def start(self):
        if not self._initialized:
            raise RuntimeError("thread.__init__() not called")
        if self._started.is_set():
            raise RuntimeError("threads can only be started once")
        self._started.set()
        try:
            self.run()
        except SystemExit:
            pass
        except BaseException:
            self._invoke_excepthook(self)
        finally:
            self._is_stopped = True
            self._tstate_lock = None

    threading.Thread.start = start


class _RequestId:
    value = ""


def _install_logging():
    import logging
    import os
    import time

    class LambdaFormatter(logging.Formatter):
        converter = time.gmtime

        def format(self, record):
            record.aws_request_id = _RequestId.value
            return super().format(record)

    class JsonFormatter(logging.Formatter):
        """`LoggingConfig.LogFormat = JSON`: one JSON object per record, as Lambda's runtime
        writes them (timestamp, level, message, logger, requestId; exceptions add errorType,
        errorMessage, stackTrace)."""
        converter = time.gmtime

        def format(self, record):
            import json
            import traceback
            out = {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + ".%03dZ" % record.msecs,
                "level": {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(record.levelname, record.levelname),
                "message": record.getMessage(),
                "logger": record.name,
                "requestId": _RequestId.value,
            }
            if record.exc_info and record.exc_info[0] is not None:
                out["errorType"] = record.exc_info[0].__name__
                out["errorMessage"] = str(record.exc_info[1])
                out["stackTrace"] = traceback.format_tb(record.exc_info[2])
            return json.dumps(out, default=str)

    handler = logging.StreamHandler(sys.stdout)
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON":
        handler.setFormatter(JsonFormatter())
    else:
        fmt = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"
        handler.setFormatter(LambdaFormatter(fmt, "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers = [handler]
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"):
        root.setLevel({"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level))


def set_request_id(request_id):
    """The request id the log lines of this invocation carry."""
    _RequestId.value = request_id


def install():
    sys.meta_path.insert(0, _Finder())
    sys.modules.pop("_socket", None)
    _install_logging()
