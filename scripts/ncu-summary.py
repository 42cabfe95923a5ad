#!/usr/bin/env python3
# Sums ncu --csv rows (gpu__time_duration.sum, dram__bytes_read.sum) by kernel name: the per-kernel
# time and bandwidth table of one decode step. Usage: scripts/ncu-summary.py NCU.csv
import csv, sys, collections, re
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: print("ncu: no rows"); sys.exit()
h = rows[0]; ki = h.index("Kernel Name"); mi = h.index("Metric Name"); vi = h.index("Metric Value"); ui = h.index("Metric Unit")
t = collections.defaultdict(float); n = collections.Counter(); b = collections.defaultdict(float)
scale = {"nsecond": 1, "usecond": 1e3, "msecond": 1e6, "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}
for r in rows[1:]:
    name = re.sub(r"\w+::", "", r[ki].replace("(anonymous namespace)::", "").split("(")[0]).replace("void ", "")[:40]
    v = float(r[vi].replace(",", "")) * scale.get(r[ui], 1)
    if r[mi] == "gpu__time_duration.sum": t[name] += v; n[name] += 1
    elif r[mi] == "dram__bytes_read.sum": b[name] += v
tot = sum(t.values())
print(f"ncu: {sum(n.values())} kernels, {tot/1e3:.1f} us of kernel time in one decode step")
for k in sorted(t, key=t.get, reverse=True)[:14]:
    print(f"ncu {k:40s} n={n[k]:4d} {t[k]/1e3:9.1f} us  {b[k]/1e6:8.1f} MB  {b[k]/t[k] if t[k] else 0:7.1f} GB/s")
# The first launches one by one (a layer's worth), with their grid size where it was collected.
ii = h.index("ID") if "ID" in h else 0
per = collections.OrderedDict()
for r in rows[1:]:
    d = per.setdefault(r[ii], {"name": r[ki].split("(")[0][-34:]})
    d[r[mi]] = float(r[vi].replace(",", "")) * scale.get(r[ui], 1)
for i, d in list(per.items())[:int(sys.argv[2]) if len(sys.argv) > 2 else 0]:
    tt = d.get("gpu__time_duration.sum", 0); bb = d.get("dram__bytes_read.sum", 0)
    print(f"  launch {i:>4s} {d['name']:34s} grid {d.get('launch__grid_size', 0):7.0f} {tt/1e3:7.1f} us {bb/1e6:8.2f} MB {bb/tt if tt else 0:7.1f} GB/s")
