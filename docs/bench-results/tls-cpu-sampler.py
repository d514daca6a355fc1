#!/usr/bin/env python3
"""tls-cpu-sampler.py OUT INTERVAL PID... — every INTERVAL seconds append one line
"t group_ticks system_busy_ticks other_builds" to OUT until SIGTERM:
group_ticks = utime+stime (fields 14+15 of /proc/PID/stat, all threads) summed over
the PIDs (a PID that is gone keeps its last value), system_busy_ticks = the busy
jiffies of /proc/stat's cpu line, other_builds = how many rustc/cc/ld/cargo
processes exist (a foreign build on the machine). Used by tls-bench.sh."""
import os, signal, sys, time

out, interval, pids = sys.argv[1], float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
last = {p: 0 for p in pids}
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def ticks(p):
    try:
        with open(f"/proc/{p}/stat") as f:
            s = f.read()
        rest = s[s.rindex(")") + 2:].split()  # fields from 3 (state) on
        return int(rest[11]) + int(rest[12])  # fields 14 utime, 15 stime
    except (OSError, ValueError, IndexError):
        return None


def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def builds():
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                c = f.read().strip()
        except OSError:
            continue
        if c in ("rustc", "cc", "cc1", "ld", "cargo", "ld.lld", "rust-lld", "collect2", "as"):
            n += 1
    return n


with open(out, "a", buffering=1) as f:
    while True:
        for p in pids:
            t = ticks(p)
            if t is not None:
                last[p] = t
        f.write("%.3f %d %d %d\n" % (time.time(), sum(last.values()), busy(), builds()))
        if stop:
            break
        time.sleep(interval)
