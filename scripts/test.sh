#!/usr/bin/env bash
# Sets this machine up, then runs every test of the workspace.
#
# Tests run in the release profile: setup.sh builds the release profile anyway (for
# `thaw`), so release tests reuse those artifacts, while a debug run would compile
# the whole dependency tree (wasmtime + cranelift) a second time. On 2 cores that
# second build costs more than any test saves. KVM tests print
# `SKIPPED: no /dev/kvm` where /dev/kvm is missing. Formatting and clippy are checked last.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/setup.sh
JOBS="${THAW_JOBS:-2}"

[ -e /dev/kvm ] || echo "test: WARNING: no /dev/kvm: KVM tests will print SKIPPED" >&2
echo "test: cargo test --workspace --release -j$JOBS" >&2
cargo test --workspace --release -j"$JOBS"
# The tests' snapshots lived in temporary stores: their working-set images on the
# hugetlbfs mount name nothing that still exists, and hold huge pages until deleted.
rm -f "${THAW_HUGETLBFS:-/dev/hugepages}"/thaw-ws-* 2>/dev/null || true

echo "test: cargo fmt --all -- --check (and the guest's own workspace)" >&2
cargo fmt --all -- --check
(cd guest && cargo fmt --all -- --check)

echo "test: cargo clippy --workspace --all-targets --release -- -D warnings" >&2
cargo clippy --workspace --all-targets --release -j"$JOBS" -- -D warnings
