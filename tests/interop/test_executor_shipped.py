#!/usr/bin/env python3
"""The shipped sbx-store and sbx-executor started as an operator starts them: default flags apart
from ephemeral addresses, temporary data dirs and the store address (issue 9).

- WarmPoolTest: the executor's warm pool is on by default and observable: Sandbox.from_pool is
  true for a sandbox claimed from it, /metrics counts the claims and misses, and the start-up
  log says `warm pool size=N`.
- StartupSmokeTest: store and executor log nothing at warn or error but the documented
  loopback-without-keys notice, with another executor's cgroups left on the host.
- RestartTest: an executor kill -9'd with a background loop running and restarted on the same
  data dir shows its sandboxes as STOPPED (not NOT_FOUND), records the loop in the store's
  history as killed (SIGKILL, 137) and removes the sandbox cgroups the dead run left.

Run: /usr/bin/python3 tests/interop/test_executor_shipped.py --bindir build [TestClass[.test]]
Needs root (sandboxes use user namespaces, cgroups, loop devices).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import sbx_harness as H  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode
LOOPBACK_NOTICE = "no --api-keys: accepting unauthenticated calls on loopback only"
METRICS_RE = re.compile(r'msg="metrics on (http://[^/"]+)/metrics"')


def pb():
    return H.stubs().executor_pb2


def store_pb():
    return H.stubs().store_pb2


class Cluster:
    """One shipped store and one shipped executor (restartable on the same data dir)."""

    def __init__(self, tmp, metrics=True):
        self.tmp = tmp
        self.metrics = metrics
        self.exec_data = os.path.join(tmp, "executor-data")
        self.store = H.Server("store", tmp=tmp).start()
        H.wait_serving(self.store.addr)
        self.sch = H.channel(self.store.addr)
        self.sstub = H.stubs().store_pb2_grpc.StateStoreStub(self.sch)
        self.ex = None
        self.runs = []  # every executor Server started, for the log checks

    def start_executor(self):
        args = ["--store", self.store.addr]
        if self.metrics:
            args += ["--metrics-listen", "127.0.0.1:0"]
        self.ex = H.Server("executor", tmp=self.tmp, data_dir=self.exec_data, args=args).start()
        self.runs.append(self.ex)
        H.wait_serving(self.ex.addr, timeout=30)
        self.ch = H.channel(self.ex.addr)
        self.stub = H.stubs().executor_pb2_grpc.SandboxExecutorStub(self.ch)
        return self.ex

    def stop_executor(self, sig=None):
        self.ch.close()
        if sig is None:
            return self.ex.stop(timeout=30)
        return self.ex.stop(sig, timeout=30)

    def close(self):
        self.sch.close()
        return self.store.stop(timeout=30)

    def metrics_url(self):
        m = METRICS_RE.search(self.ex.stderr_text())
        assert m, "no metrics line in the executor's log"
        return m.group(1) + "/metrics"

    def metric(self, name):
        with urllib.request.urlopen(self.metrics_url(), timeout=5) as r:
            text = r.read().decode()
        m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
        assert m, "metric %s missing from:\n%s" % (name, text)
        return int(m.group(1))

    def create(self, project):
        return self.stub.CreateSandbox(pb().CreateSandboxRequest(project_id=project), timeout=30)


def warn_lines(srv):
    """Every level=warn or level=error line but the documented loopback-without-keys notice,
    and any sanitizer report."""
    return [l for l in srv.stderr_text().splitlines()
            if ("level=warn" in l or H.BAD_OUTPUT.search(l)) and LOOPBACK_NOTICE not in l]


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (user namespaces, cgroups, loop devices)")
        cls.tmp = tempfile.mkdtemp(prefix="sbx-shipped-test-")

    @classmethod
    def tearDownClass(cls):
        H.kill_all()
        shutil.rmtree(cls.tmp, ignore_errors=True)


class WarmPoolTest(Base):
    """The pool runs by default, claims are visible in Sandbox.from_pool and /metrics."""

    def test_from_pool_and_metrics(self):
        c = Cluster(self.tmp)
        try:
            ex = c.start_executor()
            m = re.search(r'level=info comp=executor msg="warm pool" size=(\d+)',
                          ex.stderr_text())
            self.assertIsNotNone(m, "no `warm pool size=N` line at info:\n" + ex.stderr_text())
            size = int(m.group(1))
            self.assertGreater(size, 0)
            deadline = time.monotonic() + 30
            while c.metric("sbx_executor_pool_ready") < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertGreaterEqual(c.metric("sbx_executor_pool_ready"), 1)
            claims0 = c.metric("sbx_executor_pool_claims_total")
            misses0 = c.metric("sbx_executor_pool_misses_total")
            flags = []
            for i in range(3):
                s = c.create("wp-%d" % i)
                self.assertEqual(s.state, pb().SANDBOX_STATE_RUNNING)
                flags.append(s.from_pool)
                g = c.stub.GetSandbox(pb().GetSandboxRequest(sandbox_id=s.sandbox_id), timeout=10)
                self.assertEqual(g.from_pool, s.from_pool)
            self.assertTrue(flags[0], "the first sandbox after the pool filled was built cold")
            claims = c.metric("sbx_executor_pool_claims_total") - claims0
            misses = c.metric("sbx_executor_pool_misses_total") - misses0
            self.assertEqual(claims, sum(flags))
            self.assertEqual(claims + misses, 3)
            # a template sandbox never comes from the pool: from_pool must be able to say false
            # (covered by misses above when the pool ran dry); the same project again is the
            # same sandbox, not a new claim
            again = c.create("wp-0")
            self.assertEqual(c.metric("sbx_executor_pool_claims_total") - claims0, claims)
            self.assertEqual(again.from_pool, flags[0])
            self.assertEqual(c.stop_executor(), 0)
        finally:
            H.kill_all()
        self.assertEqual(warn_lines(c.ex), [])


class StartupSmokeTest(Base):
    """Both shipped binaries with default flags log nothing at warn or error (but the loopback
    notice) through start-up, a sandbox's life and SIGTERM, even with another executor's
    sandbox cgroups left on the host by a kill -9 (before each executor had its own cgroup
    parent, a new executor on the freed uid slot found those groups, warned "removing a stale
    sandbox cgroup" and removed them)."""

    def test_no_warnings(self):
        other_tmp = os.path.join(self.tmp, "other")
        os.makedirs(other_tmp)
        other = Cluster(other_tmp, metrics=False)
        other.start_executor()
        other.create("left-behind")
        other.ex.kill()  # kill -9: its pool inits and sandbox groups are left behind
        c = Cluster(self.tmp, metrics=False)
        try:
            c.start_executor()
            time.sleep(1)  # the pool fills
            s = c.create("smoke")
            self.assertEqual(s.state, pb().SANDBOX_STATE_RUNNING)
            r = c.stub.Run(pb().ExecRequest(project_id="smoke", shell="echo hi"), timeout=30)
            self.assertEqual(r.stdout, b"hi\n")
            self.assertEqual(c.stop_executor(), 0)
            self.assertEqual(c.close(), 0)
        finally:
            H.kill_all()
        for srv in (c.store, c.ex):
            self.assertEqual(warn_lines(srv), [], "%s logged:\n%s" % (srv.service,
                                                                       srv.stderr_text()))
        self.assertTrue(any(LOOPBACK_NOTICE in l for l in c.ex.stderr_text().splitlines()))
        # the other executor, restarted on its data dir, removes what its first run left
        other.store = H.Server("store", tmp=other.tmp).start()
        other.start_executor()
        self.assertIn("removed the sandbox cgroups a previous run left", other.ex.stderr_text())
        self.assertEqual(other.stop_executor(), 0)
        H.kill_all()


def cgroup_parent(data_dir):
    """The executor's cgroup parent: "sbx-" + FNV-1a 64 of its data dir's real path, in hex."""
    h = 14695981039346656037
    for b in os.path.realpath(data_dir).encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "sbx-%016x" % h


def cgroup_groups(parent):
    """{path: inode} of every group directly below the parent, in every hierarchy."""
    out = subprocess.run(["find", "/sys/fs/cgroup", "-maxdepth", "6", "-type", "d", "-name",
                          parent], capture_output=True, text=True).stdout.split()
    groups = {}
    for d in out:
        for n in os.listdir(d):
            p = os.path.join(d, n)
            if os.path.isdir(p):
                groups[p] = os.stat(p).st_ino
    return groups, out


class RestartTest(Base):
    """kill -9 with a background loop running, restart on the same data dir."""

    def history(self, c, project):
        return c.sstub.ListExecutions(store_pb().ListExecutionsRequest(project_id=project),
                                      timeout=10).records

    def test_kill9_restart(self):
        c = Cluster(self.tmp, metrics=False)
        p = pb()
        try:
            c.start_executor()
            loop = c.create("rs-loop")
            idle = c.create("rs-idle")
            r = c.stub.Run(p.ExecRequest(project_id="rs-loop", background=True, tag="loop",
                                         shell="while :; do sleep 0.1; done"), timeout=30)
            self.assertGreater(r.pid, 0)
            done = c.stub.Run(p.ExecRequest(project_id="rs-idle", shell="echo done"),
                              timeout=30)
            self.assertEqual(done.stdout, b"done\n")
            parent = cgroup_parent(c.exec_data)
            before, _ = cgroup_groups(parent)
            self.assertGreaterEqual(len(before), 2, "no sandbox cgroups under %s" % parent)
            c.ch.close()
            c.ex.kill()  # kill -9

            ex = c.start_executor()
            log = ex.stderr_text()
            m = re.search(r'removed the sandbox cgroups a previous run left" removed=(\d+)', log)
            self.assertIsNotNone(m, log)
            self.assertGreaterEqual(int(m.group(1)), len(before))
            after, _ = cgroup_groups(parent)
            for path, ino in before.items():  # gone, or a group of the new run (new inode)
                self.assertNotEqual(after.get(path), ino, "left over: " + path)
            # (a) STOPPED, not NOT_FOUND, by id and in the listing
            for s in (loop, idle):
                g = c.stub.GetSandbox(p.GetSandboxRequest(sandbox_id=s.sandbox_id), timeout=10)
                self.assertEqual(g.state, p.SANDBOX_STATE_STOPPED)
                self.assertEqual((g.project_id, g.created_at_unix_ms),
                                 (s.project_id, s.created_at_unix_ms))
                self.assertEqual(g.limits.memory_bytes, s.limits.memory_bytes)
            ls = c.stub.ListSandboxes(p.ListSandboxesRequest(include_stopped=True), timeout=10)
            states = {s.sandbox_id: s.state for s in ls.sandboxes}
            self.assertEqual(states.get(loop.sandbox_id), p.SANDBOX_STATE_STOPPED)
            self.assertEqual(states.get(idle.sandbox_id), p.SANDBOX_STATE_STOPPED)
            # (b) the loop's history record: killed by SIGKILL
            deadline = time.monotonic() + 20
            recs = []
            while time.monotonic() < deadline:
                recs = [x for x in self.history(c, "rs-loop") if x.tag == "loop"]
                if recs:
                    break
                time.sleep(0.2)
            self.assertEqual(len(recs), 1, "no history record of the killed loop")
            self.assertEqual((recs[0].signal, recs[0].exit_code), (9, 137))
            self.assertEqual(recs[0].sandbox_id, loop.sandbox_id)
            self.assertGreater(recs[0].duration_us, 0)
            self.assertIn("background commands the previous run left running recorded as "
                          "killed", log)
            # the project runs again in a new sandbox; the old one stays STOPPED
            again = c.stub.Run(p.ExecRequest(project_id="rs-loop", shell="echo back"),
                               timeout=30)
            self.assertEqual(again.stdout, b"back\n")
            self.assertNotEqual(again.sandbox_id, loop.sandbox_id)
            g = c.stub.GetSandbox(p.GetSandboxRequest(sandbox_id=loop.sandbox_id), timeout=10)
            self.assertEqual(g.state, p.SANDBOX_STATE_STOPPED)
            self.assertEqual(c.stop_executor(), 0)
            self.assertEqual(warn_lines(ex), [], ex.stderr_text())
            # a clean stop leaves no group and no parent behind
            left, parents = cgroup_groups(parent)
            self.assertEqual((left, parents), ({}, []))
            # and a clean restart still shows every sandbox as STOPPED, the loop recorded once
            c.start_executor()
            ls = c.stub.ListSandboxes(p.ListSandboxesRequest(include_stopped=True), timeout=10)
            self.assertEqual(len(ls.sandboxes), 3)
            self.assertTrue(all(s.state == p.SANDBOX_STATE_STOPPED for s in ls.sandboxes))
            time.sleep(1)
            self.assertEqual(len([x for x in self.history(c, "rs-loop") if x.tag == "loop"]), 1)
            self.assertEqual(c.stop_executor(), 0)
        finally:
            H.kill_all()


if __name__ == "__main__":
    sys.argv = H.parse_bindir(sys.argv)
    unittest.main(verbosity=2)
