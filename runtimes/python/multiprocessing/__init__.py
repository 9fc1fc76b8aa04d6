"""`multiprocessing` for thaw's guest: importable, but no processes.

CPython for WASI cannot create processes (Lambda's /dev/shm is missing too, so
`Pool` and `Queue` fail there as well). Libraries that only import it (s3transfer,
for its process-pool downloader) work; starting a process raises `OSError`.
"""
import os as _os


class ProcessError(Exception):
    pass


class AuthenticationError(ProcessError):
    pass


class TimeoutError(ProcessError):
    pass


def _unsupported(*args, **kwargs):
    raise OSError(_os.strerror(58) if hasattr(_os, "strerror") else "not supported",
                  "processes cannot be created in thaw's sandbox")


def cpu_count():
    return 1


class _Current:
    name = "MainProcess"
    daemon = False
    pid = 1
    authkey = b""


def current_process():
    return _Current


def parent_process():
    return None


def active_children():
    return []


def get_start_method(allow_none=False):
    return None if allow_none else "spawn"


def set_start_method(method, force=False):
    pass


def get_context(method=None):
    import sys
    return sys.modules[__name__]


def freeze_support():
    pass


class Process:
    def __init__(self, *args, **kwargs):
        self.args = args

    start = _unsupported


Pool = Queue = JoinableQueue = SimpleQueue = Pipe = Manager = Lock = RLock = Event = _unsupported
Semaphore = BoundedSemaphore = Condition = Barrier = Value = Array = _unsupported
