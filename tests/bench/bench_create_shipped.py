#!/usr/bin/env python3
"""bench_create_shipped.py [--bindir BUILD] [--creates N] [--gap-ms MS]: CreateSandbox latency of
the shipped sbx-executor over gRPC as an operator runs it (default flags apart from addresses,
a temporary data dir and a real sbx-store), the figure issue 9 asks for: N new projects (default
30), one call each, GAP ms apart (default 50: the warm pool refills in between), then the same as
a burst (no gap: the pool runs dry after --pool-size claims). Prints p50/p99 per mode, how many
came from the pool (Sandbox.from_pool) and the ratio of p50 to the 5 ms goal. Nothing is
asserted. Needs root (namespaces, cgroups, loop devices)."""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sbx_harness as H  # noqa: E402

GOAL_MS = 5.0


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def creates(stub, prefix, n, gap_s):
    p = H.stubs().executor_pb2
    ms, pooled = [], 0
    for i in range(n):
        t = time.perf_counter()
        s = stub.CreateSandbox(p.CreateSandboxRequest(project_id="%s%d" % (prefix, i)),
                               timeout=60)
        ms.append((time.perf_counter() - t) * 1000)
        pooled += bool(s.from_pool)
        if gap_s:
            time.sleep(gap_s)
    return ms, pooled


def report(name, ms, pooled):
    p50, p99 = pct(ms, 0.5), pct(ms, 0.99)
    print("BENCH create_shipped %-6s n=%d from_pool=%d p50=%.2f ms p99=%.2f ms "
          "p50/goal(%.0f ms)=%.2f%s" % (name, len(ms), pooled, p50, p99, GOAL_MS, p50 / GOAL_MS,
                                        " MET" if p50 <= GOAL_MS else " MISSED"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", default=os.environ.get("SBX_BUILD_DIR", "build"))
    ap.add_argument("--creates", type=int, default=30)
    ap.add_argument("--gap-ms", type=float, default=50)
    a = ap.parse_args()
    H.parse_bindir(["x", "--bindir", a.bindir])
    os.environ.setdefault("SBX_PROTO_DIR", os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "..", "..", "proto"))
    tmp = tempfile.mkdtemp(prefix="sbx-bench-create-")
    try:
        store = H.Server("store", tmp=tmp, args=["--log-level", "error"]).start()
        ex = H.Server("executor", tmp=tmp, args=["--store", store.addr, "--log-level",
                                                 "error"]).start()
        H.wait_serving(ex.addr, timeout=30)
        with H.channel(ex.addr) as ch:
            stub = H.stubs().executor_pb2_grpc.SandboxExecutorStub(ch)
            time.sleep(2)  # the pool and the blank home images filled
            ms, pooled = creates(stub, "paced-", a.creates, a.gap_ms / 1000.0)
            report("paced", ms, pooled)
            time.sleep(2)
            ms, pooled = creates(stub, "burst-", a.creates, 0)
            report("burst", ms, pooled)
        ex.stop(timeout=60)
        store.stop(timeout=30)
    finally:
        H.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
