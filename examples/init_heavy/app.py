"""init_heavy: imports a dozen stdlib modules and builds a large table at init,
the kind of function whose cold start snapshots remove."""
import base64
import collections
import datetime
import decimal
import fractions
import hashlib
import json
import random
import re
import statistics
import textwrap
import uuid
import zlib

WORDS = re.compile(r"[a-z]+")
# A large table built at init: 200k entries.
TABLE = {i: hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(200_000)}
COUNTS = collections.Counter(v[0] for v in TABLE.values())


def handler(event, context):
    key = int(event.get("key", 42)) if isinstance(event, dict) else 42
    return {
        "key": key,
        "value": TABLE.get(key),
        "entries": len(TABLE),
        "most_common": COUNTS.most_common(1)[0][0],
        "mean": statistics.mean([1, 2, 3, 4]),
        "today": datetime.date(2026, 1, 1).isoformat(),
        "b64": base64.b64encode(zlib.compress(b"thaw")).decode(),
        "frac": str(fractions.Fraction(3, 4) + decimal.Decimal(1).as_integer_ratio()[0]),
        "uuid_version": uuid.uuid4().version,
        "random_ok": 0.0 <= random.random() < 1.0,
        "wrapped": textwrap.shorten("thaw restores pre-initialised microVMs", width=20),
        "json": json.dumps({"a": 1}),
    }
