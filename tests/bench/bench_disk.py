#!/usr/bin/env python3
"""bench_disk.py [--bindir BUILD] [--rounds N] [--creates N]: what the per-sandbox disk limit
(each home an ext4 image on a loop device, issue 9) costs the shipped sbx-executor, against the
same binary with --disk-limit off (homes are directories) measured in the same run, rounds
alternating. Prints, per mode:
  - CreateSandbox p50/p90 over gRPC for fresh projects, one call each, 50 ms apart (the warm
    pool and the blank images refill in between: the issue's "30 new projects" case);
  - the same as a burst (no pause: the pool and the blanks run dry);
  - a CreateSandbox asking for a non-default disk size (an image formatted on demand);
  - writing 256 MiB into the home with dd conv=fsync, MB/s.
Nothing is asserted. Needs root (namespaces, cgroups, loop devices)."""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sbx_harness as H  # noqa: E402


def pb():
    return H.stubs().executor_pb2


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def one_round(args, tag, creates):
    tmp = tempfile.mkdtemp(prefix="sbx-bench-disk-")
    ex = H.Server("executor", tmp=tmp, args=["--store", "127.0.0.1:1", "--log-level", "error",
                                             "--max-sandboxes", "200"] + args).start()
    try:
        H.wait_serving(ex.addr, timeout=30)
        ch = H.channel(ex.addr)
        st = H.stubs().executor_pb2_grpc.SandboxExecutorStub(ch)
        p = pb()
        time.sleep(2)  # pool and blanks filled
        paced, burst = [], []
        for i in range(creates):
            t = time.perf_counter()
            st.CreateSandbox(p.CreateSandboxRequest(project_id="%s-p%d" % (tag, i)), timeout=60)
            paced.append((time.perf_counter() - t) * 1000)
            time.sleep(0.05)
        time.sleep(2)
        for i in range(creates):
            t = time.perf_counter()
            st.CreateSandbox(p.CreateSandboxRequest(project_id="%s-b%d" % (tag, i)), timeout=60)
            burst.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        st.CreateSandbox(p.CreateSandboxRequest(project_id="%s-size" % tag,
                                                limits=p.SandboxLimits(disk_bytes=1 << 30)),
                         timeout=60)
        sized = (time.perf_counter() - t) * 1000
        r = st.Run(p.ExecRequest(project_id="%s-size" % tag, shell=(
            "s=$(date +%s%N); dd if=/dev/zero of=big bs=1M count=256 conv=fsync 2>/dev/null; "
            "e=$(date +%s%N); echo $(( (e - s) / 1000000 ))")), timeout=120)
        ms = int(r.stdout.strip() or b"0")
        mbs = 256 / (ms / 1000.0) if ms > 0 else 0.0
        ch.close()
        return paced, burst, sized, mbs
    finally:
        ex.stop()
        H.kill_all()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--creates", type=int, default=30)
    a = ap.parse_args()
    if a.bindir:
        H.parse_bindir(["--bindir", a.bindir])
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return 77
    modes = [("dirs", ["--disk-limit", "off"]), ("images", [])]
    res = {m: {"paced": [], "burst": [], "sized": [], "mbs": []} for m, _ in modes}
    for rnd in range(a.rounds):
        for m, args in modes:
            paced, burst, sized, mbs = one_round(args, "%s%d" % (m, rnd), a.creates)
            res[m]["paced"] += paced
            res[m]["burst"] += burst
            res[m]["sized"].append(sized)
            res[m]["mbs"].append(mbs)
    print("sbx-executor CreateSandbox over gRPC (Python client), %d rounds x %d fresh projects, "
          "%d cores, kernel %s" % (a.rounds, a.creates, os.cpu_count(), os.uname().release))
    print("%-40s %12s %12s %8s" % ("", "dirs (off)", "images", "ratio"))

    def row(name, f, unit="ms"):
        d, i = f(res["dirs"]), f(res["images"])
        print("%-40s %9.2f %-2s %9.2f %-2s %7.2fx" % (name, d, unit, i, unit, i / d if d else 0))
    row("CreateSandbox p50, 50 ms apart", lambda r: statistics.median(r["paced"]))
    row("CreateSandbox p90, 50 ms apart", lambda r: pct(r["paced"], 0.9))
    row("CreateSandbox p50, burst", lambda r: statistics.median(r["burst"]))
    row("CreateSandbox p90, burst", lambda r: pct(r["burst"], 0.9))
    row("CreateSandbox, 1 GiB disk (not default)", lambda r: statistics.median(r["sized"]))
    row("dd 256 MiB conv=fsync into the home", lambda r: statistics.median(r["mbs"]), "MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
