#!/usr/bin/env bash
# The main job: set this machine up, then boot the example functions in thaw
# microVMs and invoke them. Results (JSON) go to stdout, phase timings to stderr.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/setup.sh
THAW=./target/release/thaw

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "hello: cold boot (CPython + handler init) and one invoke"
$THAW run examples/hello --event '{"name": "thaw"}'

step "init_heavy: cold boot, then 100 invokes of the same instance (warm p50/p99)"
$THAW run examples/init_heavy --event '{}' --repeat 100

step "fails: the handler raises (error JSON, exit 1)"
$THAW run examples/fails --event '{}' || echo "(exit $?, as expected)" >&2

step "slow: an infinite loop stopped at its 1 s timeout"
$THAW run examples/slow --event '{}' --timeout 1 || echo "(exit $?, as expected)" >&2

step "fetch: a function calling an HTTP API on loopback (egress allowed to that port only)"
WWW="$(mktemp -d)"
echo '{"items": [1, 2, 3]}' > "$WWW/items.json"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$WWW" >/dev/null 2>&1 &
WWW_PID=$!
trap 'kill $WWW_PID 2>/dev/null || true; rm -rf "$WWW"' EXIT
python3 - "$PORT" <<'EOF_WAIT'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
EOF_WAIT
$THAW run examples/fetch --allow-net "127.0.0.1:$PORT" --event "{\"url\": \"http://127.0.0.1:$PORT/items.json\"}"
step "fetch without --allow-net: refused by the egress policy (error JSON, exit 1)"
$THAW run examples/fetch --event "{\"url\": \"http://127.0.0.1:$PORT/items.json\"}" || echo "(exit $?, as expected)" >&2
kill $WWW_PID 2>/dev/null || true

step "init_heavy: snapshot after init, then restore it in every memory mode"
ID=$($THAW snapshot examples/init_heavy)
for mode in eager mmap uffd uffd+prefetch shared; do
  $THAW run --from-snapshot "$ID" --mode "$mode" --event '{"key": 7}' >/dev/null
done
$THAW store stats

step "cold-start benchmark: every mode, ratios within this run (bench-out/)"
$THAW bench examples/init_heavy --modes all --iterations 5 --burst-size 50 --density 100 --out bench-out
