#!/usr/bin/python3
"""Concurrency of sbx-store through gRPC (issue 3, "Durability and concurrency").

  - 8 client threads x 1000 Incr of one key -> exactly 8000;
  - 8 concurrent appenders to one project -> sequences 1..N, gapless, no duplicates;
  - concurrent compare-and-set on one project (UpdateProject.expected) and one KV key
    (Set.expected): exactly one winner per version, every loser told the current version.

Run:  /usr/bin/python3 tests/integration/store_concurrency.py --bindir build [Test ...]
Each client thread has its own channel (its own HTTP/2 connection), so the server sees truly
concurrent calls. The store runs with its defaults (--sync on, group commit).
"""
import os
import re
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


def pb():
    return h.stubs().store_pb2


def stub(addr):
    ch = h.channel(addr)
    return ch, h.stubs().store_pb2_grpc.StateStoreStub(ch)


def run_threads(fn, n=THREADS, timeout=120):
    """Runs fn(i) in n threads started together; re-raises the first exception."""
    errors = []
    start = threading.Barrier(n)

    def body(i):
        try:
            start.wait(30)
            fn(i)
        except BaseException as e:  # noqa: B902
            errors.append((i, e))

    ts = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout)
    if any(t.is_alive() for t in ts):
        raise AssertionError("worker threads still running after %d s" % timeout)
    if errors:
        i, e = errors[0]
        raise AssertionError("thread %d failed: %r (%d threads failed)" % (i, e, len(errors)))


class ConcurrencyTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        h.stubs()
        cls.tmp = tempfile.mkdtemp(prefix="sbx-store-conc-")
        cls.server = h.Server("store", tmp=cls.tmp)
        try:
            cls.server.start()
        except BaseException:
            cls.server.kill()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise
        cls.addr = cls.server.addr
        cls.ch, cls.st = stub(cls.addr)

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        rc = cls.server.stop(signal.SIGTERM, timeout=30)
        bad = cls.server.bad_stderr_lines()
        cls.server.kill()
        h.kill_all()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if rc != 0 or bad:
            raise AssertionError("sbx-store exit %s after SIGTERM; bad stderr lines:\n%s"
                                 % (rc, "\n".join(bad[:20])))

    def assertAlive(self):
        self.assertIsNone(self.server.proc.poll(), "sbx-store died; stderr:\n%s"
                          % self.server.stderr_text()[-3000:])

    # -----------------------------------------------------------------------------------------
    def test_incr_8_threads_x_1000(self):
        N = 1000
        seen = [[] for _ in range(THREADS)]
        versions = [[] for _ in range(THREADS)]

        def worker(i):
            ch, st = stub(self.addr)
            try:
                for _ in range(N):
                    r = st.Incr(pb().KvIncrRequest(key="counter", delta=1), timeout=30)
                    seen[i].append(r.value)
                    versions[i].append(r.version)
            finally:
                ch.close()

        t0 = time.monotonic()
        run_threads(worker)
        el = time.monotonic() - t0
        g = self.st.Get(pb().KvGetRequest(key="counter"), timeout=10)
        self.assertEqual(g.value, b"%d" % (THREADS * N))
        allv = sorted(v for s in seen for v in s)
        # every increment returned a distinct value: together exactly 1..8000
        self.assertEqual(allv, list(range(1, THREADS * N + 1)))
        for i in range(THREADS):
            self.assertEqual(seen[i], sorted(seen[i]), "thread %d saw its values go down" % i)
            self.assertEqual(versions[i], sorted(set(versions[i])),
                             "thread %d: versions not strictly increasing" % i)
        allver = [v for s in versions for v in s]
        self.assertEqual(len(set(allver)), len(allver), "two increments got the same version")
        self.assertEqual(g.version, max(allver))
        sys.stderr.write("  note: %d Incr in %.2f s (%.0f/s)\n" % (THREADS * N, el,
                                                                   THREADS * N / el))
        self.assertAlive()

    # -----------------------------------------------------------------------------------------
    def test_8_appenders_gapless(self):
        N = 250
        P = "conc-append"
        got = [[] for _ in range(THREADS)]

        def worker(i):
            ch, st = stub(self.addr)
            try:
                for n in range(N):
                    rid = "t%d-%d" % (i, n)
                    r = st.AppendExecution(pb().AppendExecutionRequest(
                        project_id=P, record=pb().ExecutionRecord(
                            record_id=rid, command=rid, exit_code=i)), timeout=30)
                    if r.duplicate:
                        raise AssertionError("fresh record id %s reported duplicate" % rid)
                    got[i].append((r.seq, rid))
            finally:
                ch.close()

        run_threads(worker)
        total = THREADS * N
        seqs = sorted(s for g in got for s, _ in g)
        self.assertEqual(seqs, list(range(1, total + 1)), "acknowledged seqs are not 1..N")
        for i in range(THREADS):
            mine = [s for s, _ in got[i]]
            self.assertEqual(mine, sorted(mine), "thread %d: seqs out of order" % i)
        # the stored history agrees with what was acknowledged
        by_seq = {s: rid for g in got for s, rid in g}
        recs, tok = [], ""
        while True:
            r = self.st.ListExecutions(pb().ListExecutionsRequest(
                project_id=P, limit=1000, page_token=tok), timeout=30)
            recs.extend(r.records)
            tok = r.next_page_token
            if not tok:
                break
        self.assertEqual([x.seq for x in recs], list(range(total, 0, -1)))
        for x in recs:
            self.assertEqual(x.record_id, by_seq[x.seq], "seq %d" % x.seq)
            self.assertEqual(x.command, x.record_id)
        p = self.st.GetProject(pb().GetProjectRequest(project_id=P), timeout=10)
        self.assertEqual((p.execution_count, p.last_execution_seq), (total, total))
        # concurrent replays of the same record ids: all duplicates, nothing appended
        replay = [[] for _ in range(THREADS)]

        def replayer(i):
            ch, st = stub(self.addr)
            try:
                for n in range(0, N, 10):
                    rid = "t%d-%d" % ((i + 1) % THREADS, n)
                    r = st.AppendExecution(pb().AppendExecutionRequest(
                        project_id=P, record=pb().ExecutionRecord(record_id=rid)), timeout=30)
                    replay[i].append((r.seq, r.duplicate, rid))
            finally:
                ch.close()

        run_threads(replayer)
        for i in range(THREADS):
            for seq, dup, rid in replay[i]:
                self.assertTrue(dup, rid)
                self.assertEqual(by_seq[seq], rid)
        p = self.st.GetProject(pb().GetProjectRequest(project_id=P), timeout=10)
        self.assertEqual(p.last_execution_seq, total)
        self.assertAlive()

    def test_appenders_to_many_projects(self):
        # 8 threads each appending to all of 4 projects in turn: each project gapless
        N = 100
        projects = ["conc-multi-%d" % k for k in range(4)]
        got = {p: [] for p in projects}
        mu = threading.Lock()

        def worker(i):
            ch, st = stub(self.addr)
            try:
                for n in range(N):
                    p = projects[(i + n) % len(projects)]
                    r = st.AppendExecution(pb().AppendExecutionRequest(
                        project_id=p, record=pb().ExecutionRecord(command="x")), timeout=30)
                    with mu:
                        got[p].append(r.seq)
            finally:
                ch.close()

        run_threads(worker)
        for p in projects:
            self.assertEqual(sorted(got[p]), list(range(1, len(got[p]) + 1)), p)
            last = self.st.GetProject(pb().GetProjectRequest(project_id=p),
                                      timeout=10).last_execution_seq
            self.assertEqual(last, len(got[p]))
        self.assertEqual(sum(len(v) for v in got.values()), THREADS * N)

    # -----------------------------------------------------------------------------------------
    def cas_rounds(self, attempt, read_version, rounds):
        """Each round: all threads read the same current version (barrier), then all try a CAS
        with it at once (barrier). Returns [(version, [results of the 8 threads])]."""
        bar = threading.Barrier(THREADS)
        results = [[None] * THREADS for _ in range(rounds)]
        seen_versions = [[None] * THREADS for _ in range(rounds)]

        def worker(i):
            ch, st = stub(self.addr)
            try:
                for r in range(rounds):
                    bar.wait(30)
                    v = read_version(st)
                    seen_versions[r][i] = v
                    bar.wait(30)
                    results[r][i] = attempt(st, i, r, v)
                    bar.wait(30)
            finally:
                ch.close()

        run_threads(worker, timeout=180)
        out = []
        for r in range(rounds):
            vs = set(seen_versions[r])
            self.assertEqual(len(vs), 1, "round %d: threads read different versions %s" % (r, vs))
            out.append((vs.pop(), results[r]))
        return out

    def check_cas(self, rounds_out, what):
        mism = re.compile(r"^version mismatch: expected (\d+), current (\d+)$")
        prev_new = None
        for r, (v, res) in enumerate(rounds_out):
            wins = [x for x in res if x[0] == "OK"]
            self.assertEqual(len(wins), 1, "%s round %d (version %d): %d winners: %s"
                             % (what, r, v, len(wins), res))
            new_version = wins[0][1]
            self.assertGreater(new_version, v)
            if prev_new is not None:
                self.assertEqual(v, prev_new, "%s: round %d started from a stale version" % (what, r))
            prev_new = new_version
            for x in res:
                if x[0] == "OK":
                    continue
                self.assertEqual(x[0], "FAILED_PRECONDITION", "%s round %d: %s" % (what, r, x))
                m = mism.match(x[1])
                self.assertTrue(m, "%s: message %r" % (what, x[1]))
                self.assertEqual(int(m.group(1)), v)
                self.assertEqual(int(m.group(2)), new_version,
                                 "%s: the loser must be told the winner's version" % what)
        return prev_new

    def test_project_cas_one_winner_per_version(self):
        P = "conc-cas"
        ROUNDS = 40
        self.st.UpdateProject(pb().UpdateProjectRequest(project_id=P, set_fields={"owner": ""}),
                              timeout=10)

        def read(st):
            return st.GetProject(pb().GetProjectRequest(project_id=P), timeout=10).version

        def attempt(st, i, r, v):
            req = pb().UpdateProjectRequest(project_id=P, set_fields={
                "owner": "t%d" % i, "round-%d" % r: "t%d" % i})
            req.expected.version = v
            try:
                p = st.UpdateProject(req, timeout=30)
                return ("OK", p.version, i)
            except grpc.RpcError as e:
                return (e.code().name, e.details(), i)

        out = self.cas_rounds(attempt, read, ROUNDS)
        last = self.check_cas(out, "UpdateProject")
        for v, res in out:
            self.assertEqual([x[1] for x in res if x[0] == "OK"], [v + 1],
                             "project versions advance by exactly 1")
        p = self.st.GetProject(pb().GetProjectRequest(project_id=P), timeout=10)
        self.assertEqual(p.version, last)
        self.assertEqual(p.version, 1 + ROUNDS)
        # each round's field names the round's single winner, and the last owner wins
        for r, (v, res) in enumerate(out):
            winner = [x[2] for x in res if x[0] == "OK"][0]
            self.assertEqual(p.fields["round-%d" % r], "t%d" % winner)
        self.assertEqual(p.fields["owner"], "t%d" % [x[2] for x in out[-1][1] if x[0] == "OK"][0])

    def test_kv_cas_one_winner_per_version(self):
        K = "conc-kv-cas"
        ROUNDS = 40
        self.st.Set(pb().KvSetRequest(key=K, value=b"start"), timeout=10)

        def read(st):
            return st.Get(pb().KvGetRequest(key=K), timeout=10).version

        def attempt(st, i, r, v):
            req = pb().KvSetRequest(key=K, value=b"r%d-t%d" % (r, i))
            req.expected.version = v
            try:
                return ("OK", st.Set(req, timeout=30).version, i)
            except grpc.RpcError as e:
                return (e.code().name, e.details(), i)

        out = self.cas_rounds(attempt, read, ROUNDS)
        last = self.check_cas(out, "Set")
        g = self.st.Get(pb().KvGetRequest(key=K), timeout=10)
        self.assertEqual(g.version, last)
        winner = [x[2] for x in out[-1][1] if x[0] == "OK"][0]
        self.assertEqual(g.value, b"r%d-t%d" % (ROUNDS - 1, winner))

    def test_create_if_absent_race(self):
        # expected version 0 = "must not exist": among 8 simultaneous creators exactly one wins
        for k in range(10):
            res = [None] * THREADS
            P = "conc-create-%d" % k

            def worker(i):
                ch, st = stub(self.addr)
                try:
                    req = pb().UpdateProjectRequest(project_id=P, set_fields={"by": str(i)})
                    req.expected.version = 0
                    try:
                        st.UpdateProject(req, timeout=30)
                        res[i] = "OK"
                    except grpc.RpcError as e:
                        res[i] = (e.code().name, e.details())
                    kreq = pb().KvSetRequest(key=P, value=str(i).encode())
                    kreq.expected.version = 0
                    try:
                        st.Set(kreq, timeout=30)
                        res[i] = (res[i], "OK")
                    except grpc.RpcError as e:
                        res[i] = (res[i], e.code().name)
                finally:
                    ch.close()

            run_threads(worker)
            self.assertEqual(sum(1 for x in res if x[0] == "OK"), 1, res)
            self.assertEqual(sum(1 for x in res if x[1] == "OK"), 1, res)
            for x in res:
                if x[0] != "OK":
                    self.assertEqual(x[0], ("FAILED_PRECONDITION",
                                            "version mismatch: expected 0, current 1"))
                if x[1] != "OK":
                    self.assertEqual(x[1], "FAILED_PRECONDITION")


if __name__ == "__main__":
    argv = h.parse_bindir(sys.argv)
    unittest.main(argv=argv, verbosity=2)
