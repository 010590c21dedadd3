#!/usr/bin/python3
"""End-to-end tests of sbx-store: every sbx.v1.StateStore RPC through Python grpcio.

Run:  /usr/bin/python3 tests/interop/test_store.py --bindir build [TestClass ...]
The binary comes from --bindir (or $SBX_BUILD_DIR, else <repo>/build); the protos from
$SBX_PROTO_DIR (else <repo>/proto); stubs are generated at test time (sbx_harness).

Each test class starts its own sbx-store on 127.0.0.1:0 with a temporary data dir and kills it
in tearDownClass. Tests of one class share the server, so each test uses its own project ids
and key prefixes. The contract checked is proto/sbx/v1/store.proto (every comment) and issue 3.
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
import urllib.request

import sbx_harness as h  # noqa: E402

grpc = h.grpc
SC = grpc.StatusCode

TENANT_KEY = "sbx-store-test-key-acme-0123456789"
OTHER_KEY = "sbx-store-test-key-globex-9876543210"
SERVICE_KEY = "sbx-store-test-service-key-abcdef"

KV_MAX_VALUE = 1 << 20  # sbx-store --kv-max-value default (1M, store.proto's 0..1 MiB)


def now_ms():
    return int(time.time() * 1000)


def pb():
    return h.stubs().store_pb2


def new_stub(ch):
    return h.stubs().store_pb2_grpc.StateStoreStub(ch)


class StoreMixin:
    """setUpClass starts one sbx-store with cls.server_args(); self.st is a stub on it."""

    api_keys = False  # write an api-keys file (acme, globex, @service) and pass --api-keys

    @classmethod
    def server_args(cls):
        return []

    @classmethod
    def setUpClass(cls):
        h.stubs()
        cls.tmp = tempfile.mkdtemp(prefix="sbx-store-test-")
        cls.servers = []
        try:
            if cls.api_keys:
                cls.keys_file = os.path.join(cls.tmp, "api-keys")
                with open(cls.keys_file, "w") as f:
                    f.write("# sbx-store test keys\n")
                    f.write("acme:%s\n" % h.sha256_hex(TENANT_KEY))
                    f.write("globex:%s\n" % h.sha256_hex(OTHER_KEY))
                    f.write("@service:%s\n" % h.sha256_hex(SERVICE_KEY))
            cls.server = cls.start_store(cls.server_args())
            cls.ch = h.channel(cls.server.addr,
                               options=[("grpc.max_send_message_length", 64 << 20)])
            cls.st = new_stub(cls.ch)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_store(cls, args, data_dir=None):
        a = list(args)
        if cls.api_keys:
            a += ["--api-keys", cls.keys_file]
        s = h.Server("store", args=a, tmp=cls.tmp, data_dir=data_dir)
        cls.servers.append(s)
        s.start()
        return s

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "ch", None) is not None:
            cls.ch.close()
        problems = []
        try:
            # a clean SIGTERM shutdown (exit 0, no error/sanitizer lines) is part of the contract
            for s in getattr(cls, "servers", []):
                if s.proc.poll() is not None:
                    continue
                rc = s.stop(signal.SIGTERM, timeout=30)
                bad = s.bad_stderr_lines()
                if rc != 0 or bad:
                    problems.append("sbx-store %s: exit %s after SIGTERM; bad stderr lines:\n%s"
                                    % (s.data_dir, rc, "\n".join(bad[:20])))
        finally:
            for s in getattr(cls, "servers", []):
                s.kill()
            h.kill_all()
            shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)
        if problems:
            raise AssertionError("\n".join(problems))

    # ---- helpers ----
    def assertAlive(self):
        s = self.server
        self.assertIsNone(s.proc.poll(), "sbx-store died (rc %s); stderr:\n%s"
                          % (s.proc.poll(), s.stderr_text()[-3000:]))

    def call(self, rpc, req, md=None, timeout=10, stub=None):
        return getattr(stub or self.st, rpc)(req, timeout=timeout, metadata=md)

    def err(self, rpc, req, code, *needles, md=None, stub=None):
        """Calls rpc expecting status `code` whose message contains every needle; returns the
        message."""
        try:
            r = self.call(rpc, req, md=md, stub=stub)
        except grpc.RpcError as e:
            self.assertEqual(e.code(), code, "%s(%s): got %s %r, want %s"
                             % (rpc, short(req), e.code(), e.details(), code))
            for n in needles:
                self.assertIn(n, e.details() or "", "%s: message %r lacks %r"
                              % (rpc, e.details(), n))
            return e.details()
        self.fail("%s(%s): succeeded (%s), want %s" % (rpc, short(req), short(r), code))

    def append(self, project, md=None, **rec):
        r = self.call("AppendExecution", pb().AppendExecutionRequest(
            project_id=project, record=pb().ExecutionRecord(**rec)), md=md)
        return r

    def list_all(self, project, md=None, **kw):
        """Every record of a project, following page tokens (newest first)."""
        out, tok = [], ""
        for _ in range(10000):
            r = self.call("ListExecutions", pb().ListExecutionsRequest(
                project_id=project, page_token=tok, **kw), md=md)
            out.extend(r.records)
            tok = r.next_page_token
            if not tok:
                return out
        self.fail("ListExecutions never ended")


def short(m):
    s = str(m).replace("\n", " ")
    return s if len(s) < 200 else s[:200] + "..."


# =============================================================================================
class HistoryTest(StoreMixin, unittest.TestCase):
    """AppendExecution / ListExecutions: sequences, record_id replay, order, paging, ranges."""

    @classmethod
    def server_args(cls):
        return ["--sweep-interval-ms", "200"]

    def test_append_assigns_sequences_1_2_3(self):
        seqs = []
        for i in range(5):
            r = self.append("hist-seq", command="cmd %d" % i, exit_code=i)
            self.assertFalse(r.duplicate)
            seqs.append(r.seq)
        self.assertEqual(seqs, [1, 2, 3, 4, 5])
        # another project has its own sequence
        self.assertEqual(self.append("hist-seq-other", command="x").seq, 1)
        p = self.call("GetProject", pb().GetProjectRequest(project_id="hist-seq"))
        self.assertEqual(p.project_id, "hist-seq")
        self.assertEqual(p.execution_count, 5)
        self.assertEqual(p.last_execution_seq, 5)
        self.assertEqual(p.last_exit_code, 4)
        self.assertEqual(p.version, 0, "a project known only through history has version 0")
        self.assertEqual(p.updated_at_unix_ms, 0)
        self.assertGreater(p.created_at_unix_ms, 0)
        self.assertGreater(p.last_execution_at_unix_ms, 0)

    def test_record_id_replay_returns_first_seq(self):
        P = "hist-replay"
        r1 = self.append(P, record_id="req-1", command="first", exit_code=3, stdout=b"one")
        self.assertEqual((r1.seq, r1.duplicate), (1, False))
        r2 = self.append(P, record_id="req-2", command="second")
        self.assertEqual((r2.seq, r2.duplicate), (2, False))
        # replay of req-1 with different content: nothing written, first seq returned
        r3 = self.append(P, record_id="req-1", command="changed", exit_code=9, stdout=b"two")
        self.assertEqual((r3.seq, r3.duplicate), (1, True))
        r4 = self.append(P, command="no id")  # no record_id: always appended
        r5 = self.append(P, command="no id")
        self.assertEqual((r4.seq, r5.seq), (3, 4))
        recs = self.list_all(P, include_output=True)
        self.assertEqual([r.seq for r in recs], [4, 3, 2, 1])
        first = recs[-1]
        self.assertEqual((first.record_id, first.command, first.exit_code, first.stdout),
                         ("req-1", "first", 3, b"one"))
        p = self.call("GetProject", pb().GetProjectRequest(project_id=P))
        self.assertEqual((p.execution_count, p.last_execution_seq), (4, 4))

    def test_record_round_trip(self):
        P = "hist-fields"
        rec = dict(record_id="rt-1", command="echo 'hi there'", argv=["/bin/sh", "-c", "echo hi"],
                   cwd="/workspace/sub", exit_code=137, signal=9, timed_out=True,
                   output_truncated=True, cached=False, stdout=b"out\x00\xffbytes",
                   stderr=b"err", started_at_unix_ms=1_700_000_000_123, duration_us=4567,
                   sandbox_id="sb-1", tag="t1", command_key="ab" * 32, stdout_bytes=9999,
                   stderr_bytes=3)
        t0 = now_ms()
        r = self.call("AppendExecution", pb().AppendExecutionRequest(
            project_id=P, record=pb().ExecutionRecord(project_id="ignored", seq=77,
                                                      recorded_at_unix_ms=5, **rec)))
        self.assertEqual(r.seq, 1, "seq on input is ignored")
        full = self.list_all(P, include_output=True)[0]
        for k, v in rec.items():
            self.assertEqual(getattr(full, k), v, k)
        self.assertEqual(full.project_id, P, "project_id is output only (the request's)")
        self.assertEqual(full.seq, 1)
        self.assertGreaterEqual(full.recorded_at_unix_ms, t0 - 1000)
        self.assertLessEqual(full.recorded_at_unix_ms, now_ms() + 1000)
        # without include_output: stdout/stderr empty, *_bytes still set
        lean = self.list_all(P)[0]
        self.assertEqual((lean.stdout, lean.stderr), (b"", b""))
        self.assertEqual((lean.stdout_bytes, lean.stderr_bytes), (9999, 3))
        # started_at 0 = the server's receive time; stdout_bytes raised to len(stdout)
        t0 = now_ms()
        self.append(P, command="now", stdout=b"12345")
        rec2 = self.list_all(P, limit=1)[0]
        self.assertEqual(rec2.seq, 2)
        self.assertGreaterEqual(rec2.started_at_unix_ms, t0 - 1000)
        self.assertLessEqual(rec2.started_at_unix_ms, now_ms() + 1000)
        self.assertEqual(rec2.stdout_bytes, 5, "stdout_bytes is always >= len(stdout)")

    def test_list_newest_first_with_pages(self):
        P = "hist-pages"
        for i in range(1, 26):
            self.assertEqual(self.append(P, command="c%d" % i, stdout=b"o%d" % i).seq, i)
        seen, tok, pages = [], "", 0
        while True:
            r = self.call("ListExecutions", pb().ListExecutionsRequest(
                project_id=P, limit=10, page_token=tok))
            self.assertEqual(r.limit_applied, 10)
            self.assertLessEqual(len(r.records), 10)
            for rec in r.records:
                self.assertEqual(rec.project_id, P)
                self.assertEqual(rec.command, "c%d" % rec.seq)
                self.assertEqual(rec.stdout, b"", "no output without include_output")
                self.assertEqual(rec.stdout_bytes, len(b"o%d" % rec.seq))
            seen.extend(x.seq for x in r.records)
            pages += 1
            tok = r.next_page_token
            if not tok:
                break
        self.assertEqual(seen, list(range(25, 0, -1)))
        self.assertEqual(pages, 3)
        # a page token keeps working while new records arrive (they are newer: not repeated)
        r1 = self.call("ListExecutions", pb().ListExecutionsRequest(project_id=P, limit=5))
        self.append(P, command="c26")
        r2 = self.call("ListExecutions", pb().ListExecutionsRequest(
            project_id=P, limit=5, page_token=r1.next_page_token))
        self.assertEqual([x.seq for x in r1.records], [25, 24, 23, 22, 21])
        self.assertEqual([x.seq for x in r2.records], [20, 19, 18, 17, 16])
        # include_output fills stdout
        r = self.call("ListExecutions", pb().ListExecutionsRequest(project_id=P, limit=2,
                                                                    include_output=True))
        self.assertEqual([x.stdout for x in r.records], [b"", b"o25"])  # c26 had no stdout

    def test_limit_default_and_clamp(self):
        P = "hist-limits"
        for i in range(60):
            self.append(P, command="c")
        r = self.call("ListExecutions", pb().ListExecutionsRequest(project_id=P))
        self.assertEqual(r.limit_applied, 50, "limit 0 = 50")
        self.assertEqual(len(r.records), 50)
        self.assertNotEqual(r.next_page_token, "")
        r = self.call("ListExecutions", pb().ListExecutionsRequest(project_id=P, limit=5000))
        self.assertEqual(r.limit_applied, 1000, "limit > 1000 is clamped and said")
        self.assertEqual(len(r.records), 60)
        self.assertEqual(r.next_page_token, "")
        r = self.call("ListExecutions", pb().ListExecutionsRequest(project_id=P, limit=2**31 - 1))
        self.assertEqual(r.limit_applied, 1000)
        r = self.call("ListExecutions", pb().ListExecutionsRequest(project_id=P, limit=1))
        self.assertEqual((r.limit_applied, [x.seq for x in r.records]), (1, [60]))
        for bad in (-1, -2**31):
            self.err("ListExecutions", pb().ListExecutionsRequest(project_id=P, limit=bad),
                     SC.INVALID_ARGUMENT, "limit")

    def test_time_range(self):
        P = "hist-time"
        base = 1_600_000_000_000
        for i in range(10):  # seq i+1 started at base + i s
            self.append(P, command="t%d" % i, started_at_unix_ms=base + i * 1000)
        r = self.call("ListExecutions", pb().ListExecutionsRequest(
            project_id=P, since_unix_ms=base + 3000, until_unix_ms=base + 7000))
        self.assertEqual([x.seq for x in r.records], [7, 6, 5, 4], "since inclusive, until exclusive")
        self.assertEqual(r.next_page_token, "")
        # the same range in pages of 3
        got = [x.seq for x in self.list_all(P, limit=3, since_unix_ms=base + 3000,
                                            until_unix_ms=base + 7000)]
        self.assertEqual(got, [7, 6, 5, 4])
        only_since = [x.seq for x in self.list_all(P, since_unix_ms=base + 8000)]
        self.assertEqual(only_since, [10, 9])
        only_until = [x.seq for x in self.list_all(P, until_unix_ms=base + 2000)]
        self.assertEqual(only_until, [2, 1])
        self.assertEqual(self.list_all(P, since_unix_ms=base + 100000), [])
        self.err("ListExecutions", pb().ListExecutionsRequest(
            project_id=P, since_unix_ms=base + 5000, until_unix_ms=base + 1000),
            SC.INVALID_ARGUMENT, "since_unix_ms")
        self.err("ListExecutions", pb().ListExecutionsRequest(project_id=P, since_unix_ms=-5),
                 SC.INVALID_ARGUMENT, "since_unix_ms")

    def test_invalid_page_token(self):
        P = "hist-token"
        for i in range(5):
            self.append(P, command="c")
            self.append(P + "-b", command="c")
        good = self.call("ListExecutions", pb().ListExecutionsRequest(
            project_id=P, limit=2)).next_page_token
        self.assertNotEqual(good, "")
        flipped = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
        for tok in ("garbage!!", "x", "AAAA", flipped, "a" * 5000, good + "AAAA"):
            self.err("ListExecutions", pb().ListExecutionsRequest(
                project_id=P, limit=2, page_token=tok), SC.INVALID_ARGUMENT, "page_token")
        # a token of another project's listing
        self.err("ListExecutions", pb().ListExecutionsRequest(
            project_id=P + "-b", limit=2, page_token=good), SC.INVALID_ARGUMENT, "page_token")
        # the good token still works
        r = self.call("ListExecutions", pb().ListExecutionsRequest(
            project_id=P, limit=2, page_token=good))
        self.assertEqual([x.seq for x in r.records], [3, 2])

    def test_page_token_bound_to_filters(self):
        # store.proto conventions: "Page tokens and cursors are opaque strings; pass them back
        # unchanged with the same filters (INVALID_ARGUMENT otherwise)."
        P = "hist-token-filters"
        base = 1_650_000_000_000
        for i in range(10):
            self.append(P, command="c%d" % i, started_at_unix_ms=base + i)
        tok = self.call("ListExecutions", pb().ListExecutionsRequest(
            project_id=P, limit=2, since_unix_ms=base + 1)).next_page_token
        self.assertNotEqual(tok, "")
        for other in (dict(since_unix_ms=base + 5), dict(), dict(until_unix_ms=base + 3),
                      dict(since_unix_ms=base + 1, until_unix_ms=base + 8)):
            with self.subTest(filters=other):
                self.err("ListExecutions", pb().ListExecutionsRequest(
                    project_id=P, limit=2, page_token=tok, **other),
                    SC.INVALID_ARGUMENT, "page_token")

    def test_large_outputs_are_paged(self):
        # 20 records with 2 MiB of output each (40 MiB): one page cannot hold them all under
        # the 16 MiB message limit, so the server must cut pages short, never fail
        P = "hist-big"
        MiB = 1 << 20
        for i in range(20):
            self.append(P, command="c%d" % i, stdout=bytes([65 + i]) * MiB, stderr=b"e" * MiB)
        recs = self.list_all(P, limit=1000, include_output=True)
        self.assertEqual([x.seq for x in recs], list(range(20, 0, -1)))
        for x in recs:
            self.assertEqual(x.stdout, bytes([65 + x.seq - 1]) * MiB)
            self.assertEqual(len(x.stderr), MiB)

    def test_retention_max_age(self):
        # --sweep-interval-ms 200 (server_args): records older than max_age_s go in the background
        P = "hist-age"
        self.call("UpdateProject", pb().UpdateProjectRequest(
            project_id=P, retention=pb().RetentionPolicy(max_age_s=30)))
        self.append(P, command="old", started_at_unix_ms=now_ms() - 120000)
        self.append(P, command="older", started_at_unix_ms=now_ms() - 60000)
        self.append(P, command="fresh")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            cmds = [x.command for x in self.list_all(P)]
            if cmds == ["fresh"]:
                break
            time.sleep(0.1)
        self.assertEqual(cmds, ["fresh"])
        p = self.call("GetProject", pb().GetProjectRequest(project_id=P))
        self.assertEqual((p.execution_count, p.last_execution_seq), (1, 3))

    def test_unknown_project_lists_empty(self):
        r = self.call("ListExecutions", pb().ListExecutionsRequest(project_id="hist-nobody"))
        self.assertEqual((list(r.records), r.next_page_token), ([], ""))
        self.err("GetProject", pb().GetProjectRequest(project_id="hist-nobody"), SC.NOT_FOUND,
                 "hist-nobody")

    def test_record_required(self):
        self.err("AppendExecution", pb().AppendExecutionRequest(project_id="hist-req"),
                 SC.INVALID_ARGUMENT, "record")

    def test_retention_max_records(self):
        P = "hist-retention"
        p = self.call("UpdateProject", pb().UpdateProjectRequest(
            project_id=P, retention=pb().RetentionPolicy(max_records=3)))
        self.assertEqual(p.retention.max_records, 3)
        for i in range(1, 8):
            self.assertEqual(self.append(P, command="c%d" % i).seq, i)
        deadline = time.monotonic() + 5
        while True:
            seqs = [x.seq for x in self.list_all(P)]
            if seqs == [7, 6, 5] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(seqs, [7, 6, 5], "retention keeps the newest max_records")
        p = self.call("GetProject", pb().GetProjectRequest(project_id=P))
        self.assertEqual((p.execution_count, p.last_execution_seq), (3, 7))
        # sequence numbers are never reused after retention
        self.assertEqual(self.append(P, command="c8").seq, 8)


# =============================================================================================
class WatchTest(StoreMixin, unittest.TestCase):
    """WatchExecutions: catch-up from from_seq, then live, no gap/duplicate at the seam."""

    def watch(self, project, from_seq=0, timeout=30, **kw):
        return self.st.WatchExecutions(pb().WatchExecutionsRequest(
            project_id=project, from_seq=from_seq, **kw), timeout=timeout)

    def test_catch_up_then_live_no_gap_no_duplicate(self):
        P = "watch-seam"
        for i in range(5):
            self.append(P, command="pre%d" % i)
        stop = threading.Event()
        appended = []
        errors = []

        def appender():
            try:
                ch = h.channel(self.server.addr)
                st = new_stub(ch)
                for i in range(40):
                    r = st.AppendExecution(pb().AppendExecutionRequest(
                        project_id=P, record=pb().ExecutionRecord(command="live%d" % i)),
                        timeout=10)
                    appended.append(r.seq)
                    if i % 8 == 0:
                        time.sleep(0.01)
                ch.close()
            except Exception as e:  # pragma: no cover
                errors.append(e)
            finally:
                stop.set()

        # appends start together with the watch: some land during the catch-up phase
        t = threading.Thread(target=appender)
        call = self.watch(P, from_seq=3)
        t.start()
        got = []
        for rec in call:
            got.append(rec.seq)
            self.assertEqual(rec.project_id, P)
            if rec.seq >= 45:
                break
        t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(appended, list(range(6, 46)))
        self.assertEqual(got, list(range(3, 46)), "catch-up 3..5 then live 6..45, in order")
        call.cancel()
        with self.assertRaises(grpc.RpcError) as cm:
            next(call)
        self.assertEqual(cm.exception.code(), SC.CANCELLED)
        # the server still answers
        self.assertEqual(self.append(P, command="after").seq, 46)

    def test_from_zero_only_new_records(self):
        P = "watch-zero"
        for i in range(3):
            self.append(P, command="old")
        call = self.watch(P, from_seq=0, timeout=20)
        # the client cannot tell when the server has taken its starting point, so keep
        # appending until records arrive: the first must be new (> 3) and then consecutive
        stop = threading.Event()

        def appender():
            ch = h.channel(self.server.addr)
            st = new_stub(ch)
            for i in range(100):
                if stop.is_set():
                    break
                st.AppendExecution(pb().AppendExecutionRequest(
                    project_id=P, record=pb().ExecutionRecord(command="new", stdout=b"x")),
                    timeout=10)
                time.sleep(0.1)
            ch.close()

        t = threading.Thread(target=appender, daemon=True)
        t.start()
        try:
            a, b = next(call), next(call)
        finally:
            stop.set()
            t.join(15)
        self.assertGreater(a.seq, 3, "from_seq 0 must not replay old records")
        self.assertEqual(b.seq, a.seq + 1)
        self.assertEqual((a.command, a.stdout, a.stdout_bytes), ("new", b"", 1),
                         "no output without include_output")
        call.cancel()

    def test_from_seq_beyond_the_last(self):
        P = "watch-beyond"
        for i in range(3):
            self.append(P, command="c")
        call = self.watch(P, from_seq=6, timeout=15)
        time.sleep(0.3)
        for i in range(5):
            self.append(P, command="n%d" % i)
        got = [next(call).seq for _ in range(3)]
        self.assertEqual(got, [6, 7, 8])
        call.cancel()

    def test_resume_over_retention_gap(self):
        # records removed by retention are skipped; the gap in seq tells the client
        P = "watch-gap"
        self.call("UpdateProject", pb().UpdateProjectRequest(
            project_id=P, retention=pb().RetentionPolicy(max_records=2)))
        for i in range(6):
            self.append(P, command="c%d" % i)
        call = self.watch(P, from_seq=1, timeout=15)
        got = [next(call).seq for _ in range(2)]
        self.assertEqual(got, [5, 6])
        self.append(P, command="live")
        self.assertEqual(next(call).seq, 7)
        call.cancel()

    def test_include_output_and_project_created_later(self):
        P = "watch-later"
        call = self.watch(P, from_seq=1, include_output=True, timeout=15)
        time.sleep(0.3)
        self.append(P, command="first", stdout=b"hello", stderr=b"e")
        rec = next(call)
        self.assertEqual((rec.seq, rec.stdout, rec.stderr), (1, b"hello", b"e"))
        call.cancel()

    def test_deadline(self):
        P = "watch-deadline"
        self.append(P, command="a")
        t0 = time.monotonic()
        call = self.watch(P, from_seq=1, timeout=0.8)
        self.assertEqual(next(call).seq, 1)
        with self.assertRaises(grpc.RpcError) as cm:
            next(call)
        self.assertEqual(cm.exception.code(), SC.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - t0, 5)

    def test_delete_while_watching_not_found(self):
        P = "watch-delete"
        self.append(P, command="a")
        call = self.watch(P, from_seq=1, timeout=15)
        self.assertEqual(next(call).seq, 1)
        time.sleep(0.2)
        self.assertTrue(self.call("DeleteProject", pb().DeleteProjectRequest(project_id=P)).existed)
        with self.assertRaises(grpc.RpcError) as cm:
            next(call)
        self.assertEqual(cm.exception.code(), SC.NOT_FOUND, cm.exception.details())

    def test_many_watchers_cancelled(self):
        P = "watch-many"
        self.append(P, command="a")
        calls = [self.watch(P, from_seq=1, timeout=20) for _ in range(20)]
        for c in calls:
            self.assertEqual(next(c).seq, 1)
        for c in calls:
            c.cancel()
        self.append(P, command="b")
        c = self.watch(P, from_seq=2, timeout=5)
        self.assertEqual(next(c).seq, 2)
        c.cancel()
        self.assertAlive()


# =============================================================================================
class CacheTest(StoreMixin, unittest.TestCase):
    """GetCachedResult / PutCachedResult / ClearCache / RecordExecution."""

    @classmethod
    def server_args(cls):
        # no background sweeper: expired entries stay until read (what these tests observe)
        return ["--sweep-interval-ms", "0"]

    def put(self, project, key, ttl_s=0, **res):
        return self.call("PutCachedResult", pb().PutCachedResultRequest(
            project_id=project, result=pb().CachedResult(command_key=key, **res), ttl_s=ttl_s))

    def get(self, project, key):
        return self.call("GetCachedResult", pb().GetCachedResultRequest(
            project_id=project, command_key=key))

    def test_put_get_round_trip(self):
        P = "cache-rt"
        t0 = now_ms()
        r = self.put(P, "k1", ttl_s=60, exit_code=2, signal=0, timed_out=False,
                     output_truncated=True, stdout=b"out\xff", stderr=b"err", duration_us=1234,
                     stdout_bytes=100, stderr_bytes=3,
                     created_at_unix_ms=5, expires_at_unix_ms=6, seq=99)  # output-only: ignored
        self.assertGreaterEqual(r.expires_at_unix_ms, t0 + 60000 - 1000)
        self.assertLessEqual(r.expires_at_unix_ms, now_ms() + 60000 + 1000)
        g = self.get(P, "k1")
        self.assertTrue(g.found)
        self.assertFalse(g.expired)
        c = g.result
        self.assertEqual((c.project_id, c.command_key, c.exit_code, c.output_truncated, c.stdout,
                          c.stderr, c.duration_us, c.stdout_bytes, c.stderr_bytes),
                         (P, "k1", 2, True, b"out\xff", b"err", 1234, 100, 3))
        self.assertEqual(c.seq, 0, "not linked to a record")
        self.assertEqual(c.expires_at_unix_ms, r.expires_at_unix_ms)
        self.assertGreaterEqual(c.created_at_unix_ms, t0 - 1000)
        # default TTL: 0 = 3600 s
        r = self.put(P, "k2")
        self.assertAlmostEqual(r.expires_at_unix_ms - now_ms(), 3600 * 1000, delta=5000)
        # replace
        self.put(P, "k1", ttl_s=60, exit_code=7)
        self.assertEqual(self.get(P, "k1").result.exit_code, 7)
        # PutCachedResult creates the project
        p = self.call("GetProject", pb().GetProjectRequest(project_id=P))
        self.assertEqual(p.version, 0)

    def test_missing_is_not_an_error(self):
        g = self.get("cache-missing", "nothing")
        self.assertEqual((g.found, g.expired, g.HasField("result")), (False, False, False))

    def test_ttl_expiry(self):
        P = "cache-ttl"
        self.put(P, "short", ttl_s=1, stdout=b"s")
        self.put(P, "long", ttl_s=60)
        self.assertTrue(self.get(P, "short").found)
        time.sleep(1.3)
        g = self.get(P, "short")
        self.assertFalse(g.found, "an expired entry is a miss")
        self.assertTrue(g.expired, "expired tells the entry existed")
        self.assertFalse(g.HasField("result"))
        self.assertTrue(self.get(P, "long").found)
        # re-put moves the expiry
        self.put(P, "short", ttl_s=60)
        self.assertTrue(self.get(P, "short").found)

    def test_clear_one_key(self):
        P = "cache-clear1"
        self.put(P, "a", ttl_s=60)
        self.put(P, "b", ttl_s=60)
        r = self.call("ClearCache", pb().ClearCacheRequest(project_id=P, command_key="a"))
        self.assertEqual((r.whole_project, r.cleared), (False, 1))
        self.assertFalse(self.get(P, "a").found)
        self.assertFalse(self.get(P, "a").expired)
        self.assertTrue(self.get(P, "b").found)
        r = self.call("ClearCache", pb().ClearCacheRequest(project_id=P, command_key="a"))
        self.assertEqual((r.whole_project, r.cleared), (False, 0), "idempotent")

    def test_clear_whole_project(self):
        P, Q = "cache-clearall", "cache-clearall-other"
        for k in ("a", "b", "c"):
            self.put(P, k, ttl_s=60)
        self.put(P, "gone", ttl_s=1)
        self.put(Q, "a", ttl_s=60)
        time.sleep(1.1)  # "gone" expired: still counted ("expired ones included")
        r = self.call("ClearCache", pb().ClearCacheRequest(project_id=P))
        self.assertTrue(r.whole_project)
        self.assertEqual(r.cleared, 4)
        for k in ("a", "b", "c", "gone"):
            g = self.get(P, k)
            self.assertEqual((g.found, g.expired), (False, False), k)
        self.assertTrue(self.get(Q, "a").found, "other project untouched")
        r = self.call("ClearCache", pb().ClearCacheRequest(project_id=P))
        self.assertEqual((r.whole_project, r.cleared), (True, 0))
        # the project's cache works again after a clear (new generation)
        self.put(P, "a", ttl_s=60, exit_code=5)
        self.assertEqual(self.get(P, "a").result.exit_code, 5)
        r = self.call("ClearCache", pb().ClearCacheRequest(project_id=P))
        self.assertEqual(r.cleared, 1)

    def test_clear_counts_entries_not_writes(self):
        P = "cache-count"
        self.put(P, "a", ttl_s=60)
        self.put(P, "a", ttl_s=60)  # replaced: still one entry
        self.put(P, "b", ttl_s=60)
        for key in ("a", "c"):
            self.call("RecordExecution", pb().RecordExecutionRequest(
                project_id=P, record=pb().ExecutionRecord(command_key=key), cache_ttl_s=60))
        self.call("ClearCache", pb().ClearCacheRequest(project_id=P, command_key="b"))
        r = self.call("ClearCache", pb().ClearCacheRequest(project_id=P))
        self.assertEqual(r.cleared, 2, "entries a and c remain")

    def test_record_execution_fills_history_cache_and_project(self):
        P = "cache-record"
        self.append(P, command="earlier", exit_code=0)
        t0 = now_ms()
        r = self.call("RecordExecution", pb().RecordExecutionRequest(
            project_id=P, cache_ttl_s=120, record=pb().ExecutionRecord(
                record_id="rec-1", command="make", command_key="key-make", exit_code=3,
                stdout=b"built", stderr=b"warn", duration_us=77, started_at_unix_ms=t0,
                stdout_bytes=5, stderr_bytes=4)))
        self.assertEqual((r.seq, r.duplicate), (2, False))
        self.assertAlmostEqual(r.cache_expires_at_unix_ms, t0 + 120000, delta=5000)
        g = self.get(P, "key-make")
        self.assertTrue(g.found)
        c = g.result
        self.assertEqual((c.seq, c.exit_code, c.stdout, c.stderr, c.duration_us, c.command_key),
                         (2, 3, b"built", b"warn", 77, "key-make"))
        self.assertEqual(c.expires_at_unix_ms, r.cache_expires_at_unix_ms)
        recs = self.list_all(P, include_output=True)
        self.assertEqual([x.seq for x in recs], [2, 1])
        self.assertEqual((recs[0].record_id, recs[0].stdout, recs[0].command_key),
                         ("rec-1", b"built", "key-make"))
        p = self.call("GetProject", pb().GetProjectRequest(project_id=P))
        self.assertEqual((p.last_execution_seq, p.last_exit_code, p.last_execution_at_unix_ms,
                          p.execution_count), (2, 3, t0, 2))
        # duplicate: writes nothing, neither history nor cache (clear the cache to see it)
        self.call("ClearCache", pb().ClearCacheRequest(project_id=P, command_key="key-make"))
        d = self.call("RecordExecution", pb().RecordExecutionRequest(
            project_id=P, cache_ttl_s=120, record=pb().ExecutionRecord(
                record_id="rec-1", command="make", command_key="key-make", exit_code=0)))
        self.assertEqual((d.seq, d.duplicate), (2, True))
        self.assertFalse(self.get(P, "key-make").found, "a duplicate must not refill the cache")
        self.assertEqual(len(self.list_all(P)), 2)
        # cache_ttl_s 0: history only
        n = self.call("RecordExecution", pb().RecordExecutionRequest(
            project_id=P, record=pb().ExecutionRecord(command="x", command_key="key-x")))
        self.assertEqual((n.seq, n.cache_expires_at_unix_ms), (3, 0))
        self.assertFalse(self.get(P, "key-x").found)
        # cache_ttl_s > 0 needs a command_key
        self.err("RecordExecution", pb().RecordExecutionRequest(
            project_id=P, cache_ttl_s=10, record=pb().ExecutionRecord(command="x")),
            SC.INVALID_ARGUMENT, "command_key")
        for bad in (-1, 2592001):
            self.err("RecordExecution", pb().RecordExecutionRequest(
                project_id=P, cache_ttl_s=bad, record=pb().ExecutionRecord(command_key="k")),
                SC.INVALID_ARGUMENT, "cache_ttl_s", "2592000")
        self.assertEqual(len(self.list_all(P)), 3, "rejected requests wrote nothing")

    def test_put_bad_input(self):
        P = "cache-bad"
        self.err("PutCachedResult", pb().PutCachedResultRequest(project_id=P),
                 SC.INVALID_ARGUMENT, "result")
        self.err("PutCachedResult", pb().PutCachedResultRequest(
            project_id=P, result=pb().CachedResult()), SC.INVALID_ARGUMENT, "command_key")
        for bad in (-1, 2592001, 2**62):
            self.err("PutCachedResult", pb().PutCachedResultRequest(
                project_id=P, result=pb().CachedResult(command_key="k"), ttl_s=bad),
                SC.INVALID_ARGUMENT, "ttl_s", "2592000")
        self.err("PutCachedResult", pb().PutCachedResultRequest(
            project_id=P, result=pb().CachedResult(command_key="k" * 257)),
            SC.INVALID_ARGUMENT, "command_key", "256")
        self.err("GetCachedResult", pb().GetCachedResultRequest(project_id=P, command_key=""),
                 SC.INVALID_ARGUMENT, "command_key")
        self.err("PutCachedResult", pb().PutCachedResultRequest(
            project_id=P, result=pb().CachedResult(command_key="k", stdout=b"x" * ((1 << 20) + 1))),
            SC.INVALID_ARGUMENT, "stdout")
        # the 30-day maximum itself is fine
        r = self.put(P, "max", ttl_s=2592000)
        self.assertAlmostEqual(r.expires_at_unix_ms - now_ms(), 2592000 * 1000, delta=5000)


# =============================================================================================
class ProjectTest(StoreMixin, unittest.TestCase):
    """GetProject / UpdateProject / ListProjects / DeleteProject."""

    def update(self, project, set_fields=None, remove=None, expected=None, retention=None):
        req = pb().UpdateProjectRequest(project_id=project, set_fields=set_fields or {},
                                        remove_fields=remove or [])
        if expected is not None:
            req.expected.version = expected
        if retention is not None:
            req.retention.CopyFrom(retention)
        return self.call("UpdateProject", req)

    def test_merge_remove_and_versions(self):
        P = "proj-merge"
        t0 = now_ms()
        p = self.update(P, {"a": "1", "b": "2"})
        self.assertEqual((p.project_id, dict(p.fields), p.version), (P, {"a": "1", "b": "2"}, 1))
        self.assertGreaterEqual(p.created_at_unix_ms, t0 - 1000)
        self.assertGreaterEqual(p.updated_at_unix_ms, p.created_at_unix_ms)
        created = p.created_at_unix_ms
        time.sleep(0.01)
        p = self.update(P, {"b": "two", "c": ""}, remove=["a", "missing"])
        self.assertEqual((dict(p.fields), p.version), ({"b": "two", "c": ""}, 2))
        self.assertEqual(p.created_at_unix_ms, created)
        self.assertGreater(p.updated_at_unix_ms, created)
        p = self.update(P)  # no change still advances the version
        self.assertEqual(p.version, 3)
        g = self.call("GetProject", pb().GetProjectRequest(project_id=P))
        self.assertEqual((dict(g.fields), g.version, g.created_at_unix_ms),
                         ({"b": "two", "c": ""}, 3, created))
        self.err("UpdateProject", pb().UpdateProjectRequest(
            project_id=P, set_fields={"x": "1"}, remove_fields=["x"]), SC.INVALID_ARGUMENT, "x")
        self.assertEqual(self.call("GetProject", pb().GetProjectRequest(project_id=P)).version, 3)

    def test_expected_version(self):
        P = "proj-cas"
        m = self.err("UpdateProject", self._req(P, {"a": "1"}, 5), SC.FAILED_PRECONDITION)
        self.assertEqual(m, "version mismatch: expected 5, current 0")
        p = self.update(P, {"a": "1"}, expected=0)
        self.assertEqual(p.version, 1)
        m = self.err("UpdateProject", self._req(P, {"a": "2"}, 0), SC.FAILED_PRECONDITION)
        self.assertEqual(m, "version mismatch: expected 0, current 1")
        self.assertEqual(self.update(P, {"a": "2"}, expected=1).version, 2)
        self.assertEqual(self.update(P, {"a": "3"}).version, 3)
        m = self.err("UpdateProject", self._req(P, {"a": "bad"}, 2), SC.FAILED_PRECONDITION)
        self.assertEqual(m, "version mismatch: expected 2, current 3")
        g = self.call("GetProject", pb().GetProjectRequest(project_id=P))
        self.assertEqual((g.version, dict(g.fields)), (3, {"a": "3"}), "a failed CAS writes nothing")
        # a project created by history has version 0: expected 0 applies
        Q = "proj-cas-hist"
        self.append(Q, command="x")
        self.assertEqual(self.update(Q, {"k": "v"}, expected=0).version, 1)
        self.assertEqual(self.call("GetProject", pb().GetProjectRequest(
            project_id=Q)).execution_count, 1)

    def _req(self, project, fields, expected):
        r = pb().UpdateProjectRequest(project_id=project, set_fields=fields)
        r.expected.version = expected
        return r

    def test_retention_policy(self):
        P = "proj-retention"
        p = self.update(P, retention=pb().RetentionPolicy(max_records=10, max_age_s=3600))
        self.assertEqual((p.retention.max_records, p.retention.max_age_s), (10, 3600))
        p = self.update(P, {"a": "b"})  # unset = unchanged
        self.assertEqual((p.retention.max_records, p.retention.max_age_s), (10, 3600))
        self.err("UpdateProject", pb().UpdateProjectRequest(
            project_id=P, retention=pb().RetentionPolicy(max_age_s=-1)),
            SC.INVALID_ARGUMENT, "max_age_s")

    def test_get_missing_not_found(self):
        self.err("GetProject", pb().GetProjectRequest(project_id="proj-none"), SC.NOT_FOUND,
                 "proj-none")

    def test_list_pagination_and_prefix(self):
        ids = ["lp-%02d" % i for i in range(7)] + ["lp-A", "lp-_z", "lq-1"]
        for i in reversed(ids):
            self.update(i, {"n": i})
        want = sorted(i for i in ids if i.startswith("lp-"))  # byte-wise order
        got, tok, pages = [], "", 0
        while True:
            r = self.call("ListProjects", pb().ListProjectsRequest(prefix="lp-", limit=4,
                                                                   page_token=tok))
            self.assertLessEqual(len(r.projects), 4)
            for p in r.projects:
                self.assertEqual(p.fields["n"], p.project_id)
                self.assertEqual(p.version, 1)
            got.extend(p.project_id for p in r.projects)
            pages += 1
            tok = r.next_page_token
            if not tok:
                break
        self.assertEqual(got, want)
        self.assertEqual(pages, 3)
        allp = [p.project_id for p in self.call("ListProjects", pb().ListProjectsRequest(
            limit=5000)).projects]
        self.assertEqual(allp, sorted(allp))
        for i in ids:
            self.assertIn(i, allp)
        tok = self.call("ListProjects", pb().ListProjectsRequest(prefix="lp-", limit=2)) \
            .next_page_token
        for bad in ("!!", "AAAAAAAAAAAAAAAAAAAAAAAA", tok[:-1] + ("A" if tok[-1] != "A" else "B")):
            self.err("ListProjects", pb().ListProjectsRequest(prefix="lp-", limit=2,
                                                              page_token=bad),
                     SC.INVALID_ARGUMENT, "page_token")
        self.err("ListProjects", pb().ListProjectsRequest(prefix="lq-", limit=2, page_token=tok),
                 SC.INVALID_ARGUMENT, "page_token")
        self.err("ListProjects", pb().ListProjectsRequest(limit=-1), SC.INVALID_ARGUMENT, "limit")
        self.assertEqual(list(self.call("ListProjects", pb().ListProjectsRequest(
            prefix="no-such-prefix")).projects), [])

    def test_list_default_limit(self):
        for i in range(105):
            self.update("dl-%03d" % i)
        r = self.call("ListProjects", pb().ListProjectsRequest(prefix="dl-"))
        self.assertEqual(len(r.projects), 100, "limit 0 = 100")
        self.assertNotEqual(r.next_page_token, "")
        r = self.call("ListProjects", pb().ListProjectsRequest(prefix="dl-",
                                                               page_token=r.next_page_token))
        self.assertEqual([p.project_id for p in r.projects], ["dl-%03d" % i for i in range(100, 105)])
        self.assertEqual(r.next_page_token, "")

    def test_delete_removes_everything(self):
        P = "proj-del"
        self.update(P, {"a": "1"})
        for i in range(3):
            self.append(P, command="c%d" % i, record_id="r%d" % i)
        self.call("PutCachedResult", pb().PutCachedResultRequest(
            project_id=P, result=pb().CachedResult(command_key="ck"), ttl_s=60))
        self.call("Set", pb().KvSetRequest(key="proj-del-kv", value=b"kept"))
        self.update(P + "x", {"b": "2"})  # a neighbour whose id extends P
        self.append(P + "x", command="n")
        r = self.call("DeleteProject", pb().DeleteProjectRequest(project_id=P))
        self.assertTrue(r.existed)
        self.err("GetProject", pb().GetProjectRequest(project_id=P), SC.NOT_FOUND)
        self.assertEqual(self.list_all(P), [])
        g = self.call("GetCachedResult", pb().GetCachedResultRequest(project_id=P, command_key="ck"))
        self.assertEqual((g.found, g.expired), (False, False))
        self.assertNotIn(P, [p.project_id for p in self.call(
            "ListProjects", pb().ListProjectsRequest(prefix="proj-del")).projects])
        self.assertFalse(self.call("DeleteProject",
                                   pb().DeleteProjectRequest(project_id=P)).existed)
        # the neighbour and the KV space are untouched
        self.assertEqual(self.call("GetProject", pb().GetProjectRequest(
            project_id=P + "x")).fields["b"], "2")
        self.assertEqual(len(self.list_all(P + "x")), 1)
        self.assertEqual(self.call("Get", pb().KvGetRequest(key="proj-del-kv")).value, b"kept")
        # re-created: empty, and an old record_id is not remembered
        p = self.update(P, {"new": "1"})
        self.assertEqual((dict(p.fields), p.version, p.execution_count), ({"new": "1"}, 1, 0))
        a = self.append(P, command="again", record_id="r0")
        self.assertFalse(a.duplicate)
        self.assertEqual([x.command for x in self.list_all(P)], ["again"])
        self.assertFalse(self.call("GetCachedResult", pb().GetCachedResultRequest(
            project_id=P, command_key="ck")).found)
        # a project that exists only through its cache is deleted too
        self.call("PutCachedResult", pb().PutCachedResultRequest(
            project_id="proj-del-cacheonly", result=pb().CachedResult(command_key="k")))
        self.assertTrue(self.call("DeleteProject", pb().DeleteProjectRequest(
            project_id="proj-del-cacheonly")).existed)


# =============================================================================================
class KvTest(StoreMixin, unittest.TestCase):
    """Set / Get / Delete / Incr / List / Flush."""

    @classmethod
    def server_args(cls):
        # no background sweeper: expired entries stay until read (what these tests observe)
        return ["--sweep-interval-ms", "0"]

    def set(self, key, value=b"", md=None, expected=None, **kw):
        req = pb().KvSetRequest(key=key, value=value, **kw)
        if expected is not None:
            req.expected.version = expected
        return self.call("Set", req, md=md)

    def get(self, key, md=None):
        return self.call("Get", pb().KvGetRequest(key=key), md=md)

    def incr(self, key, delta):
        return self.call("Incr", pb().KvIncrRequest(key=key, delta=delta))

    def test_set_get_delete(self):
        v1 = self.set("kv-basic", b"hello\x00\xffworld")
        self.assertGreaterEqual(v1.version, 1)
        self.assertEqual(v1.expires_at_unix_ms, 0)
        g = self.get("kv-basic")
        self.assertEqual((g.key, g.value, g.version, g.expires_at_unix_ms),
                         ("kv-basic", b"hello\x00\xffworld", v1.version, 0))
        v2 = self.set("kv-basic", b"")
        self.assertGreater(v2.version, v1.version)
        self.assertEqual(self.get("kv-basic").value, b"")
        self.assertTrue(self.call("Delete", pb().KvDeleteRequest(key="kv-basic")).existed)
        self.assertFalse(self.call("Delete", pb().KvDeleteRequest(key="kv-basic")).existed)
        self.err("Get", pb().KvGetRequest(key="kv-basic"), SC.NOT_FOUND)
        v3 = self.set("kv-basic", b"again")
        self.assertGreater(v3.version, v2.version, "versions grow even across Delete")
        # unicode and odd bytes in keys
        for k in ("kv-ünïcødé/☃", "kv with spaces", "kv\n\t\x01", "k" * 1024):
            self.set(k, k.encode())
            self.assertEqual(self.get(k).value, k.encode())
        # the largest value
        big = os.urandom(KV_MAX_VALUE)
        self.set("kv-big", big)
        self.assertEqual(self.get("kv-big").value, big)

    def test_ttl_seconds(self):
        t0 = now_ms()
        r = self.set("kv-ttl", b"v", ttl_s=1)
        self.assertGreaterEqual(r.expires_at_unix_ms, t0 + 1000 - 200)
        self.assertLessEqual(r.expires_at_unix_ms, now_ms() + 1000 + 200)
        g = self.get("kv-ttl")
        self.assertEqual((g.value, g.expires_at_unix_ms), (b"v", r.expires_at_unix_ms))
        self.set("kv-ttl-long", b"v", ttl_s=3600)
        time.sleep(1.3)
        self.err("Get", pb().KvGetRequest(key="kv-ttl"), SC.NOT_FOUND)
        self.assertFalse(self.call("Delete", pb().KvDeleteRequest(key="kv-ttl")).existed,
                         "existed = false for an expired key")
        self.assertEqual(self.get("kv-ttl-long").value, b"v")
        keys = [e.key for e in self.call("List", pb().KvListRequest(prefix="kv-ttl")).entries]
        self.assertEqual(keys, ["kv-ttl-long"], "List skips expired keys")
        # the maximum TTL (10 years) is accepted
        r = self.set("kv-ttl-max", b"v", ttl_s=315360000)
        self.assertAlmostEqual(r.expires_at_unix_ms - now_ms(), 315360000 * 1000, delta=5000)

    def test_ttl_absolute(self):
        at = now_ms() + 1200
        r = self.set("kv-abs", b"v", expires_at_unix_ms=at)
        self.assertEqual(r.expires_at_unix_ms, at)
        self.assertEqual(self.get("kv-abs").expires_at_unix_ms, at)
        time.sleep(max(0, (at - now_ms()) / 1000.0) + 0.3)
        self.err("Get", pb().KvGetRequest(key="kv-abs"), SC.NOT_FOUND)
        # past, both, negative, absurd
        self.err("Set", pb().KvSetRequest(key="kv-abs", expires_at_unix_ms=now_ms() - 1000),
                 SC.INVALID_ARGUMENT, "expires_at_unix_ms")
        self.err("Set", pb().KvSetRequest(key="kv-abs", expires_at_unix_ms=-5),
                 SC.INVALID_ARGUMENT, "expires_at_unix_ms")
        self.err("Set", pb().KvSetRequest(key="kv-abs", ttl_s=5, expires_at_unix_ms=now_ms() + 9000),
                 SC.INVALID_ARGUMENT, "ttl_s", "expires_at_unix_ms")
        self.err("Set", pb().KvSetRequest(key="kv-abs", expires_at_unix_ms=2**62),
                 SC.INVALID_ARGUMENT, "expires_at_unix_ms")
        for bad in (-1, 315360001, 2**63 - 1):
            self.err("Set", pb().KvSetRequest(key="kv-abs", ttl_s=bad), SC.INVALID_ARGUMENT,
                     "ttl_s", "315360000")
        self.err("Get", pb().KvGetRequest(key="kv-abs"), SC.NOT_FOUND)

    def test_expected_version_cas(self):
        K = "kv-cas"
        r = self.set(K, b"1", expected=0)  # must not exist: ok
        m = self.err("Set", self._cas(K, b"2", 0), SC.FAILED_PRECONDITION)
        self.assertEqual(m, "version mismatch: expected 0, current %d" % r.version)
        r2 = self.set(K, b"2", expected=r.version)
        self.assertGreater(r2.version, r.version)
        m = self.err("Set", self._cas(K, b"3", r.version), SC.FAILED_PRECONDITION)
        self.assertEqual(m, "version mismatch: expected %d, current %d" % (r.version, r2.version))
        self.assertEqual(self.get(K).value, b"2", "a failed CAS writes nothing")
        m = self.err("Set", self._cas("kv-cas-missing", b"x", 7), SC.FAILED_PRECONDITION)
        self.assertEqual(m, "version mismatch: expected 7, current 0")
        # an expired key counts as missing
        self.set("kv-cas-exp", b"x", ttl_s=1)
        time.sleep(1.2)
        self.set("kv-cas-exp", b"y", expected=0)
        self.assertEqual(self.get("kv-cas-exp").value, b"y")
        # Incr gives a new version that CAS sees
        iv = self.incr("kv-cas-n", 1).version
        m = self.err("Set", self._cas("kv-cas-n", b"x", iv - 1), SC.FAILED_PRECONDITION)
        self.assertEqual(m, "version mismatch: expected %d, current %d" % (iv - 1, iv))
        self.set("kv-cas-n", b"5", expected=iv)

    def _cas(self, k, v, ver):
        r = pb().KvSetRequest(key=k, value=v)
        r.expected.version = ver
        return r

    def test_incr(self):
        K = "kv-incr"
        r = self.incr(K, 1)
        self.assertEqual(r.value, 1, "missing = 0")
        self.assertGreaterEqual(r.version, 1)
        self.assertEqual(self.incr(K, 41).value, 42)
        self.assertEqual(self.incr(K, -50).value, -8)
        g = self.get(K)
        self.assertEqual((g.value, g.expires_at_unix_ms), (b"-8", 0))
        v = g.version
        z = self.incr(K, 0)
        self.assertEqual((z.value, z.version), (-8, v), "delta 0 only reads")
        z = self.incr("kv-incr-none", 0)
        self.assertEqual((z.value, z.version), (0, 0))
        self.err("Get", pb().KvGetRequest(key="kv-incr-none"), SC.NOT_FOUND,)
        # a Set decimal value counts
        self.set("kv-incr-s", b"-42")
        self.assertEqual(self.incr("kv-incr-s", 2).value, -40)
        # non-integers: FAILED_PRECONDITION, value unchanged
        for bad in (b"abc", b"", b"1.5", b" 1", b"1 ", b"0x10", b"99999999999999999999", b"--1"):
            self.set("kv-incr-bad", bad)
            self.err("Incr", pb().KvIncrRequest(key="kv-incr-bad", delta=1),
                     SC.FAILED_PRECONDITION, "decimal int64")
            self.assertEqual(self.get("kv-incr-bad").value, bad)
        # overflow: OUT_OF_RANGE, nothing written
        self.set("kv-incr-max", b"9223372036854775807")
        self.err("Incr", pb().KvIncrRequest(key="kv-incr-max", delta=1), SC.OUT_OF_RANGE)
        self.assertEqual(self.get("kv-incr-max").value, b"9223372036854775807")
        self.assertEqual(self.incr("kv-incr-max", -7).value, 2**63 - 8)
        self.set("kv-incr-min", b"-9223372036854775808")
        self.err("Incr", pb().KvIncrRequest(key="kv-incr-min", delta=-1), SC.OUT_OF_RANGE)
        self.assertEqual(self.incr("kv-incr-min2", -2**63).value, -2**63)
        self.err("Incr", pb().KvIncrRequest(key="kv-incr-min2", delta=-1), SC.OUT_OF_RANGE)
        # an existing expiry is kept; an expired key counts as 0 and gets no expiry
        s = self.set("kv-incr-ttl", b"5", ttl_s=60)
        self.assertEqual(self.incr("kv-incr-ttl", 1).value, 6)
        self.assertEqual(self.get("kv-incr-ttl").expires_at_unix_ms, s.expires_at_unix_ms)
        self.set("kv-incr-exp", b"100", ttl_s=1)
        time.sleep(1.2)
        self.assertEqual(self.incr("kv-incr-exp", 1).value, 1)
        self.assertEqual(self.get("kv-incr-exp").expires_at_unix_ms, 0)

    def test_list(self):
        keys = ["kl/%02d" % i for i in range(12)] + ["kl/z\u00e9", "kl/A"]
        for k in keys:
            self.set(k, ("v:" + k).encode())
        self.set("km/other", b"x")
        self.set("kk", b"x")
        want = sorted(keys, key=lambda s: s.encode())
        got, cur, pages = [], "", 0
        while True:
            r = self.call("List", pb().KvListRequest(prefix="kl/", limit=5, cursor=cur))
            self.assertLessEqual(len(r.entries), 5)
            for e in r.entries:
                self.assertEqual(e.value, ("v:" + e.key).encode())
                self.assertGreaterEqual(e.version, 1)
            got.extend(e.key for e in r.entries)
            pages += 1
            cur = r.next_cursor
            if not cur:
                break
        self.assertEqual(got, want)
        self.assertEqual(pages, 3)
        r = self.call("List", pb().KvListRequest(prefix="kl/", keys_only=True, limit=1000))
        self.assertEqual([e.key for e in r.entries], want)
        self.assertTrue(all(e.value == b"" and e.version >= 1 for e in r.entries))
        self.assertEqual(r.next_cursor, "")
        allk = [e.key for e in self.call("List", pb().KvListRequest(limit=5000)).entries]
        self.assertEqual(allk, sorted(allk, key=lambda s: s.encode()))
        for k in want + ["km/other", "kk"]:
            self.assertIn(k, allk)
        cur = self.call("List", pb().KvListRequest(prefix="kl/", limit=2)).next_cursor
        self.assertNotEqual(cur, "")
        for bad in ("zzz", "!", cur[:-1] + ("A" if cur[-1] != "A" else "B")):
            self.err("List", pb().KvListRequest(prefix="kl/", limit=2, cursor=bad),
                     SC.INVALID_ARGUMENT, "cursor")
        self.err("List", pb().KvListRequest(prefix="km/", limit=2, cursor=cur),
                 SC.INVALID_ARGUMENT, "cursor")
        self.err("List", pb().KvListRequest(limit=-3), SC.INVALID_ARGUMENT, "limit")
        self.err("List", pb().KvListRequest(prefix="p" * 1025), SC.INVALID_ARGUMENT, "prefix",
                 "1024")
        # limit 0 = 100
        for i in range(105):
            self.set("kd/%03d" % i, b"")
        r = self.call("List", pb().KvListRequest(prefix="kd/"))
        self.assertEqual(len(r.entries), 100)
        r = self.call("List", pb().KvListRequest(prefix="kd/", cursor=r.next_cursor))
        self.assertEqual([e.key for e in r.entries], ["kd/%03d" % i for i in range(100, 105)])

    def test_tenant_names_that_prefix_each_other(self):
        # tenant "pre" must not see (or flush) tenant "pre1"'s keys or projects
        A, B = [("x-sbx-tenant", "pre")], [("x-sbx-tenant", "pre1")]
        self.set("k", b"A", md=A)
        self.set("k", b"B", md=B)
        self.set("1k", b"B", md=B)
        self.call("UpdateProject", pb().UpdateProjectRequest(project_id="p"), md=B)
        self.assertEqual([e.key for e in self.call("List", pb().KvListRequest(), md=A).entries],
                         ["k"])
        self.assertEqual(list(self.call("ListProjects", pb().ListProjectsRequest(), md=A)
                              .projects), [])
        self.assertEqual(self.get("k", md=A).value, b"A")
        self.assertEqual(self.call("Flush", pb().KvFlushRequest(), md=A).deleted, 1)
        self.assertEqual([e.key for e in self.call("List", pb().KvListRequest(), md=B).entries],
                         ["1k", "k"])

    def test_versions_grow_across_flush_and_plain_set_clears_ttl(self):
        md = [("x-sbx-tenant", "vers")]
        v1 = self.set("a", b"1", md=md).version
        v2 = self.set("a", b"2", md=md).version
        self.call("Flush", pb().KvFlushRequest(), md=md)
        v3 = self.set("a", b"3", md=md).version
        self.assertGreater(v2, v1)
        self.assertGreater(v3, v2, "a key's version must exceed every version it had, "
                           "even across Flush")
        self.set("t", b"x", ttl_s=100, md=md)
        r = self.set("t", b"y", md=md)
        self.assertEqual(r.expires_at_unix_ms, 0, "ttl_s 0 = no expiry")
        self.assertEqual(self.get("t", md=md).expires_at_unix_ms, 0)

    def test_list_of_large_values_is_paged(self):
        # 60 values of 1 MiB (60 MiB): pages are cut under the message limit, never fail
        for i in range(60):
            self.set("kbig/%02d" % i, bytes([i]) * KV_MAX_VALUE)
        got, cur = [], ""
        while True:
            r = self.call("List", pb().KvListRequest(prefix="kbig/", limit=1000, cursor=cur))
            got.extend(r.entries)
            cur = r.next_cursor
            if not cur:
                break
        self.assertEqual([e.key for e in got], ["kbig/%02d" % i for i in range(60)])
        for i, e in enumerate(got):
            self.assertEqual(e.value, bytes([i]) * KV_MAX_VALUE)

    def test_flush_only_callers_tenant(self):
        # no --api-keys: the caller is trusted and x-sbx-tenant picks the tenant
        A, B = [("x-sbx-tenant", "flush-a")], [("x-sbx-tenant", "flush-b")]
        for i in range(3):
            self.set("f%d" % i, b"a", md=A)
        self.set("gone", b"a", md=A, ttl_s=1)
        for i in range(2):
            self.set("f%d" % i, b"b", md=B)
        self.call("UpdateProject", pb().UpdateProjectRequest(project_id="flush-proj",
                                                             set_fields={"x": "1"}), md=A)
        time.sleep(1.1)
        r = self.call("Flush", pb().KvFlushRequest(), md=A)
        self.assertEqual(r.deleted, 4, "expired keys included")
        self.assertEqual(list(self.call("List", pb().KvListRequest(), md=A).entries), [])
        self.assertEqual([e.key for e in self.call("List", pb().KvListRequest(), md=B).entries],
                         ["f0", "f1"])
        self.assertEqual(self.get("f0", md=B).value, b"b")
        self.assertEqual(self.call("GetProject", pb().GetProjectRequest(project_id="flush-proj"),
                                   md=A).fields["x"], "1", "projects untouched")
        self.assertEqual(self.call("Flush", pb().KvFlushRequest(), md=A).deleted, 0)
        # versions keep growing after a flush
        self.set("f0", b"new", md=A)
        self.assertEqual(self.get("f0", md=A).value, b"new")


# =============================================================================================
class TenantTest(StoreMixin, unittest.TestCase):
    """Tenant isolation with an --api-keys file (acme, globex, @service)."""

    api_keys = True
    ACME = h.bearer(TENANT_KEY)
    GLOBEX = h.bearer(OTHER_KEY)

    def test_other_tenants_project_does_not_exist(self):
        P = "secret-plan"
        self.call("UpdateProject", pb().UpdateProjectRequest(project_id=P, set_fields={"a": "1"}),
                  md=self.ACME)
        self.append(P, md=self.ACME, command="acme only", record_id="r1")
        self.call("PutCachedResult", pb().PutCachedResultRequest(
            project_id=P, result=pb().CachedResult(command_key="ck")), md=self.ACME)
        G = self.GLOBEX
        self.err("GetProject", pb().GetProjectRequest(project_id=P), SC.NOT_FOUND, md=G)
        self.assertEqual(self.list_all(P, md=G), [])
        self.assertNotIn(P, [p.project_id for p in self.call(
            "ListProjects", pb().ListProjectsRequest(), md=G).projects])
        self.assertFalse(self.call("GetCachedResult", pb().GetCachedResultRequest(
            project_id=P, command_key="ck"), md=G).found)
        self.assertEqual(self.call("ClearCache", pb().ClearCacheRequest(project_id=P), md=G).cleared, 0)
        self.assertFalse(self.call("DeleteProject", pb().DeleteProjectRequest(project_id=P),
                                   md=G).existed)
        # the same id for globex is a different project with its own sequence
        a = self.append(P, md=G, command="globex", record_id="r1")
        self.assertEqual((a.seq, a.duplicate), (1, False))
        m = self.err("UpdateProject", self._cas(P, 1), SC.FAILED_PRECONDITION, md=G)
        self.assertEqual(m, "version mismatch: expected 1, current 0")
        # acme's data is intact
        p = self.call("GetProject", pb().GetProjectRequest(project_id=P), md=self.ACME)
        self.assertEqual((dict(p.fields), p.version, p.execution_count), ({"a": "1"}, 1, 1))
        self.assertEqual([r.command for r in self.list_all(P, md=self.ACME)], ["acme only"])
        self.assertTrue(self.call("GetCachedResult", pb().GetCachedResultRequest(
            project_id=P, command_key="ck"), md=self.ACME).found)
        # a watch by globex does not see acme's records
        w = self.st.WatchExecutions(pb().WatchExecutionsRequest(project_id=P, from_seq=1),
                                    metadata=G, timeout=1.0)
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for r in w:
                got.append(r.command)
        self.assertEqual(cm.exception.code(), SC.DEADLINE_EXCEEDED)
        self.assertEqual(got, ["globex"])

    def _cas(self, p, v):
        r = pb().UpdateProjectRequest(project_id=p)
        r.expected.version = v
        return r

    def test_other_tenants_keys_absent(self):
        self.call("Set", pb().KvSetRequest(key="acme-key", value=b"a"), md=self.ACME)
        self.call("Incr", pb().KvIncrRequest(key="acme-n", delta=5), md=self.ACME)
        G = self.GLOBEX
        self.err("Get", pb().KvGetRequest(key="acme-key"), SC.NOT_FOUND, md=G)
        self.assertNotIn("acme-key", [e.key for e in self.call(
            "List", pb().KvListRequest(), md=G).entries])
        self.assertFalse(self.call("Delete", pb().KvDeleteRequest(key="acme-key"), md=G).existed)
        self.assertEqual(self.call("Incr", pb().KvIncrRequest(key="acme-n", delta=1),
                                   md=G).value, 1)
        self.call("Set", self._kvcas("acme-key", 0), md=G)  # missing for globex: CAS 0 works
        self.call("Flush", pb().KvFlushRequest(), md=G)
        self.assertEqual(self.call("Get", pb().KvGetRequest(key="acme-key"), md=self.ACME).value,
                         b"a")
        self.assertEqual(self.call("Get", pb().KvGetRequest(key="acme-n"), md=self.ACME).value,
                         b"5")
        # a cursor issued to acme is not valid for globex
        for i in range(3):
            self.call("Set", pb().KvSetRequest(key="acme-l%d" % i), md=self.ACME)
        cur = self.call("List", pb().KvListRequest(limit=1), md=self.ACME).next_cursor
        self.err("List", pb().KvListRequest(limit=1, cursor=cur), SC.INVALID_ARGUMENT, "cursor",
                 md=G)

    def _kvcas(self, k, v):
        r = pb().KvSetRequest(key=k, value=b"g")
        r.expected.version = v
        return r

    def test_tenant_key_cannot_act_for_another(self):
        md = self.ACME + [("x-sbx-tenant", "globex")]
        self.err("Get", pb().KvGetRequest(key="x"), SC.PERMISSION_DENIED, "x-sbx-tenant", md=md)
        # naming itself is fine
        self.err("Get", pb().KvGetRequest(key="nope"), SC.NOT_FOUND,
                 md=self.ACME + [("x-sbx-tenant", "acme")])

    def test_service_acts_for_named_tenant(self):
        self.call("Set", pb().KvSetRequest(key="svc-k", value=b"acme's"), md=self.ACME)
        svc = h.bearer(SERVICE_KEY)
        g = self.call("Get", pb().KvGetRequest(key="svc-k"), md=svc + [("x-sbx-tenant", "acme")])
        self.assertEqual(g.value, b"acme's")
        self.err("Get", pb().KvGetRequest(key="svc-k"), SC.NOT_FOUND,
                 md=svc + [("x-sbx-tenant", "globex")])
        self.err("Get", pb().KvGetRequest(key="svc-k"), SC.NOT_FOUND, md=svc)  # "default"
        self.err("Get", pb().KvGetRequest(key="svc-k"), SC.INVALID_ARGUMENT, "x-sbx-tenant",
                 md=svc + [("x-sbx-tenant", "bad tenant!")])
        self.err("Get", pb().KvGetRequest(key="svc-k"), SC.INVALID_ARGUMENT, "x-sbx-tenant",
                 md=svc + [("x-sbx-tenant", "t" * 65)])

    def test_unknown_or_missing_key(self):
        for md in (None, h.bearer("no-such-key"), h.bearer(h.sha256_hex(TENANT_KEY)),
                   [("authorization", TENANT_KEY)]):
            for rpc, req in (("Get", pb().KvGetRequest(key="x")),
                             ("ListProjects", pb().ListProjectsRequest()),
                             ("AppendExecution", pb().AppendExecutionRequest(
                                 project_id="p", record=pb().ExecutionRecord()))):
                self.err(rpc, req, SC.UNAUTHENTICATED, md=md)


# =============================================================================================
class CheckpointKeylessTest(StoreMixin, unittest.TestCase):
    """Without --api-keys every loopback caller counts as a service principal: Checkpoint then
    writes only under the store's --data-dir (issue 9: before, any local caller could make the
    store copy its database to any absolute path as its own user)."""

    def test_outside_the_data_dir_is_refused(self):
        data = self.server.data_dir
        outside = os.path.join(self.tmp, "ckpt-outside")
        link = os.path.join(data, "link-out")
        os.symlink(self.tmp, link)
        for d in (outside, "/tmp/sbx-ckpt-%d" % os.getpid(), os.path.join(data, "..", "escape"),
                  os.path.join(link, "via-link"), data + "-sibling", "/"):
            with self.subTest(dir=d):
                self.err("Checkpoint", pb().CheckpointRequest(dir=d), SC.PERMISSION_DENIED,
                         "dir", "--data-dir")
        for d in (outside, "/tmp/sbx-ckpt-%d" % os.getpid(), os.path.join(self.tmp, "escape"),
                  os.path.join(self.tmp, "via-link")):
            self.assertFalse(os.path.exists(d), d)
        self.err("Checkpoint", pb().CheckpointRequest(dir="relative"), SC.INVALID_ARGUMENT, "dir")

    def test_under_the_data_dir(self):
        self.call("Set", pb().KvSetRequest(key="ck", value=b"kept"))
        d = os.path.join(self.server.data_dir, "checkpoints")
        os.mkdir(d)
        cp = os.path.join(d, "one")
        r = self.call("Checkpoint", pb().CheckpointRequest(dir=cp), timeout=60)
        self.assertEqual(r.dir, cp)
        self.assertTrue(os.listdir(cp))
        self.err("Checkpoint", pb().CheckpointRequest(dir=cp), SC.ALREADY_EXISTS)
        s2 = self.start_store([], data_dir=cp)
        with h.channel(s2.addr) as ch2:
            g = new_stub(ch2).Get(pb().KvGetRequest(key="ck"), timeout=10)
            self.assertEqual(g.value, b"kept")


class CheckpointTest(StoreMixin, unittest.TestCase):
    """Checkpoint: service principal only; a second sbx-store opens the copy."""

    api_keys = True
    SVC = h.bearer(SERVICE_KEY) + [("x-sbx-tenant", "acme")]
    ACME = h.bearer(TENANT_KEY)

    def test_tenant_key_permission_denied(self):
        d = os.path.join(self.tmp, "ckpt-denied")
        self.err("Checkpoint", pb().CheckpointRequest(dir=d), SC.PERMISSION_DENIED, md=self.ACME)
        self.assertFalse(os.path.exists(d))
        self.err("Checkpoint", pb().CheckpointRequest(dir=d), SC.UNAUTHENTICATED)

    def test_bad_dirs(self):
        svc = h.bearer(SERVICE_KEY)
        self.err("Checkpoint", pb().CheckpointRequest(dir="relative/dir"), SC.INVALID_ARGUMENT,
                 "dir", md=svc)
        self.err("Checkpoint", pb().CheckpointRequest(dir=""), SC.INVALID_ARGUMENT, "dir", md=svc)
        self.err("Checkpoint", pb().CheckpointRequest(dir="/" + "d" * 4096), SC.INVALID_ARGUMENT,
                 "dir", "4096", md=svc)
        self.err("Checkpoint", pb().CheckpointRequest(dir=self.tmp), SC.ALREADY_EXISTS, md=svc)
        self.err("Checkpoint", pb().CheckpointRequest(
            dir=os.path.join(self.tmp, "no-parent", "ckpt")), SC.FAILED_PRECONDITION, md=svc)

    def test_checkpoint_opened_by_second_store(self):
        A = self.ACME
        self.call("Set", pb().KvSetRequest(key="ck-k", value=b"v1"), md=A)
        self.call("Incr", pb().KvIncrRequest(key="ck-n", delta=41), md=A)
        self.call("UpdateProject", pb().UpdateProjectRequest(project_id="ck-p",
                                                             set_fields={"f": "x"}), md=A)
        for i in range(3):
            self.append("ck-p", md=A, command="c%d" % i, record_id="id%d" % i)
        self.call("PutCachedResult", pb().PutCachedResultRequest(
            project_id="ck-p", result=pb().CachedResult(command_key="ck", stdout=b"cached"),
            ttl_s=600), md=A)
        self.call("Set", pb().KvSetRequest(key="ck-g", value=b"globex"), md=h.bearer(OTHER_KEY))
        d = os.path.join(self.tmp, "ckpt-1")
        r = self.call("Checkpoint", pb().CheckpointRequest(dir=d), md=self.SVC, timeout=60)
        self.assertEqual(r.dir, d)
        self.assertGreater(r.sequence_number, 0)
        self.assertGreaterEqual(r.took_us, 0)
        self.assertTrue(os.path.isdir(d))
        self.assertTrue(os.listdir(d))
        self.err("Checkpoint", pb().CheckpointRequest(dir=d), SC.ALREADY_EXISTS, md=self.SVC)
        # writes after the checkpoint are not in it
        self.call("Set", pb().KvSetRequest(key="ck-k", value=b"v2"), md=A)
        self.call("Set", pb().KvSetRequest(key="ck-late", value=b"late"), md=A)
        self.append("ck-p", md=A, command="late")
        # a second store on the checkpoint
        s2 = self.start_store([], data_dir=d)
        with h.channel(s2.addr) as ch2:
            st2 = new_stub(ch2)
            g = st2.Get(pb().KvGetRequest(key="ck-k"), metadata=A, timeout=10)
            self.assertEqual(g.value, b"v1")
            self.assertEqual(st2.Get(pb().KvGetRequest(key="ck-n"), metadata=A,
                                     timeout=10).value, b"41")
            with self.assertRaises(grpc.RpcError) as cm:
                st2.Get(pb().KvGetRequest(key="ck-late"), metadata=A, timeout=10)
            self.assertEqual(cm.exception.code(), SC.NOT_FOUND)
            self.assertEqual(st2.Get(pb().KvGetRequest(key="ck-g"), metadata=h.bearer(OTHER_KEY),
                                     timeout=10).value, b"globex", "all tenants")
            p = st2.GetProject(pb().GetProjectRequest(project_id="ck-p"), metadata=A, timeout=10)
            self.assertEqual((dict(p.fields), p.version, p.execution_count, p.last_execution_seq),
                             ({"f": "x"}, 1, 3, 3))
            recs = st2.ListExecutions(pb().ListExecutionsRequest(project_id="ck-p"), metadata=A,
                                      timeout=10).records
            self.assertEqual([(x.seq, x.command) for x in recs], [(3, "c2"), (2, "c1"), (1, "c0")])
            c = st2.GetCachedResult(pb().GetCachedResultRequest(project_id="ck-p",
                                                                command_key="ck"),
                                    metadata=A, timeout=10)
            self.assertTrue(c.found)
            self.assertEqual(c.result.stdout, b"cached")
            # the copy is a live database: sequences and record ids continue
            dup = st2.AppendExecution(pb().AppendExecutionRequest(
                project_id="ck-p", record=pb().ExecutionRecord(record_id="id1")), metadata=A,
                timeout=10)
            self.assertEqual((dup.seq, dup.duplicate), (2, True))
            self.assertEqual(st2.AppendExecution(pb().AppendExecutionRequest(
                project_id="ck-p", record=pb().ExecutionRecord(command="in copy")), metadata=A,
                timeout=10).seq, 4)
        # the original is unaffected by writes to the copy
        recs = self.list_all("ck-p", md=A)
        self.assertEqual([x.command for x in recs][:1], ["late"])
        self.assertEqual(s2.stop(), 0, s2.stderr_text()[-2000:])


# =============================================================================================
class BadInputTest(StoreMixin, unittest.TestCase):
    """Every bad input gets INVALID_ARGUMENT (or the documented code) naming field and limit."""

    def project_rpcs(self, pid):
        P = pb()
        return [
            ("AppendExecution", P.AppendExecutionRequest(project_id=pid, record=P.ExecutionRecord())),
            ("RecordExecution", P.RecordExecutionRequest(project_id=pid, record=P.ExecutionRecord())),
            ("ListExecutions", P.ListExecutionsRequest(project_id=pid)),
            ("GetCachedResult", P.GetCachedResultRequest(project_id=pid, command_key="k")),
            ("PutCachedResult", P.PutCachedResultRequest(project_id=pid,
                                                         result=P.CachedResult(command_key="k"))),
            ("ClearCache", P.ClearCacheRequest(project_id=pid)),
            ("GetProject", P.GetProjectRequest(project_id=pid)),
            ("UpdateProject", P.UpdateProjectRequest(project_id=pid)),
            ("DeleteProject", P.DeleteProjectRequest(project_id=pid)),
        ]

    def key_rpcs(self, key):
        P = pb()
        return [("Set", P.KvSetRequest(key=key, value=b"v")), ("Get", P.KvGetRequest(key=key)),
                ("Delete", P.KvDeleteRequest(key=key)), ("Incr", P.KvIncrRequest(key=key, delta=1))]

    def watch_err(self, pid):
        call = self.st.WatchExecutions(pb().WatchExecutionsRequest(project_id=pid), timeout=5)
        with self.assertRaises(grpc.RpcError) as cm:
            next(call)
        return cm.exception

    def test_project_id(self):
        cases = [("", "project_id: must not be empty"),
                 ("a" * 129, "project_id: 129 bytes exceeds the limit of 128 bytes"),
                 ("-lead", "project_id"), (".x", "project_id"), ("a/b", "project_id"),
                 ("a b", "project_id"), ("ü", "project_id"),
                 ("a\x00b", "project_id: contains a NUL byte")]
        for pid, msg in cases:
            for rpc, req in self.project_rpcs(pid):
                with self.subTest(rpc=rpc, pid=pid[:20]):
                    self.err(rpc, req, SC.INVALID_ARGUMENT, msg)
            e = self.watch_err(pid)
            self.assertEqual(e.code(), SC.INVALID_ARGUMENT, (pid, e.details()))
            self.assertIn(msg, e.details())
        # the limits themselves are fine
        ok = "A" + "b-._9" * 25 + "zz"
        self.assertEqual(len(ok), 128)
        self.assertEqual(self.append(ok, command="x").seq, 1)
        self.assertEqual(self.call("GetProject", pb().GetProjectRequest(project_id=ok)).project_id, ok)
        self.assertAlive()

    def test_kv_key(self):
        cases = [("", "key: must not be empty"),
                 ("k" * 1025, "key: 1025 bytes exceeds the limit of 1024 bytes"),
                 ("\u00e9" * 513, "key: 1026 bytes exceeds the limit of 1024 bytes"),
                 ("a\x00b", "key: contains a NUL byte"),
                 ("\x00", "key: contains a NUL byte")]
        for key, msg in cases:
            for rpc, req in self.key_rpcs(key):
                with self.subTest(rpc=rpc, key=key[:10]):
                    self.err(rpc, req, SC.INVALID_ARGUMENT, msg)

    def test_nul_bytes_in_any_string_field(self):
        P = pb()
        cases = [
            ("AppendExecution", P.AppendExecutionRequest(project_id="p", record=P.ExecutionRecord(
                command="a\x00b")), "record.command: contains a NUL byte"),
            ("AppendExecution", P.AppendExecutionRequest(project_id="p", record=P.ExecutionRecord(
                argv=["ok", "b\x00"])), "record.argv: contains a NUL byte"),
            ("RecordExecution", P.RecordExecutionRequest(project_id="p", record=P.ExecutionRecord(
                command_key="k\x00"), cache_ttl_s=5), "record.command_key: contains a NUL byte"),
            ("UpdateProject", P.UpdateProjectRequest(project_id="p", set_fields={"k\x00": "v"}),
             "set_fields.key: contains a NUL byte"),
            ("UpdateProject", P.UpdateProjectRequest(project_id="p", set_fields={"k": "v\x00"}),
             "set_fields.value: contains a NUL byte"),
            ("UpdateProject", P.UpdateProjectRequest(project_id="p", remove_fields=["\x00"]),
             "remove_fields: contains a NUL byte"),
            ("GetCachedResult", P.GetCachedResultRequest(project_id="p", command_key="\x00"),
             "command_key: contains a NUL byte"),
            ("List", P.KvListRequest(prefix="a\x00"), "prefix: contains a NUL byte"),
            ("Checkpoint", P.CheckpointRequest(dir="/tmp/a\x00b"), "dir: contains a NUL byte"),
        ]
        for rpc, req, msg in cases:
            with self.subTest(rpc=rpc, msg=msg):
                self.err(rpc, req, SC.INVALID_ARGUMENT, msg)
        # bytes fields may hold NUL
        self.call("Set", P.KvSetRequest(key="nul-value", value=b"\x00\x00"))
        self.assertEqual(self.call("Get", P.KvGetRequest(key="nul-value")).value, b"\x00\x00")
        self.assertEqual(list(self.call("ListExecutions", P.ListExecutionsRequest(
            project_id="p")).records), [], "nothing was appended")

    def test_values_over_the_limit(self):
        # store.proto: "Values: 0..1 MiB" (the default was 400 KiB before issue 9)
        self.assertEqual(KV_MAX_VALUE, 1048576)
        self.err("Set", pb().KvSetRequest(key="big", value=b"x" * (KV_MAX_VALUE + 1)),
                 SC.INVALID_ARGUMENT, "value: 1048577 bytes exceeds the limit of 1048576 bytes")
        self.err("Get", pb().KvGetRequest(key="big"), SC.NOT_FOUND)
        self.call("Set", pb().KvSetRequest(key="big", value=b"x" * KV_MAX_VALUE))
        self.assertEqual(len(self.call("Get", pb().KvGetRequest(key="big")).value), 1048576)

    def test_record_limits(self):
        R = pb().ExecutionRecord
        MiB = 1 << 20
        cases = [
            (R(record_id="r" * 129), "record.record_id: 129 bytes exceeds the limit of 128 bytes"),
            (R(record_id="has space"), "record.record_id"),
            (R(record_id="tab\t"), "record.record_id"),
            (R(command="c" * 4097), "record.command: 4097 bytes exceeds the limit of 4096 bytes"),
            (R(cwd="c" * 4097), "record.cwd: 4097 bytes exceeds the limit of 4096 bytes"),
            (R(sandbox_id="s" * 65), "record.sandbox_id: 65 bytes exceeds the limit of 64 bytes"),
            (R(tag="t" * 65), "record.tag: 65 bytes exceeds the limit of 64 bytes"),
            (R(command_key="k" * 257),
             "record.command_key: 257 bytes exceeds the limit of 256 bytes"),
            (R(argv=["a"] * 4097), "record.argv: 4097 entries exceeds the limit of 4096"),
            (R(argv=["a" * 1024] * 257), "record.argv"),
            (R(stdout=b"o" * (MiB + 1)), "record.stdout: %d bytes exceeds the limit of %d bytes"
             % (MiB + 1, MiB)),
            (R(stderr=b"e" * (MiB + 1)), "record.stderr"),
            (R(started_at_unix_ms=-1), "record.started_at_unix_ms"),
            (R(duration_us=-1), "record.duration_us"),
        ]
        for rec, msg in cases:
            for rpc, cls in (("AppendExecution", pb().AppendExecutionRequest),
                             ("RecordExecution", pb().RecordExecutionRequest)):
                with self.subTest(rpc=rpc, msg=msg):
                    self.err(rpc, cls(project_id="bad-rec", record=rec), SC.INVALID_ARGUMENT, msg)
        # the limits themselves are fine
        ok = R(record_id="r" * 128, command="c" * 4096, sandbox_id="s" * 64, tag="t" * 64,
               command_key="k" * 256, argv=["a"] * 4096, stdout=b"o" * MiB, stderr=b"e" * MiB)
        self.assertEqual(self.call("AppendExecution", pb().AppendExecutionRequest(
            project_id="bad-rec", record=ok)).seq, 1)

    def test_project_field_limits(self):
        U = pb().UpdateProjectRequest
        self.err("UpdateProject", U(project_id="pf", set_fields={"k" * 257: "v"}),
                 SC.INVALID_ARGUMENT, "key", "257 bytes exceeds the limit of 256 bytes")
        self.err("UpdateProject", U(project_id="pf", set_fields={"": "v"}),
                 SC.INVALID_ARGUMENT, "key", "must not be empty")
        self.err("UpdateProject", U(project_id="pf", set_fields={"k": "v" * 65537}),
                 SC.INVALID_ARGUMENT, "value", "65537 bytes exceeds the limit of 65536 bytes")
        self.err("UpdateProject", U(project_id="pf",
                                    set_fields={"f%d" % i: "" for i in range(257)}),
                 SC.INVALID_ARGUMENT, "257", "256")
        self.err("UpdateProject", U(project_id="pf", remove_fields=["r"] * 257),
                 SC.INVALID_ARGUMENT, "257", "256")
        # limits checked on the merged result: 200 + 57 fields
        self.call("UpdateProject", U(project_id="pf", set_fields={"a%d" % i: "" for i in range(200)}))
        self.err("UpdateProject", U(project_id="pf", set_fields={"b%d" % i: "" for i in range(57)}),
                 SC.INVALID_ARGUMENT, "fields", "256")
        # total 1 MiB: 17 fields of 64 KiB
        self.call("UpdateProject", U(project_id="pf2", set_fields={
            "v%d" % i: "x" * 65536 for i in range(15)}))
        self.err("UpdateProject", U(project_id="pf2", set_fields={
            "w%d" % i: "x" * 65536 for i in range(2)}), SC.INVALID_ARGUMENT, "fields", "bytes")
        self.assertEqual(self.call("GetProject", pb().GetProjectRequest(project_id="pf")).version, 1)

    def test_limits_and_tokens(self):
        P = pb()
        for rpc, req, field in (
                ("ListExecutions", P.ListExecutionsRequest(project_id="p", limit=-1), "limit"),
                ("ListProjects", P.ListProjectsRequest(limit=-1), "limit"),
                ("List", P.KvListRequest(limit=-1), "limit"),
                ("ListExecutions", P.ListExecutionsRequest(project_id="p", page_token="@@"),
                 "page_token"),
                ("ListProjects", P.ListProjectsRequest(page_token="@@"), "page_token"),
                ("List", P.KvListRequest(cursor="@@"), "cursor"),
                ("ListProjects", P.ListProjectsRequest(prefix="p" * 129), "prefix")):
            with self.subTest(rpc=rpc, field=field):
                self.err(rpc, req, SC.INVALID_ARGUMENT, field)

    def test_ttl_out_of_range(self):
        P = pb()
        self.err("Set", P.KvSetRequest(key="t", ttl_s=-1), SC.INVALID_ARGUMENT, "ttl_s",
                 "315360000")
        self.err("Set", P.KvSetRequest(key="t", ttl_s=10 ** 15), SC.INVALID_ARGUMENT, "ttl_s")
        self.err("Set", P.KvSetRequest(key="t", expires_at_unix_ms=now_ms() + 11 * 365 * 86400000),
                 SC.INVALID_ARGUMENT, "expires_at_unix_ms")
        self.err("PutCachedResult", P.PutCachedResultRequest(
            project_id="p", result=P.CachedResult(command_key="k"), ttl_s=-1),
            SC.INVALID_ARGUMENT, "ttl_s", "2592000")
        self.err("RecordExecution", P.RecordExecutionRequest(
            project_id="p", record=P.ExecutionRecord(command_key="k"), cache_ttl_s=-1),
            SC.INVALID_ARGUMENT, "cache_ttl_s")
        self.err("UpdateProject", P.UpdateProjectRequest(
            project_id="p", retention=P.RetentionPolicy(max_age_s=-1)),
            SC.INVALID_ARGUMENT, "max_age_s")
        self.err("Get", P.KvGetRequest(key="t"), SC.NOT_FOUND)

    def test_message_over_max_resource_exhausted(self):
        # default --max-message 16M: a 17 MiB request is refused, the server lives on
        self.err("Set", pb().KvSetRequest(key="huge", value=b"x" * (17 << 20)),
                 SC.RESOURCE_EXHAUSTED)
        self.err("AppendExecution", pb().AppendExecutionRequest(
            project_id="huge", record=pb().ExecutionRecord(argv=["a" * (1 << 20)] * 17)),
            SC.RESOURCE_EXHAUSTED)
        self.assertAlive()
        self.err("Get", pb().KvGetRequest(key="huge"), SC.NOT_FOUND)
        self.assertEqual(list(self.call("ListExecutions", pb().ListExecutionsRequest(
            project_id="huge")).records), [])

    def test_server_alive_and_quiet(self):
        self.call("Set", pb().KvSetRequest(key="alive", value=b"1"))
        self.assertAlive()


# =============================================================================================
class MetricsTest(StoreMixin, unittest.TestCase):
    """--metrics-listen: Prometheus text on /metrics."""

    @classmethod
    def server_args(cls):
        return ["--metrics-listen", "127.0.0.1:0", "--sweep-interval-ms", "0"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        deadline = time.monotonic() + 10
        m = None
        while time.monotonic() < deadline:
            m = re.search(r"metrics on http://([0-9.]+:\d+)/metrics", cls.server.stderr_text())
            if m:
                break
            time.sleep(0.05)
        if not m:
            cls.tearDownClass()
            raise AssertionError("no 'metrics on http://HOST:PORT/metrics' line on stderr")
        cls.murl = "http://%s/metrics" % m.group(1)

    def scrape(self):
        with urllib.request.urlopen(self.murl, timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertIn("text/plain", r.headers.get("Content-Type", ""))
            text = r.read().decode()
        vals = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", line)
            self.assertTrue(m, "not a Prometheus sample line: %r" % line)
            vals[m.group(1)] = float(m.group(2))
        return text, vals

    def scrape_until(self, v0, want, timeout=3.0):
        """Scrapes until every name in want grew by exactly its value over v0 (or timeout);
        returns the last scrape."""
        deadline = time.monotonic() + timeout
        while True:
            _, v = self.scrape()
            if all(v.get(n, 0) - v0.get(n, 0) == d for n, d in want.items()) or \
                    time.monotonic() > deadline:
                return v
            time.sleep(0.05)

    @staticmethod
    def handled(method, code):
        return ('grpc_server_handled_total{grpc_service="sbx.v1.StateStore",grpc_method="%s",'
                'grpc_code="%s"}' % (method, code))

    def test_handled_total_counts(self):
        _, v0 = self.scrape()
        for i in range(3):
            self.call("Set", pb().KvSetRequest(key="m-set-%d" % i, value=b"v"))
        for i in range(2):
            self.err("Get", pb().KvGetRequest(key="m-missing-%d" % i), SC.NOT_FOUND)
        self.err("Set", pb().KvSetRequest(key=""), SC.INVALID_ARGUMENT)
        # the server counts a call when its final batch completes, which may be a moment after
        # the client saw the status: poll briefly for the exact values
        want = {self.handled("Set", "OK"): 3, self.handled("Get", "NOT_FOUND"): 2,
                self.handled("Set", "INVALID_ARGUMENT"): 1}
        v1 = self.scrape_until(v0, want)
        self.assertEqual({n: v1.get(n, 0) - v0.get(n, 0) for n in want}, want)

    def test_handling_seconds_histogram(self):
        _, v0 = self.scrape()
        for i in range(4):
            self.call("Set", pb().KvSetRequest(key="m-h-%d" % i, value=b"v"))
        self.scrape_until(v0, {self.handled("Set", "OK"): 4})
        text, v = self.scrape()
        self.assertIn("# TYPE grpc_server_handling_seconds histogram", text)
        lab = 'grpc_service="sbx.v1.StateStore",grpc_method="Set"'
        buckets = []
        for name, val in v.items():
            m = re.match(r'grpc_server_handling_seconds_bucket\{%s,le="([^"]+)"\}$'
                         % re.escape(lab), name)
            if m:
                buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), val))
        buckets.sort()
        self.assertGreaterEqual(len(buckets), 5, "histogram buckets of Set")
        self.assertEqual(buckets[-1][0], float("inf"))
        counts = [c for _, c in buckets]
        self.assertEqual(counts, sorted(counts), "cumulative buckets never decrease")
        count = v["grpc_server_handling_seconds_count{%s}" % lab]
        self.assertGreaterEqual(count, 4)
        self.assertEqual(buckets[-1][1], count, "+Inf bucket = count")
        s = v["grpc_server_handling_seconds_sum{%s}" % lab]
        self.assertGreater(s, 0)
        self.assertLess(s, count * 30)
        # the handled total of all codes equals the histogram count
        tot = sum(val for name, val in v.items()
                  if name.startswith('grpc_server_handled_total{grpc_service="sbx.v1.StateStore",'
                                     'grpc_method="Set",'))
        self.assertEqual(tot, count)

    def test_cache_and_history_counters(self):
        names = ["sbx_store_cache_hits_total", "sbx_store_cache_misses_total",
                 "sbx_store_cache_expired_total", "sbx_store_history_appends_total"]
        _, v0 = self.scrape()
        for n in names:
            self.assertIn(n, v0)
        P = "metrics-cache"
        self.call("PutCachedResult", pb().PutCachedResultRequest(
            project_id=P, result=pb().CachedResult(command_key="short"), ttl_s=1))
        self.call("PutCachedResult", pb().PutCachedResultRequest(
            project_id=P, result=pb().CachedResult(command_key="long"), ttl_s=60))
        for _ in range(3):
            self.assertTrue(self.call("GetCachedResult", pb().GetCachedResultRequest(
                project_id=P, command_key="long")).found)
        for i in range(2):
            self.assertFalse(self.call("GetCachedResult", pb().GetCachedResultRequest(
                project_id=P, command_key="none%d" % i)).found)
        time.sleep(1.2)
        self.assertTrue(self.call("GetCachedResult", pb().GetCachedResultRequest(
            project_id=P, command_key="short")).expired)
        for i in range(5):
            self.append(P, command="c", record_id="m%d" % i)
        self.append(P, command="c", record_id="m0")  # duplicate: not an append
        self.call("RecordExecution", pb().RecordExecutionRequest(
            project_id=P, record=pb().ExecutionRecord(command_key="rk"), cache_ttl_s=5))
        v1 = self.scrape_until(v0, {"sbx_store_history_appends_total": 6})
        d = {n: v1[n] - v0[n] for n in names}
        # issue 3: "expired = miss": the expired lookup is a miss and also counted as expired
        self.assertEqual(d, {"sbx_store_cache_hits_total": 3, "sbx_store_cache_misses_total": 3,
                             "sbx_store_cache_expired_total": 1,
                             "sbx_store_history_appends_total": 6})
        if "sbx_store_history_duplicates_total" in v1:
            self.assertEqual(v1["sbx_store_history_duplicates_total"]
                             - v0["sbx_store_history_duplicates_total"], 1)

    def test_rocksdb_figures(self):
        text, v = self.scrape()
        for n in ("sbx_store_rocksdb_sst_bytes", "sbx_store_rocksdb_memtable_bytes",
                  "sbx_store_rocksdb_estimated_keys", "sbx_store_rocksdb_compaction_pending"):
            self.assertIn(n, v, n)
            self.assertGreaterEqual(v[n], 0, n)
        self.assertIn("# TYPE sbx_store_rocksdb_sst_bytes gauge", text)

    def test_not_found_path(self):
        base = self.murl.rsplit("/", 1)[0]
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(base + "/nope", timeout=10)
        self.assertEqual(cm.exception.code, 404)


# =============================================================================================
class ShutdownTest(unittest.TestCase):
    """SIGTERM: open watches end with UNAVAILABLE, exit 0, the data is there after a restart."""

    def setUp(self):
        h.stubs()
        self.tmp = tempfile.mkdtemp(prefix="sbx-store-shutdown-")

    def tearDown(self):
        h.kill_all()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, data_dir=None, args=()):
        s = h.Server("store", args=args, tmp=self.tmp, data_dir=data_dir)
        s.start()
        return s

    def test_sigterm_ends_open_watch_promptly(self):
        # store.proto: WatchExecutions ends with UNAVAILABLE on shutdown. Like the health Watch
        # (test_interop.ShutdownTest), an open watch must end promptly on SIGTERM, not hold the
        # server for the whole --grace-ms until it is cancelled. (--grace-ms 5000 here, so a
        # failure costs 5 s, not the default 10.)
        s = self.start(args=["--grace-ms", "5000"])
        with h.channel(s.addr) as ch:
            st = new_stub(ch)
            st.AppendExecution(pb().AppendExecutionRequest(
                project_id="w", record=pb().ExecutionRecord(command="a")), timeout=10)
            call = st.WatchExecutions(pb().WatchExecutionsRequest(project_id="w", from_seq=1),
                                      timeout=30)
            self.assertEqual(next(call).seq, 1)
            t0 = time.monotonic()
            s.send_signal(signal.SIGTERM)
            with self.assertRaises(grpc.RpcError) as cm:
                for _ in call:
                    pass
            t_stream = time.monotonic() - t0
            rc = s.wait(20)
            el = time.monotonic() - t0
        self.assertEqual(cm.exception.code(), SC.UNAVAILABLE, cm.exception.details())
        self.assertEqual(rc, 0, s.stderr_text()[-3000:])
        self.assertLess(t_stream, 3.0, "WatchExecutions ended %.1f s after SIGTERM (%r)"
                        % (t_stream, cm.exception.details()))
        self.assertLess(el, 4.5, "sbx-store took %.1f s to exit with a watch open" % el)

    def test_restart_keeps_everything(self):
        data = os.path.join(self.tmp, "data")
        s = self.start(data)
        with h.channel(s.addr) as ch:
            st = new_stub(ch)
            v = st.Set(pb().KvSetRequest(key="k", value=b"v"), timeout=10).version
            st.Incr(pb().KvIncrRequest(key="n", delta=7), timeout=10)
            st.Set(pb().KvSetRequest(key="gone", value=b"v"), timeout=10)
            st.Delete(pb().KvDeleteRequest(key="gone"), timeout=10)
            for i in range(3):
                st.AppendExecution(pb().AppendExecutionRequest(
                    project_id="p", record=pb().ExecutionRecord(record_id="r%d" % i)), timeout=10)
            st.UpdateProject(pb().UpdateProjectRequest(project_id="p", set_fields={"f": "1"}),
                             timeout=10)
            st.PutCachedResult(pb().PutCachedResultRequest(
                project_id="p", result=pb().CachedResult(command_key="c", stdout=b"o")), timeout=10)
        self.assertEqual(s.stop(signal.SIGTERM, timeout=20), 0, s.stderr_text()[-3000:])
        s = self.start(data)
        with h.channel(s.addr) as ch:
            st = new_stub(ch)
            g = st.Get(pb().KvGetRequest(key="k"), timeout=10)
            self.assertEqual((g.value, g.version), (b"v", v))
            self.assertEqual(st.Get(pb().KvGetRequest(key="n"), timeout=10).value, b"7")
            with self.assertRaises(grpc.RpcError) as cm:
                st.Get(pb().KvGetRequest(key="gone"), timeout=10)
            self.assertEqual(cm.exception.code(), SC.NOT_FOUND)
            self.assertGreater(st.Set(pb().KvSetRequest(key="k", value=b"w"), timeout=10).version,
                               v, "versions keep growing after a restart")
            p = st.GetProject(pb().GetProjectRequest(project_id="p"), timeout=10)
            self.assertEqual((dict(p.fields), p.version, p.execution_count), ({"f": "1"}, 1, 3))
            d = st.AppendExecution(pb().AppendExecutionRequest(
                project_id="p", record=pb().ExecutionRecord(record_id="r1")), timeout=10)
            self.assertEqual((d.seq, d.duplicate), (2, True), "record ids survive a restart")
            self.assertEqual(st.AppendExecution(pb().AppendExecutionRequest(
                project_id="p", record=pb().ExecutionRecord()), timeout=10).seq, 4)
            c = st.GetCachedResult(pb().GetCachedResultRequest(project_id="p", command_key="c"),
                                   timeout=10)
            self.assertEqual((c.found, c.result.stdout), (True, b"o"))
        self.assertEqual(s.stop(signal.SIGTERM, timeout=20), 0)

    def test_second_store_on_a_locked_data_dir_fails(self):
        data = os.path.join(self.tmp, "data")
        s = self.start(data)
        r = h.run_binary("store", ["--listen", "127.0.0.1:0", "--data-dir", data], timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("listening on", r.stdout)
        self.assertIn("in use", r.stderr)
        self.assertEqual(s.stop(signal.SIGTERM, timeout=20), 0)


if __name__ == "__main__":
    argv = h.parse_bindir(sys.argv)
    unittest.main(argv=argv, verbosity=2)
