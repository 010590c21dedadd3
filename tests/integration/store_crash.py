#!/usr/bin/python3
"""Crash test of sbx-store (issue 3, "Durability and concurrency").

8 client threads write continuously through gRPC: KV Set of unique keys and AppendExecution
(with unique record ids) to a few projects. Every ACKNOWLEDGED write is recorded. After ~2 s
the test kill -9's the store mid-stream, restarts it on the same data dir and checks that
  - every acknowledged KV write is there with its value;
  - every acknowledged append is there at the seq it was acknowledged with;
  - each project's sequences are gapless 1..N (GetProject agrees), no record id twice;
  - anything present that was not acknowledged is one of the writes in flight at the kill.
The kill/restart cycle runs 3 times on one data dir (--sync on, the default), then on a new
data dir with --sync off (a kill -9 is a process crash, which --sync off must survive too),
and once with --commit-mode direct.

Run:  /usr/bin/python3 tests/integration/store_crash.py --bindir build [Test ...]
"""
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

import sbx_harness as h  # noqa: E402

grpc = h.grpc
SC = grpc.StatusCode
THREADS = 8
PROJECTS = ["crash-a", "crash-b", "crash-c"]
WRITE_SECONDS = 2.0


def pb():
    return h.stubs().store_pb2


def note(msg):
    sys.stderr.write("  note: %s\n" % msg)
    sys.stderr.flush()


class Ledger:
    """What the clients know: acknowledged writes and the writes whose outcome is unknown."""

    def __init__(self):
        self.mu = threading.Lock()
        self.kv = {}             # key -> value (acknowledged)
        self.kv_unknown = {}     # key -> value (failed / in flight at the kill)
        self.hist = {}           # project -> {seq: record_id} (acknowledged)
        self.hist_unknown = {}   # record_id -> project
        self.rid_project = {}    # record_id -> project (every attempt)


class Writers:
    """THREADS writer threads against one server address until stop() or the server dies."""

    def __init__(self, test, addr, ledger, cycle, tag):
        self.test, self.addr, self.ledger, self.cycle, self.tag = test, addr, ledger, cycle, tag
        self.killing = threading.Event()
        self.errors = []        # failures before the kill: a test failure
        self.acked = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(THREADS)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self, timeout=60):
        for t in self.threads:
            t.join(timeout)
        if any(t.is_alive() for t in self.threads):
            raise AssertionError("writer threads still running %d s after the kill" % timeout)

    def run(self, i):
        L = self.ledger
        ch = h.channel(self.addr)
        st = h.stubs().store_pb2_grpc.StateStoreStub(ch)
        n = 0
        try:
            while True:
                n += 1
                name = "%s-c%d-w%d-%d" % (self.tag, self.cycle, i, n)
                if n % 2:
                    value = ("value of %s " % name).encode() * (1 + n % 7)
                    with L.mu:
                        L.kv_unknown[name] = value
                    try:
                        st.Set(pb().KvSetRequest(key=name, value=value), timeout=15)
                    except grpc.RpcError as e:
                        if not self.killing.is_set():
                            self.errors.append("Set %s: %s %s" % (name, e.code(), e.details()))
                        return
                    with L.mu:
                        del L.kv_unknown[name]
                        L.kv[name] = value
                else:
                    project = PROJECTS[(i + n) % len(PROJECTS)]
                    with L.mu:
                        L.hist_unknown[name] = project
                        L.rid_project[name] = project
                    try:
                        r = st.AppendExecution(pb().AppendExecutionRequest(
                            project_id=project, record=pb().ExecutionRecord(
                                record_id=name, command="cmd " + name, exit_code=n % 256)),
                            timeout=15)
                    except grpc.RpcError as e:
                        if not self.killing.is_set():
                            self.errors.append("AppendExecution %s: %s %s"
                                               % (name, e.code(), e.details()))
                        return
                    if r.duplicate:
                        self.errors.append("fresh record id %s answered duplicate" % name)
                        return
                    with L.mu:
                        del L.hist_unknown[name]
                        prev = L.hist.setdefault(project, {}).get(r.seq)
                        if prev is not None:
                            self.errors.append("seq %d of %s acknowledged twice (%s, %s)"
                                               % (r.seq, project, prev, name))
                        L.hist[project][r.seq] = name
                with L.mu:
                    self.acked += 1
        except BaseException as e:  # noqa: B902
            self.errors.append("writer %d: %r" % (i, e))
        finally:
            ch.close()


class CrashTest(unittest.TestCase):

    def setUp(self):
        h.stubs()
        self.tmp = tempfile.mkdtemp(prefix="sbx-store-crash-")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.kill()
        h.kill_all()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, data_dir, args):
        s = h.Server("store", args=args, tmp=self.tmp, data_dir=data_dir)
        self.servers.append(s)
        s.start(timeout=60)
        return s

    # ---- verification ----
    def list_kv(self, st, prefix):
        out, cur = {}, ""
        while True:
            r = st.List(pb().KvListRequest(prefix=prefix, cursor=cur, limit=1000), timeout=30)
            for e in r.entries:
                self.assertNotIn(e.key, out, "List returned %s twice" % e.key)
                out[e.key] = e.value
            cur = r.next_cursor
            if not cur:
                return out

    def list_hist(self, st, project):
        out, tok = [], ""
        while True:
            r = st.ListExecutions(pb().ListExecutionsRequest(
                project_id=project, page_token=tok, limit=1000), timeout=30)
            out.extend(r.records)
            tok = r.next_page_token
            if not tok:
                return out

    def verify(self, addr, L, tag, what):
        with h.channel(addr) as ch:
            st = h.stubs().store_pb2_grpc.StateStoreStub(ch)
            # KV: every acknowledged key with its value; extra keys only from unknown writes
            stored = self.list_kv(st, tag + "-")
            missing = [k for k in L.kv if k not in stored]
            self.assertEqual(missing[:10], [], "%s: %d acknowledged KV writes lost (of %d)"
                             % (what, len(missing), len(L.kv)))
            wrong = [k for k, v in L.kv.items() if stored[k] != v]
            self.assertEqual(wrong[:10], [], "%s: acknowledged KV values differ" % what)
            for k, v in stored.items():
                if k in L.kv:
                    continue
                self.assertIn(k, L.kv_unknown, "%s: key %s was never written" % (what, k))
                self.assertEqual(v, L.kv_unknown[k], "%s: in-flight key %s has a wrong value"
                                 % (what, k))
            # spot-check Get (the point-read path) on a sample of the acknowledged keys
            for k in sorted(L.kv)[::max(1, len(L.kv) // 50)]:
                self.assertEqual(st.Get(pb().KvGetRequest(key=k), timeout=10).value, L.kv[k])
            # history: gapless 1..N per project, acknowledged seqs in place
            for p in PROJECTS:
                recs = self.list_hist(st, p)
                seqs = [r.seq for r in recs]
                n = len(recs)
                self.assertEqual(seqs, list(range(n, 0, -1)),
                                 "%s: %s sequences are not gapless %d..1 (first differences: %s)"
                                 % (what, p, n, [(a, b) for a, b in
                                                  zip(seqs, range(n, 0, -1)) if a != b][:5]))
                rids = [r.record_id for r in recs]
                self.assertEqual(len(set(rids)), n, "%s: %s has a record id twice" % (what, p))
                at = {r.seq: r for r in recs}
                for seq, rid in L.hist.get(p, {}).items():
                    self.assertIn(seq, at, "%s: acknowledged %s seq %d (%s) lost" % (what, p, seq,
                                                                                    rid))
                    self.assertEqual(at[seq].record_id, rid, "%s: %s seq %d" % (what, p, seq))
                    self.assertEqual(at[seq].command, "cmd " + rid)
                for r in recs:
                    if r.record_id in L.hist_unknown:
                        self.assertEqual(L.hist_unknown[r.record_id], p)
                    else:
                        self.assertEqual(L.hist[p].get(r.seq), r.record_id,
                                         "%s: %s seq %d holds %r, never acknowledged there"
                                         % (what, p, r.seq, r.record_id))
                gp = st.GetProject(pb().GetProjectRequest(project_id=p), timeout=10) if n else None
                if gp is not None:
                    self.assertEqual((gp.execution_count, gp.last_execution_seq), (n, n),
                                     "%s: GetProject of %s disagrees with its history" % (what, p))
                # an in-flight append that landed is remembered: a replay is a duplicate
                for r in recs[:3]:
                    d = st.AppendExecution(pb().AppendExecutionRequest(
                        project_id=p, record=pb().ExecutionRecord(record_id=r.record_id)),
                        timeout=10)
                    self.assertEqual((d.seq, d.duplicate), (r.seq, True))

    def promote_landed_unknowns(self, addr, L):
        """After a verify, writes of unknown outcome are settled: the ones that landed become
        'acknowledged' for the next cycles (they must not vanish later), the rest are dropped."""
        with h.channel(addr) as ch:
            st = h.stubs().store_pb2_grpc.StateStoreStub(ch)
            for k, v in list(L.kv_unknown.items()):
                try:
                    g = st.Get(pb().KvGetRequest(key=k), timeout=10)
                    L.kv[k] = g.value
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), SC.NOT_FOUND)
            L.kv_unknown.clear()
            for p in PROJECTS:
                for r in self.list_hist(st, p):
                    if r.record_id in L.hist_unknown:
                        L.hist.setdefault(p, {})[r.seq] = r.record_id
            L.hist_unknown.clear()

    # ---- the cycles ----
    def crash_cycles(self, args, cycles, tag):
        data = os.path.join(self.tmp, "data-" + tag)
        L = Ledger()
        server = self.start(data, args)
        total_acked = 0
        for cycle in range(cycles):
            w = Writers(self, server.addr, L, cycle, tag)
            w.start()
            time.sleep(WRITE_SECONDS)
            self.assertIsNone(server.proc.poll(), "sbx-store died on its own: %s"
                              % server.stderr_text()[-3000:])
            w.killing.set()
            server.proc.send_signal(signal.SIGKILL)  # kill -9, mid-stream
            server.proc.wait(timeout=30)
            w.join()
            self.assertEqual(w.errors, [], "writes failed before the kill")
            self.assertGreater(w.acked, 50, "too few writes were acknowledged to test anything")
            total_acked += w.acked
            inflight = len(L.kv_unknown) + len(L.hist_unknown)
            server.kill()
            server = self.start(data, args)  # restart on the same data dir
            self.verify(server.addr, L, tag, "%s cycle %d" % (tag, cycle + 1))
            note("%s cycle %d: %d writes acknowledged, %d in flight at the kill; all there"
                 % (tag, cycle + 1, w.acked, inflight))
            self.promote_landed_unknowns(server.addr, L)
        # a clean shutdown after the crashes, and a last look after it
        rc = server.stop(signal.SIGTERM, timeout=30)
        self.assertEqual(rc, 0, server.stderr_text()[-3000:])
        server = self.start(data, args)
        self.verify(server.addr, L, tag, "%s after a clean restart" % tag)
        self.assertEqual(server.stop(signal.SIGTERM, timeout=30), 0)
        return total_acked

    def test_kill9_sync_on_3_cycles(self):
        self.crash_cycles([], 3, "on")

    def test_kill9_sync_off(self):
        self.crash_cycles(["--sync", "off"], 2, "off")

    def test_kill9_direct_commit(self):
        self.crash_cycles(["--commit-mode", "direct"], 1, "direct")


if __name__ == "__main__":
    argv = h.parse_bindir(sys.argv)
    unittest.main(argv=argv, verbosity=2)
