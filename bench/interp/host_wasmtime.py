"""Runs bench/interp/app.py in the same python-3.12.0.wasm thaw's guest runs, but in
wasmtime on the host (wasmtime-py), with wasmtime's default memory (guard pages,
signal-based bounds checks) or with thaw's settings (no reservation, no guard,
explicit bounds checks). Separates what the interpreter build costs from what
thaw's guest adds (docs/PERFORMANCE.md, "Where the function's CPU time goes").

    python3 -m venv /tmp/wtvenv && /tmp/wtvenv/bin/pip install wasmtime==50.0.1
    /tmp/wtvenv/bin/python bench/interp/host_wasmtime.py default|explicit [python.wasm]
"""
import os
import sys

import wasmtime
from wasmtime import Config, Engine, Linker, Module, Store, WasiConfig

here = os.path.dirname(os.path.abspath(__file__))
wasm = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "../../third_party/python-3.12.0.wasm")
cfg = Config()
if sys.argv[1] == "explicit":
    cfg.memory_reservation = 0
    cfg.memory_guard_size = 0
    cfg.signals_based_traps = False
cfg.cranelift_opt_level = "speed"
engine = Engine(cfg)
module = Module.from_file(engine, wasm)
linker = Linker(engine)
linker.define_wasi()
store = Store(engine)
wasi = WasiConfig()
wasi.argv = ["python", "/interp/app.py"]
wasi.preopen_dir(here, "/interp")
wasi.inherit_stdout()
wasi.inherit_stderr()
store.set_wasi(wasi)
instance = linker.instantiate(store, module)
try:
    instance.exports(store)["_start"](store)
except wasmtime.ExitTrap:
    pass
