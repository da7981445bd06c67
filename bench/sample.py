"""Sample a gunicorn server's processes while a load runs: peak summed RSS and CPU seconds.

    python bench/sample.py MASTER_PID OUTFILE   (stop it with SIGTERM; writes one JSON object)

The master and every child are re-read every 0.2 s from /proc (Linux), as the shared harness does.
"""
import json
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def family(master):
    """The master and its children (gunicorn workers)."""
    pids = [master]
    try:
        with open(f"/proc/{master}/task/{master}/children") as fh:
            pids += [int(p) for p in fh.read().split()]
    except OSError:
        pass
    return pids


def rss_and_cpu(pid):
    """(resident bytes, user+system CPU seconds) of one process; zeros if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            rss = int(fh.read().split()[1]) * PAGE
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return rss, (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0, 0.0


def main():
    master, out = int(sys.argv[1]), sys.argv[2]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    start_cpu = {p: rss_and_cpu(p)[1] for p in family(master)}
    last_cpu, peak = dict(start_cpu), 0
    while not stop:
        total = 0
        for pid in family(master):
            rss, cpu = rss_and_cpu(pid)
            total += rss
            last_cpu[pid] = cpu
            start_cpu.setdefault(pid, 0.0)
        peak = max(peak, total)
        time.sleep(0.2)
    cpu = sum(last_cpu[p] - start_cpu[p] for p in last_cpu)
    with open(out, "w") as fh:
        json.dump({"rss_peak_mib": round(peak / 2**20, 1), "server_cpu_s": round(cpu, 2)}, fh)


if __name__ == "__main__":
    main()
