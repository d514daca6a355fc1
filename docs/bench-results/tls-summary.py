#!/usr/bin/env python3
"""tls-summary.py FILE... — the tables of docs/benchmarks.md "The cost of TLS" from the
tls-*.txt files of tls-bench.sh. Files are grouped by label (brickfs-tls, brickfs-plain,
gluster-ssl, gluster-plain) in the order given (round 1 first)."""
import sys, collections

runs = collections.defaultdict(list)
for fn in sys.argv[1:]:
    fig, cpu, phase, rss, busy = {}, {}, {}, {}, ""
    label = None
    for l in open(fn):
        w = l.split()
        if l.startswith("# fsbench label="):
            label = w[2].split("=")[1]
        elif l.startswith("# cpu: ") and w[2].isdigit():
            rss[w[2]] = (w[3], float(w[4]), w[5], len(w) > 6)
        elif l.startswith("# phase: ") and w[2] != "figure":
            phase[w[2]] = (float(w[3]), float(w[4]))
        elif l.startswith("# machine: "):
            busy = l[len("# machine: "):].strip()
        elif not l.startswith("#") and len(w) >= 2:
            try:
                fig[w[0]] = float(w[1])
            except ValueError:
                pass
    runs[label].append(dict(fn=fn, fig=fig, phase=phase, rss=rss, busy=busy))

ORDER = ["brickfs-tls", "brickfs-plain", "gluster-ssl", "gluster-plain"]
FIGS = [("seq_write_MiBps", "MiB/s"), ("seq_read_MiBps", "MiB/s"),
        ("rand_write_4k_iops_j1", "IOPS"), ("rand_write_4k_iops_j4", "IOPS"),
        ("rand_read_4k_iops_j1", "IOPS"), ("rand_read_4k_iops_j4", "IOPS"),
        ("small_create_files_per_s", "files/s"), ("small_read_files_per_s", "files/s"),
        ("stat_files_per_s", "files/s"), ("mkdir_per_s", "dirs/s"), ("rm_files_per_s", "files/s"),
        ("rmdir_per_s", "dirs/s"), ("untar_s", "s"), ("retar_read_s", "s"), ("rm_tree_s", "s"),
        ("cpu_core_s", "CPU s")]
nr = max(len(v) for v in runs.values())


def val(lab, r, f):
    try:
        return runs[lab][r]["fig"][f]
    except (IndexError, KeyError):
        return None


def fmt(x):
    if x is None:
        return "–"
    return f"{x:.0f}" if x >= 1000 else (f"{x:.1f}" if x >= 10 else f"{x:.2f}")


UNIT = dict(FIGS)


def ratio(a, b, f):
    if a is None or b is None or b == 0:
        return "–"
    # rates: a/b; times (unit s): b/a, so that < 1 always means "the first is slower";
    # CPU seconds: a/b (> 1 = the first uses more CPU)
    return f"{(b / a if UNIT[f] == 's' else a / b):.2f}"


def cells(lab, f):
    return " / ".join(fmt(val(lab, r, f)) for r in range(nr))


def rcells(a, b, f):
    return " / ".join(ratio(val(a, r, f), val(b, r, f), f) for r in range(nr))


print("| figure | unit | brickfs TLS | brickfs plain | TLS/plain | Gluster SSL | Gluster plain | SSL/plain | brickfs TLS / Gluster SSL |")
print("|---|---|---|---|---|---|---|---|---|")
for f, u in FIGS:
    print(f"| {f} | {u} | {cells('brickfs-tls', f)} | {cells('brickfs-plain', f)} | {rcells('brickfs-tls', 'brickfs-plain', f)} "
          f"| {cells('gluster-ssl', f)} | {cells('gluster-plain', f)} | {rcells('gluster-ssl', 'gluster-plain', f)} "
          f"| {rcells('brickfs-tls', 'gluster-ssl', f)} |")

# daemon CPU per operation, from the phases (phase = from the previous fsbench line to this one)
GiB = 0.5  # SEQ_SIZE=512M
PER = [("seq_write_MiBps", "CPU s per GiB written", lambda ph, fig: ph[1] / GiB),
       ("seq_read_MiBps", "CPU s per GiB read (cold)", lambda ph, fig: ph[1] / GiB),
       ("rand_write_4k_iops_j4", "µs per 4k write (j4)", lambda ph, fig: 1e6 * ph[1] / (fig * 10)),
       ("rand_read_4k_iops_j1", "µs per 4k read (j1)", lambda ph, fig: 1e6 * ph[1] / (fig * 10)),
       ("small_create_files_per_s", "µs per create+4 KiB write", lambda ph, fig: 1e6 * ph[1] / 2000),
       ("small_read_files_per_s", "µs per small-file read", lambda ph, fig: 1e6 * ph[1] / 2000),
       ("mkdir_per_s", "µs per mkdir", lambda ph, fig: 1e6 * ph[1] / 1000),
       ("rm_files_per_s", "µs per unlink", lambda ph, fig: 1e6 * ph[1] / 2000),
       ("untar_s", "ms per untar entry (8,759)", lambda ph, fig: 1e3 * ph[1] / 8759),
       ("rm_tree_s", "ms per entry of rm -r", lambda ph, fig: 1e3 * ph[1] / 8759)]
print()
print("| daemon CPU per operation | brickfs TLS | brickfs plain | TLS/plain | Gluster SSL | Gluster plain | SSL/plain |")
print("|---|---|---|---|---|---|---|")
for f, name, fn in PER:
    def c(lab):
        out = []
        for r in range(nr):
            try:
                x = runs[lab][r]
                out.append(fn(x["phase"][f], x["fig"][f]))
            except (IndexError, KeyError):
                out.append(None)
        return out
    a, b, g, h = c("brickfs-tls"), c("brickfs-plain"), c("gluster-ssl"), c("gluster-plain")
    j = lambda xs: " / ".join(fmt(x) for x in xs)
    rr = lambda xs, ys: " / ".join(f"{x / y:.2f}" if x and y else "–" for x, y in zip(xs, ys))
    print(f"| {name} | {j(a)} | {j(b)} | {rr(a, b)} | {j(g)} | {j(h)} | {rr(g, h)} |")

print()
print("| peak RSS (VmHWM, MiB) | " + " | ".join(ORDER) + " |")
print("|---|---|---|---|---|")
def rssrow(name, pick):
    cols = []
    for lab in ORDER:
        vals = []
        for x in runs[lab]:
            v = [int(t[2]) / 1024 for p, t in x["rss"].items() if pick(t)]
            vals += v
        cols.append(f"{min(vals):.1f}–{max(vals):.1f}" if vals else "–")
    print(f"| {name} | " + " | ".join(cols) + " |")
rssrow("brick daemon (each)", lambda t: t[0] in ("brickd", "glusterfsd"))
rssrow("FUSE client", lambda t: t[0] in ("brickfs-mount",) or (t[0] == "glusterfs" and t[1] > 1))
rssrow("self-heal daemon", lambda t: (t[0] == "brickfs" and t[3]) or (t[0] == "glusterfs" and t[1] <= 1))
print()
for lab in ORDER:
    for r, x in enumerate(runs[lab]):
        print(f"- {lab} round {r + 1} ({x['fn'].split('/')[-1]}): {x['busy']}")
