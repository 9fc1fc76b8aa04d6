"""SnapStart-style runtime hooks, under the names of AWS's `snapshot_restore_py`.

    from snapshot_restore_py import register_before_snapshot, register_after_restore

    @register_before_snapshot
    def close_connections(): ...

    register_after_restore(reconnect, "db.example")

Before-snapshot hooks run once, after init, when thaw builds a snapshot
(AWS_LAMBDA_INITIALIZATION_TYPE=snap-start). After-restore hooks run in every
restored clone before its first invocation, after the guest CSPRNG and Python's
`random` have been reseeded with fresh host entropy.
"""

_before_snapshot = []
_after_restore = []


def _register(hooks, func, args, kwargs):
    hooks.append((func, args, kwargs))
    return func


def register_before_snapshot(func, *args, **kwargs):
    """Registers `func(*args, **kwargs)` to run before the snapshot (also a decorator)."""
    return _register(_before_snapshot, func, args, kwargs)


def register_after_restore(func, *args, **kwargs):
    """Registers `func(*args, **kwargs)` to run after each restore (also a decorator)."""
    return _register(_after_restore, func, args, kwargs)


def get_before_snapshot():
    """The registered before-snapshot hooks, in registration order."""
    return list(_before_snapshot)


def get_after_restore():
    """The registered after-restore hooks, in registration order."""
    return list(_after_restore)
