"""`multiprocessing.managers`: importable; a manager cannot start (no processes)."""
from . import _unsupported


class BaseManager:
    def __init__(self, *args, **kwargs):
        pass

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        pass

    start = connect = get_server = _unsupported

    def __enter__(self):
        _unsupported()

    def __exit__(self, *exc):
        return False


class SyncManager(BaseManager):
    pass


class BaseProxy:
    pass
