"""fetch: calls an HTTP API through the host (egress must allow it: --allow-net)."""
import json
import logging
import urllib.request

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    url = event["url"]
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read()
    logger.info("fetched %d bytes from %s", len(body), url)
    return {"status": r.status, "json": json.loads(body)}
