"""CPU-bound loops timed inside Python; run as a thaw function (handler), by host
python3 (`python3 app.py`) or in host wasmtime (host_wasmtime.py)."""
import time, json
def fib(n): return n if n < 2 else fib(n-1) + fib(n-2)
def work():
    out = {}
    t=time.perf_counter(); s=0
    for i in range(1000000): s += i
    out['loop']=time.perf_counter()-t
    t=time.perf_counter(); fib(22); out['fib']=time.perf_counter()-t
    t=time.perf_counter()
    for i in range(20000): d={'a':i,'b':[i,i+1],'c':str(i)}; json.dumps(d)
    out['alloc_json']=time.perf_counter()-t
    t=time.perf_counter()
    for i in range(100000): "%s-%d" % ("x", i)
    out['fmt']=time.perf_counter()-t
    return out
def handler(event, context):
    work(); return work()
if __name__ == "__main__":
    work(); print(work())
