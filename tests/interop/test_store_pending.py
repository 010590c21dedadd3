#!/usr/bin/python3
"""sbx-store's durable writes while they wait for the committer, through Python grpcio.

Set, AppendExecution and RecordExecution are queued by the polling thread and finished by the
committer once their group is durable (services/store/commit.c). With --commit-linger-us
100000 the committer waits up to 100 ms for as many writers as its last group had, so writes
issued after a burst stay pending long enough to be cancelled, to outlive their deadline, or
to be caught by SIGTERM. Checked: no crash, clean exit (leaks fail the exit code under ASan),
a write is atomic (absent or whole), and nothing acknowledged OK is lost across a restart.

Run:  /usr/bin/python3 tests/interop/test_store_pending.py --bindir build [TestClass ...]
"""
import shutil
import signal
import sys
import tempfile
import time
import unittest

import sbx_harness as h  # noqa: E402

grpc = h.grpc
SC = grpc.StatusCode

LINGER = ["--commit-linger-us", "100000"]


def pb():
    return h.stubs().store_pb2


def new_stub(ch):
    return h.stubs().store_pb2_grpc.StateStoreStub(ch)


def record_req(project, i):
    return pb().RecordExecutionRequest(
        project_id=project, cache_ttl_s=600,
        record=pb().ExecutionRecord(record_id="r-%d" % i, command="c%d" % i,
                                    command_key="k-%d" % i, stdout=b"out-%d" % i))


def code_of(fut):
    try:
        fut.result()
        return SC.OK
    except grpc.FutureCancelledError:
        return SC.CANCELLED
    except grpc.RpcError as e:
        return e.code()


class PendingWriteTest(unittest.TestCase):
    def setUp(self):
        h.stubs()
        self.tmp = tempfile.mkdtemp(prefix="sbx-store-pending-")

    def tearDown(self):
        h.kill_all()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, data=None, args=LINGER):
        s = h.Server("store", args=args, tmp=self.tmp, data_dir=data)
        s.start()
        return s

    def burst(self, st, tag, n=16):
        """n concurrent Sets: the committer's last group has several writers afterwards."""
        futs = [st.Set.future(pb().KvSetRequest(key="%s-%d" % (tag, i), value=b"b"), timeout=10)
                for i in range(n)]
        for f in futs:
            f.result()

    def test_cancel_and_deadline_while_write_waits(self):
        s = self.start()
        seen = {}
        with h.channel(s.addr) as ch:
            st = new_stub(ch)
            for r in range(4):
                self.burst(st, "burst%d" % r)
                short = [st.Set.future(pb().KvSetRequest(key="short-%d-%d" % (r, i),
                                                         value=b"v" * 64), timeout=0.02)
                         for i in range(4)]
                gone = [st.RecordExecution.future(record_req("p%d" % r, i), timeout=10)
                        for i in range(4)]
                time.sleep(0.005)
                for f in gone:
                    f.cancel()
                for f in short + gone:
                    c = code_of(f)
                    seen[c] = seen.get(c, 0) + 1
                    self.assertIn(c, (SC.OK, SC.DEADLINE_EXCEEDED, SC.CANCELLED))
            self.assertGreater(seen.get(SC.DEADLINE_EXCEEDED, 0), 0, seen)
            self.assertGreater(seen.get(SC.CANCELLED, 0), 0, seen)
            # still serving, and every abandoned write is atomic: absent or whole
            self.assertGreater(st.Set(pb().KvSetRequest(key="after", value=b"a"),
                                      timeout=10).version, 0)
            for r in range(4):
                for i in range(4):
                    try:
                        g = st.Get(pb().KvGetRequest(key="short-%d-%d" % (r, i)), timeout=10)
                        self.assertEqual(g.value, b"v" * 64)
                    except grpc.RpcError as e:
                        self.assertEqual(e.code(), SC.NOT_FOUND)
                    c = st.GetCachedResult(pb().GetCachedResultRequest(
                        project_id="p%d" % r, command_key="k-%d" % i), timeout=10)
                    if c.found:
                        self.assertEqual(c.result.stdout, b"out-%d" % i)
                        lst = st.ListExecutions(pb().ListExecutionsRequest(
                            project_id="p%d" % r), timeout=10)
                        self.assertIn(c.result.seq, [x.seq for x in lst.records])
        self.assertEqual(s.stop(signal.SIGTERM, timeout=20), 0, s.stderr_text()[-3000:])

    def test_sigterm_with_writes_pending(self):
        data = tempfile.mkdtemp(prefix="data-", dir=self.tmp)
        s = self.start(data)
        with h.channel(s.addr) as ch:
            st = new_stub(ch)
            self.burst(st, "burst")
            sets = [(i, st.Set.future(pb().KvSetRequest(key="pending-%d" % i,
                                                        value=b"val-%d" % i), timeout=30))
                    for i in range(8)]
            recs = [(i, st.RecordExecution.future(record_req("sig", i), timeout=30))
                    for i in range(4)]
            time.sleep(0.03)  # queued: the committer lingers for 16 writers
            s.send_signal(signal.SIGTERM)
            ok_sets = [i for i, f in sets if code_of(f) == SC.OK]
            ok_recs = {i: f.result().seq for i, f in recs if code_of(f) == SC.OK}
            for _, f in sets + recs:
                self.assertIn(code_of(f), (SC.OK, SC.UNAVAILABLE, SC.CANCELLED))
        self.assertEqual(s.wait(20), 0, s.stderr_text()[-3000:])
        # a graceful stop finishes queued writes: every one was acknowledged ...
        self.assertEqual(len(ok_sets), len(sets))
        self.assertEqual(len(ok_recs), len(recs))
        # ... and every acknowledged one is there after a restart
        s = self.start(data)
        with h.channel(s.addr) as ch:
            st = new_stub(ch)
            for i in ok_sets:
                self.assertEqual(st.Get(pb().KvGetRequest(key="pending-%d" % i),
                                        timeout=10).value, b"val-%d" % i)
            lst = st.ListExecutions(pb().ListExecutionsRequest(project_id="sig"), timeout=10)
            self.assertEqual(sorted(x.seq for x in lst.records), sorted(ok_recs.values()))
            for i in ok_recs:
                c = st.GetCachedResult(pb().GetCachedResultRequest(
                    project_id="sig", command_key="k-%d" % i), timeout=10)
                self.assertTrue(c.found)
                self.assertEqual(c.result.seq, ok_recs[i])
        self.assertEqual(s.stop(signal.SIGTERM, timeout=20), 0, s.stderr_text()[-3000:])


if __name__ == "__main__":
    unittest.main(argv=h.parse_bindir(sys.argv), verbosity=2)
