"""`concurrent.futures.thread` for thaw's guest (CPython for WASI cannot start threads).

`ThreadPoolExecutor` keeps its API and its results, with sequential semantics: each
submitted call runs to completion inside `submit()` on the calling thread, and the
returned future is already done (result or exception). `map`, `as_completed`,
`wait`, `with` blocks and `shutdown` behave as with real threads for the usual
fan-out patterns. What cannot work: calls that wait for something only a later
submission (or the caller, after `submit` returns) would provide, e.g. a worker
blocking on a queue that is filled afterwards; such a call blocks (and the
invocation times out). I/O is not overlapped: N network calls take N round trips.
"""
import itertools
import threading
from concurrent.futures import _base

_counter = itertools.count().__next__


class BrokenThreadPool(_base.BrokenExecutor):
    """Raised when an initializer failed."""


class ThreadPoolExecutor(_base.Executor):
    def __init__(self, max_workers=None, thread_name_prefix="", initializer=None, initargs=()):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers or 32
        self._thread_name_prefix = thread_name_prefix or ("ThreadPoolExecutor-%d" % _counter())
        self._initializer = initializer
        self._initargs = initargs
        self._initialized = False
        self._broken = False
        self._shutdown = False
        self._shutdown_lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        with self._shutdown_lock:
            if self._broken:
                raise BrokenThreadPool(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        if not self._initialized:
            self._initialized = True
            if self._initializer is not None:
                try:
                    self._initializer(*self._initargs)
                except BaseException as e:
                    self._broken = "A thread initializer failed, the thread pool is not usable anymore"
                    raise BrokenThreadPool(self._broken) from e
        future = _base.Future()
        if not future.set_running_or_notify_cancel():
            return future
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)
        return future

    submit.__doc__ = _base.Executor.submit.__doc__

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._shutdown = True

    shutdown.__doc__ = _base.Executor.shutdown.__doc__
