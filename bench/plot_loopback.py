#!/usr/bin/python3
# plot_loopback.py LOOPBACK_JSON OUT_PNG: draws docs/performance-batch.png from
# the JSON of `loopback_bench --benchmark_out=LOOPBACK_JSON`. Needs matplotlib
# (Debian: python3-matplotlib; not part of setup.sh).
import sys
import json, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
d=json.load(open(sys.argv[1]))
series={}
kernel=None
for b in d['benchmarks']:
    parts=dict(p.split(':') for p in b['name'].split('/')[1:3])
    series.setdefault(int(parts['inflight']),[]).append((int(parts['batch']), b['blobs_per_s']))
    kernel=b['kernel_1core']
fig,ax=plt.subplots(figsize=(7,4.5))
for inf in sorted(series):
    pts=sorted(series[inf])
    ax.plot([p[0] for p in pts],[p[1]/1e3 for p in pts],marker='o',label=f'{inf} in flight')
ax.axhline(kernel/1e3,color='k',ls='--',lw=1,label='kernel, 1 core (same run)')
ax.axhline(0.6*kernel/1e3,color='gray',ls=':',lw=1,label='target 0.6 x kernel')
ax.set_xscale('log',base=2); ax.set_xlabel('batch size (blobs per ReencryptBatch)')
ax.set_ylabel('thousand blobs/s'); ax.set_title('One hsmsim-unit over loopback (2 vCPU, shared, noisy)')
ax.legend(fontsize=8); ax.grid(alpha=.3)
fig.tight_layout(); fig.savefig(sys.argv[2], dpi=110)
print(kernel)
