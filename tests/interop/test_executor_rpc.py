#!/usr/bin/env python3
"""sbx-executor over gRPC, with Python grpcio as an independent client: every SandboxExecutor
RPC (except the ports RPCs) against a real executor (and a real sbx-store for history, cache
and the outbox), each asserting the exact status codes and semantics of executor.proto.

Run: /usr/bin/python3 tests/interop/test_executor_rpc.py --bindir build [TestClass[.test]]
Needs root (sandboxes use user namespaces, cgroups and per-sandbox uid ranges).
"""
import concurrent.futures
import hashlib
import os
import signal
import sys
import tempfile
import threading
import time
import unittest

import sbx_harness as H  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode


def extra_args():
    """$SBX_TEST_EXECUTOR_ARGS: more executor flags, e.g. "--init-path DIR/sbx-init" to run a
    sanitizer build of the executor with an uninstrumented sandbox init."""
    return os.environ.get("SBX_TEST_EXECUTOR_ARGS", "").split()


def pb():
    return H.stubs().executor_pb2


def spb():
    return H.stubs().store_pb2


class ExecutorCase(unittest.TestCase):
    """Starts one executor per class (store optional); helpers for the RPCs."""
    with_store = False
    executor_args = ()

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (user namespaces, cgroups, uid ranges)")
        cls.tmp = tempfile.mkdtemp(prefix="sbx-ex-test-")
        os.chmod(cls.tmp, 0o711)  # sandbox roots (unprivileged uids) traverse to their homes
        cls.store = None
        store_addr = "127.0.0.1:1"  # nothing listens: the outbox keeps retrying
        if cls.with_store:
            cls.store = H.Server("store", tmp=cls.tmp).start()
            store_addr = cls.store.addr
        cls.ex = H.Server("executor", tmp=cls.tmp,
                          args=["--store", store_addr] + list(cls.executor_args) + extra_args()).start()
        cls.ch = H.channel(cls.ex.addr)
        cls.stub = H.stubs().executor_pb2_grpc.SandboxExecutorStub(cls.ch)
        if cls.store:
            cls.sch = H.channel(cls.store.addr)
            cls.sstub = H.stubs().store_pb2_grpc.StateStoreStub(cls.sch)

    @classmethod
    def tearDownClass(cls):
        rc = cls.ex.stop(signal.SIGTERM, timeout=30)
        # the outbox's retry warnings quote gRPC's "last error: ..." while the store is down
        bad = [l for l in cls.ex.bad_stderr_lines() if "comp=outbox" not in l or "level=error" in l]
        if cls.store:
            cls.store.stop()
        H.kill_all()
        assert rc == 0, "executor exit code %r; stderr:\n%s" % (rc, cls.ex.stderr_text())
        assert not bad, "executor logged errors:\n" + "\n".join(bad)

    # ---- helpers ----
    def code_of(self, fn, *a, **kw):
        try:
            r = fn(*a, **kw)
            if hasattr(r, "__iter__") and not hasattr(r, "ListFields"):
                r = list(r)
            return SC.OK, "", r
        except grpc.RpcError as e:
            return e.code(), e.details(), None

    def assertCode(self, want, fn, *a, **kw):
        code, details, r = self.code_of(fn, *a, **kw)
        self.assertEqual(code, want, "details: %s" % details)
        return details if code != SC.OK else r

    def run_cmd(self, project, args=None, shell=None, **kw):
        p = pb()
        req = p.ExecRequest(project_id=project, **kw)
        if shell is not None:
            req.shell = shell
        else:
            req.argv.args.extend(args)
        return self.stub.Run(req, timeout=60)

    def exec_events(self, req, timeout=60):
        return list(self.stub.Exec(req, timeout=timeout))


class SandboxLifecycleTest(ExecutorCase):
    executor_args = ("--idle-timeout", "900")

    def test_create_idempotent_get_list_kill(self):
        p = pb()
        a = self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="life-a", metadata={"k": "v"}))
        self.assertEqual(a.state, p.SANDBOX_STATE_RUNNING)
        self.assertTrue(a.sandbox_id)
        self.assertGreater(a.init_pid, 0)
        self.assertEqual(dict(a.metadata), {"k": "v"})
        self.assertGreater(a.limits.memory_bytes, 0)
        self.assertIn("command_timeout:kill", list(a.enforced))
        self.assertEqual(a.idle_timeout_ms, 900000)
        self.assertEqual(a.expires_at_unix_ms, a.last_used_at_unix_ms + 900000)
        b = self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="life-a",
                                                           limits=p.SandboxLimits(pids=64)))
        self.assertEqual(a.sandbox_id, b.sandbox_id)  # settings ignored, same sandbox
        self.assertEqual(b.limits.pids, a.limits.pids)
        g = self.stub.GetSandbox(p.GetSandboxRequest(project_id="life-a"))
        self.assertEqual(g.sandbox_id, a.sandbox_id)
        g = self.stub.GetSandbox(p.GetSandboxRequest(sandbox_id=a.sandbox_id))
        self.assertEqual(g.project_id, "life-a")
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.GetSandbox,
                        p.GetSandboxRequest(sandbox_id=a.sandbox_id, project_id="other"))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.GetSandbox, p.GetSandboxRequest())
        self.assertCode(SC.NOT_FOUND, self.stub.GetSandbox, p.GetSandboxRequest(project_id="nope"))
        self.assertCode(SC.NOT_FOUND, self.stub.GetSandbox, p.GetSandboxRequest(sandbox_id="sb-0"))
        # home survives a kill; the next call starts a fresh init on the same home
        self.run_cmd("life-a", shell="echo kept > /home/user/f.txt")
        k = self.stub.KillSandbox(p.KillSandboxRequest(project_id="life-a"))
        self.assertTrue(k.killed)
        k = self.stub.KillSandbox(p.KillSandboxRequest(sandbox_id=a.sandbox_id))
        self.assertFalse(k.killed)
        g = self.stub.GetSandbox(p.GetSandboxRequest(sandbox_id=a.sandbox_id))
        self.assertEqual(g.state, p.SANDBOX_STATE_STOPPED)
        self.assertEqual(g.init_pid, 0)
        self.assertCode(SC.NOT_FOUND, self.stub.GetSandbox, p.GetSandboxRequest(project_id="life-a"))
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.Run,
                        p.ExecRequest(sandbox_id=a.sandbox_id, argv=p.Argv(args=["true"])))
        r = self.run_cmd("life-a", ["cat", "/home/user/f.txt"])
        self.assertEqual(r.stdout, b"kept\n")
        self.assertNotEqual(r.sandbox_id, a.sandbox_id)
        # wipe_home
        self.stub.KillSandbox(p.KillSandboxRequest(project_id="life-a", wipe_home=True))
        r = self.run_cmd("life-a", ["ls", "-A", "/home/user"])
        self.assertEqual(r.stdout, b"")

    def test_concurrent_creates_make_one(self):
        p = pb()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            ids = list(ex.map(lambda _: self.stub.CreateSandbox(
                p.CreateSandboxRequest(project_id="life-conc")).sandbox_id, range(8)))
        self.assertEqual(len(set(ids)), 1)

    def test_list_pages_and_timeout(self):
        p = pb()
        ids = sorted(self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="life-l%d" % i)).sandbox_id
                     for i in range(5))
        got, tok = [], ""
        while True:
            r = self.stub.ListSandboxes(p.ListSandboxesRequest(page_size=2, page_token=tok))
            self.assertLessEqual(len(r.sandboxes), 2)
            got += [s.sandbox_id for s in r.sandboxes]
            tok = r.next_page_token
            if not tok:
                break
        self.assertEqual(got, sorted(got))
        for i in ids:
            self.assertIn(i, got)
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.ListSandboxes,
                        p.ListSandboxesRequest(page_token="garbage"))
        r = self.stub.ListSandboxes(p.ListSandboxesRequest(page_size=2))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.ListSandboxes,
                        p.ListSandboxesRequest(page_size=2, page_token=r.next_page_token,
                                               include_stopped=True))
        one = self.stub.ListSandboxes(p.ListSandboxesRequest(project_id="life-l3"))
        self.assertEqual([s.project_id for s in one.sandboxes], ["life-l3"])
        s = self.stub.SetSandboxTimeout(p.SetSandboxTimeoutRequest(project_id="life-l0",
                                                                   idle_timeout_ms=1234))
        self.assertEqual(s.idle_timeout_ms, 1234)
        self.assertEqual(s.expires_at_unix_ms, s.last_used_at_unix_ms + 1234)
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.SetSandboxTimeout,
                        p.SetSandboxTimeoutRequest(project_id="life-l0", idle_timeout_ms=-1))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.SetSandboxTimeout,
                        p.SetSandboxTimeoutRequest(project_id="life-l0", idle_timeout_ms=604800001))
        # the idle timeout expires it
        deadline = time.time() + 10
        while time.time() < deadline:
            g = self.stub.GetSandbox(p.GetSandboxRequest(sandbox_id=s.sandbox_id))
            if g.state == p.SANDBOX_STATE_STOPPED:
                break
            time.sleep(0.3)
        self.assertEqual(g.state, p.SANDBOX_STATE_STOPPED)
        l = self.stub.ListSandboxes(p.ListSandboxesRequest(project_id="life-l0", include_stopped=True))
        self.assertIn(s.sandbox_id, [x.sandbox_id for x in l.sandboxes])
        l = self.stub.ListSandboxes(p.ListSandboxesRequest(project_id="life-l0"))
        self.assertNotIn(s.sandbox_id, [x.sandbox_id for x in l.sandboxes])
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.SetSandboxTimeout,
                        p.SetSandboxTimeoutRequest(sandbox_id=s.sandbox_id, idle_timeout_ms=5))

    def test_bad_create_requests(self):
        p = pb()
        cases = [
            (p.CreateSandboxRequest(), "project_id"),
            (p.CreateSandboxRequest(project_id="-bad"), "project_id"),
            (p.CreateSandboxRequest(project_id="x" * 129), "project_id"),
            (p.CreateSandboxRequest(project_id="ok", limits=p.SandboxLimits(memory_bytes=1)), "memory_bytes"),
            (p.CreateSandboxRequest(project_id="ok", limits=p.SandboxLimits(memory_bytes=1 << 50)), "memory_bytes"),
            (p.CreateSandboxRequest(project_id="ok", limits=p.SandboxLimits(pids=-1)), "pids"),
            (p.CreateSandboxRequest(project_id="ok", limits=p.SandboxLimits(pids=3)), "pids"),
            (p.CreateSandboxRequest(project_id="ok", limits=p.SandboxLimits(cpu_millis=5)), "cpu_millis"),
            (p.CreateSandboxRequest(project_id="ok", limits=p.SandboxLimits(command_timeout_ms=86400001)),
             "command_timeout_ms"),
            (p.CreateSandboxRequest(project_id="ok", limits=p.SandboxLimits(open_files=3)), "open_files"),
            (p.CreateSandboxRequest(project_id="ok", idle_timeout_ms=-5), "idle_timeout_ms"),
            (p.CreateSandboxRequest(project_id="ok", env={"A=B": "x"}), "env"),
            (p.CreateSandboxRequest(project_id="ok", env={"1A": "x"}), "env"),
            (p.CreateSandboxRequest(project_id="ok", template="bad/name"), "template"),
        ]
        for req, field in cases:
            d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.CreateSandbox, req)
            self.assertIn(field, d)
        d = self.assertCode(SC.NOT_FOUND, self.stub.CreateSandbox,
                            p.CreateSandboxRequest(project_id="ok", template="missing"))
        self.assertIn("template", d)


class ExecTest(ExecutorCase):
    def test_oom_killed(self):
        """Issue 9: oom_killed stayed false when the memory limit killed a command (137)."""
        p = pb()
        self.stub.CreateSandbox(p.CreateSandboxRequest(
            project_id="ex-oom", limits=p.SandboxLimits(memory_bytes=64 << 20)))
        grab = "a = bytearray(512 << 20); print(len(a))"
        # the program itself killed (signal 9), and a shell reporting its child's kill (137)
        direct = self.run_cmd("ex-oom", ["python3", "-c", grab])
        self.assertEqual((direct.exit.signal, direct.exit.exit_code), (9, 137), direct.exit)
        self.assertTrue(direct.exit.oom_killed, direct.exit)
        shell = self.run_cmd("ex-oom", shell="python3 -c '%s'; exit $?" % grab)
        self.assertEqual(shell.exit.exit_code, 137, shell.exit)
        self.assertTrue(shell.exit.oom_killed, shell.exit)
        # neither a plain kill nor "exit 137" is an OOM
        self.assertFalse(self.run_cmd("ex-oom", shell="exit 137").exit.oom_killed)
        k = self.run_cmd("ex-oom", shell="kill -9 $$")
        self.assertEqual(k.exit.signal, 9)
        self.assertFalse(k.exit.oom_killed)

    def test_exec_stream_offsets_and_exit(self):
        p = pb()
        evs = self.exec_events(p.ExecRequest(
            project_id="ex-a", shell="printf abc; printf 12 >&2; printf def; exit 7"))
        self.assertEqual(evs[0].WhichOneof("event"), "started")
        self.assertGreater(evs[0].started.pid, 0)
        self.assertTrue(evs[0].started.sandbox_id)
        self.assertEqual(evs[-1].WhichOneof("event"), "exited")
        out = b"".join(e.stdout.data for e in evs if e.WhichOneof("event") == "stdout")
        err = b"".join(e.stderr.data for e in evs if e.WhichOneof("event") == "stderr")
        self.assertEqual(out, b"abcdef")
        self.assertEqual(err, b"12")
        off = 0
        for e in evs:
            if e.WhichOneof("event") == "stdout":
                self.assertEqual(e.stdout.offset, off)
                off += len(e.stdout.data)
        x = evs[-1].exited
        self.assertEqual((x.exit_code, x.signal, x.timed_out, x.stdout_bytes, x.stderr_bytes),
                         (7, 0, False, 6, 2))

    def test_run_exit_conventions(self):
        r = self.run_cmd("ex-a", ["sh", "-c", "kill -TERM $$"])
        self.assertEqual((r.exit.signal, r.exit.exit_code), (15, 143))
        r = self.run_cmd("ex-a", ["no-such-program-x"])
        self.assertEqual(r.exit.exit_code, 127)
        self.assertIn(b"no-such-program-x", r.stderr)
        self.run_cmd("ex-a", shell="printf 'echo hi' > /home/user/noexec.sh; chmod 644 /home/user/noexec.sh")
        r = self.run_cmd("ex-a", ["/home/user/noexec.sh"])
        self.assertEqual(r.exit.exit_code, 126)
        r = self.run_cmd("ex-a", ["sleep", "10"], timeout_ms=300)
        self.assertTrue(r.exit.timed_out)
        self.assertEqual((r.exit.signal, r.exit.exit_code), (9, 137))
        self.assertLess(r.exit.duration_us, 5000000)
        r = self.run_cmd("ex-a", ["pwd"], cwd="sub/..")
        self.assertEqual(r.stdout, b"/home/user\n")
        self.run_cmd("ex-a", ["mkdir", "-p", "d1"])
        r = self.run_cmd("ex-a", ["pwd"], cwd="d1")
        self.assertEqual(r.stdout, b"/home/user/d1\n")
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.Run,
                        pb().ExecRequest(project_id="ex-a", argv=pb().Argv(args=["pwd"]), cwd="/nonexistent"))
        r = self.run_cmd("ex-a", ["sh", "-c", "echo $FOO-$HOME-$USER"], env={"FOO": "bar"})
        self.assertEqual(r.stdout, b"bar-/home/user-user\n")
        r = self.run_cmd("ex-a", ["cat"], stdin=b"x" * 300000)
        self.assertEqual(len(r.stdout), 300000)

    def test_output_caps(self):
        r = self.run_cmd("ex-a", shell="head -c 3000000 /dev/zero")
        self.assertEqual(len(r.stdout), 1 << 20)  # Run clamps to 1 MiB
        self.assertTrue(r.exit.output_truncated)
        self.assertEqual(r.exit.stdout_bytes, 3000000)
        r = self.run_cmd("ex-a", shell="head -c 5000 /dev/zero; head -c 10 /dev/zero >&2",
                         max_output_bytes=100)
        self.assertEqual((len(r.stdout), len(r.stderr)), (100, 10))
        self.assertTrue(r.exit.output_truncated)
        evs = self.exec_events(pb().ExecRequest(project_id="ex-a", shell="head -c 3000000 /dev/zero",
                                                max_output_bytes=2000000))
        out = sum(len(e.stdout.data) for e in evs if e.WhichOneof("event") == "stdout")
        self.assertLessEqual(out, 2000000)
        self.assertTrue(evs[-1].exited.output_truncated)
        self.assertEqual(evs[-1].exited.stdout_bytes, 3000000)
        self.assertTrue(all(len(e.stdout.data) <= 65536 for e in evs if e.WhichOneof("event") == "stdout"))

    def test_bad_exec_requests(self):
        p = pb()
        cases = [
            (p.ExecRequest(project_id="ex-a"), "command"),
            (p.ExecRequest(argv=p.Argv(args=["true"])), "sandbox_id, project_id"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv()), "argv"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=[""])), "argv.args[0]"),
            (p.ExecRequest(project_id="ex-a", shell=""), "shell"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["true"]), env={"A=B": "1"}), "env"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["true"]), timeout_ms=-1), "timeout_ms"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["true"]), timeout_ms=86400001), "timeout_ms"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["true"]), max_output_bytes=-1),
             "max_output_bytes"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["true"]), tag="bad tag"), "tag"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["true"]), cache_ttl_s=-1), "cache_ttl_s"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["true"]), request_id="\x01"), "request_id"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["x" * (128 * 1024 + 1)])), "argv.args[0]"),
            (p.ExecRequest(project_id="ex-a", argv=p.Argv(args=["true"]), stdin=b"x" * (1024 * 1024 + 1)),
             "stdin"),
        ]
        for req, field in cases:
            d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.Run, req)
            self.assertIn(field, d)
            code, d, _ = self.code_of(self.exec_events, req)
            self.assertEqual(code, SC.INVALID_ARGUMENT)
        self.assertCode(SC.NOT_FOUND, self.stub.Run, p.ExecRequest(sandbox_id="sb-unknown",
                                                                    argv=p.Argv(args=["true"])))

    def test_background_processes(self):
        p = pb()
        r = self.stub.Run(p.ExecRequest(project_id="ex-bg", shell="while read l; do echo got:$l; done; echo bye",
                                        background=True, tag="reader"))
        self.assertFalse(r.HasField("exit"))
        pid = r.pid
        self.assertGreater(pid, 0)
        self.assertCode(SC.ALREADY_EXISTS, self.stub.Run,
                        p.ExecRequest(project_id="ex-bg", argv=p.Argv(args=["sleep", "1"]),
                                      background=True, tag="reader"))
        ps = self.stub.ListProcesses(p.ListProcessesRequest(project_id="ex-bg"))
        me = [x for x in ps.processes if x.pid == pid][0]
        self.assertTrue(me.running and me.background and me.stdin_open)
        self.assertEqual(me.tag, "reader")
        sel = p.ProcessSelector(tag="reader")
        self.stub.SendInput(p.SendInputRequest(project_id="ex-bg", process=sel, data=b"one\ntwo\n"))
        time.sleep(0.3)
        evs = list(self.stub.AttachProcess(p.AttachProcessRequest(project_id="ex-bg", process=sel)))
        self.assertEqual(evs[0].WhichOneof("event"), "attached")
        self.assertTrue(evs[0].attached.running)
        out = b"".join(e.stdout.data for e in evs if e.WhichOneof("event") == "stdout")
        self.assertEqual(out, b"got:one\ngot:two\n")
        # resume from an offset, follow until exit
        got = []

        def follow():
            for e in self.stub.AttachProcess(p.AttachProcessRequest(
                    project_id="ex-bg", process=p.ProcessSelector(pid=pid), stdout_offset=8, follow=True),
                    timeout=30):
                got.append(e)
        t = threading.Thread(target=follow)
        t.start()
        time.sleep(0.2)
        self.stub.CloseInput(p.CloseInputRequest(project_id="ex-bg", process=sel))
        t.join(30)
        self.assertEqual(got[-1].WhichOneof("event"), "exited")
        out = b"".join(e.stdout.data for e in got if e.WhichOneof("event") == "stdout")
        self.assertEqual(out, b"got:two\nbye\n")
        self.assertEqual([e.stdout.offset for e in got if e.WhichOneof("event") == "stdout"][0], 8)
        self.assertCode(SC.OUT_OF_RANGE, lambda: list(self.stub.AttachProcess(p.AttachProcessRequest(
            project_id="ex-bg", process=sel, stdout_offset=10000))))
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.SendInput,
                        p.SendInputRequest(project_id="ex-bg", process=sel, data=b"x"))
        self.stub.CloseInput(p.CloseInputRequest(project_id="ex-bg", process=sel))  # idempotent
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.SignalProcess,
                        p.SignalProcessRequest(project_id="ex-bg", process=sel, signal=9))
        ps = self.stub.ListProcesses(p.ListProcessesRequest(project_id="ex-bg", include_exited=True))
        me = [x for x in ps.processes if x.pid == pid][0]
        self.assertFalse(me.running)
        self.assertEqual(me.exit.exit_code, 0)
        ps = self.stub.ListProcesses(p.ListProcessesRequest(project_id="ex-bg"))
        self.assertNotIn(pid, [x.pid for x in ps.processes])
        # signals: any signal, by pid; a process group
        r = self.stub.Run(p.ExecRequest(project_id="ex-bg", shell="sleep 60 & sleep 60; wait",
                                        background=True, tag="sleeper"))
        self.stub.SignalProcess(p.SignalProcessRequest(project_id="ex-bg",
                                                       process=p.ProcessSelector(pid=r.pid), signal=10))
        evs = list(self.stub.AttachProcess(p.AttachProcessRequest(
            project_id="ex-bg", process=p.ProcessSelector(pid=r.pid), follow=True), timeout=20))
        self.assertEqual(evs[-1].exited.signal, 10)
        self.assertEqual(evs[-1].exited.exit_code, 138)
        self.assertCode(SC.NOT_FOUND, self.stub.SignalProcess,
                        p.SignalProcessRequest(project_id="ex-bg", process=p.ProcessSelector(pid=99999)))
        self.assertCode(SC.NOT_FOUND, self.stub.SignalProcess,
                        p.SignalProcessRequest(project_id="ex-bg", process=p.ProcessSelector(tag="nope")))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.SignalProcess,
                        p.SignalProcessRequest(project_id="ex-bg", process=p.ProcessSelector(pid=1), signal=65))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.SignalProcess,
                        p.SignalProcessRequest(project_id="ex-bg"))
        self.assertCode(SC.NOT_FOUND, self.stub.ListProcesses, p.ListProcessesRequest(project_id="never"))
        # background Exec: the stream ends right after `started`
        evs = self.exec_events(p.ExecRequest(project_id="ex-bg", argv=p.Argv(args=["sleep", "0.2"]),
                                             background=True))
        self.assertEqual([e.WhichOneof("event") for e in evs], ["started"])

    def test_request_id_dedup(self):
        p = pb()
        req = p.ExecRequest(project_id="ex-rid", shell="echo run >> /home/user/count; cat /home/user/count | wc -l",
                            request_id="req-1")
        a = self.stub.Run(req)
        b = self.stub.Run(req)
        self.assertEqual((a.stdout, a.pid), (b.stdout, b.pid))
        self.assertEqual(a.stdout.strip(), b"1")
        evs = self.exec_events(req)
        self.assertEqual([e.WhichOneof("event") for e in evs][0], "started")
        self.assertEqual(b"".join(e.stdout.data for e in evs if e.WhichOneof("event") == "stdout"), a.stdout)
        self.assertCode(SC.ALREADY_EXISTS, self.stub.Run,
                        p.ExecRequest(project_id="ex-rid", shell="echo other", request_id="req-1"))
        # a retry while the first attempt runs attaches to it
        slow = p.ExecRequest(project_id="ex-rid", shell="echo a; sleep 1; echo b", request_id="req-2")
        first = []
        t = threading.Thread(target=lambda: first.extend(self.exec_events(slow)))
        t.start()
        time.sleep(0.4)
        evs = self.exec_events(slow)
        t.join()
        self.assertEqual(evs[0].WhichOneof("event"), "attached")
        self.assertEqual(evs[-1].WhichOneof("event"), "exited")
        self.assertEqual(b"".join(e.stdout.data for e in evs if e.WhichOneof("event") == "stdout"), b"a\nb\n")
        # a cancelled first attempt with a request_id keeps running; a retry gets its result
        fut = self.stub.Exec.future if hasattr(self.stub.Exec, "future") else None
        call = self.stub.Exec(p.ExecRequest(project_id="ex-rid", shell="sleep 0.5; echo done",
                                            request_id="req-3"))
        next(call)
        call.cancel()
        r = self.stub.Run(p.ExecRequest(project_id="ex-rid", shell="sleep 0.5; echo done", request_id="req-3"))
        self.assertEqual(r.stdout, b"done\n")
        del fut
        # without a request_id, a cancelled foreground command is killed
        call = self.stub.Exec(p.ExecRequest(project_id="ex-rid", shell="sleep 30", tag="victim"))
        next(call)
        call.cancel()
        deadline = time.time() + 5
        while time.time() < deadline:
            ps = self.stub.ListProcesses(p.ListProcessesRequest(project_id="ex-rid"))
            if not [x for x in ps.processes if x.tag == "victim"]:
                break
            time.sleep(0.1)
        self.assertFalse([x for x in ps.processes if x.tag == "victim"])


class FilesTest(ExecutorCase):
    def test_read_at_huge_offsets(self):
        """Issue 9: ReadFile at offset 2^63-1 gave INTERNAL "read: Invalid argument"; the
        contract is one chunk with empty data at or past the end."""
        p = pb()
        self.run_cmd("fs-off", shell="printf 0123456789 > f")
        for off in ((1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 63) - 5):
            with self.subTest(offset=off):
                chunks = list(self.stub.ReadFile(p.ReadFileRequest(project_id="fs-off", path="f",
                                                                   offset=off)))
                self.assertEqual(len(chunks), 1)
                self.assertEqual((chunks[0].data, chunks[0].offset), (b"", off))
                self.assertEqual(chunks[0].info.size_bytes, 10)
        part = list(self.stub.ReadFile(p.ReadFileRequest(project_id="fs-off", path="f", offset=4,
                                                         length=(1 << 64) - 1)))
        self.assertEqual(b"".join(c.data for c in part), b"456789")

    def test_symlink_loop_and_cross_device_move(self):
        """Issue 9: both were PERMISSION_DENIED; a symlink loop (ELOOP) is FAILED_PRECONDITION,
        a Move across filesystems (EXDEV: the home and /tmp) INVALID_ARGUMENT naming src/dst."""
        p = pb()
        self.run_cmd("fs-loop", shell="ln -s l2 l1 && ln -s l1 l2 && echo x > f && mkdir d")
        for fn, req in (
                (lambda r: list(self.stub.ReadFile(r)), p.ReadFileRequest(project_id="fs-loop",
                                                                           path="l1")),
                (self.stub.ListDir, p.ListDirRequest(project_id="fs-loop", path="l1/x")),
                (self.stub.MakeDir, p.MakeDirRequest(project_id="fs-loop", path="l1/sub"))):
            with self.subTest(req=type(req).__name__):
                d = self.assertCode(SC.FAILED_PRECONDITION, fn, req)
                self.assertIn("path", d)
                self.assertIn("symbolic links", d)
        d = self.assertCode(SC.FAILED_PRECONDITION, self.write_file_code, "fs-loop", "l1", b"y")
        d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.Move, p.MoveRequest(
            project_id="fs-loop", src="f", dst="/tmp/f"))
        self.assertIn("src, dst", d)
        self.assertIn("different filesystems", d)
        self.assertEqual(self.run_cmd("fs-loop", shell="cat f").stdout, b"x\n")  # still there

    def write_file_code(self, project, path, data):
        p = pb()
        return self.stub.WriteFile(iter([
            p.WriteFileRequest(header=p.WriteFileHeader(project_id=project, path=path)),
            p.WriteFileRequest(data=data)]))

    def test_write_read_stat_list(self):
        p = pb()
        data = os.urandom(300000)

        def reqs():
            yield p.WriteFileRequest(header=p.WriteFileHeader(project_id="fs", path="a/b/c.bin", mode=0o600))
            for i in range(0, len(data), 100000):
                yield p.WriteFileRequest(data=data[i:i + 100000])
        w = self.stub.WriteFile(reqs())
        self.assertEqual(w.bytes_written, len(data))
        self.assertEqual(w.info.path, "/home/user/a/b/c.bin")
        self.assertEqual((w.info.mode, w.info.uid, w.info.gid), (0o600, 1000, 1000))
        chunks = list(self.stub.ReadFile(p.ReadFileRequest(project_id="fs", path="/home/user/a/b/c.bin",
                                                           chunk_bytes=65536)))
        self.assertEqual(b"".join(c.data for c in chunks), data)
        self.assertTrue(chunks[0].HasField("info"))
        self.assertFalse(chunks[1].HasField("info"))
        self.assertEqual(chunks[2].offset, 131072)
        part = list(self.stub.ReadFile(p.ReadFileRequest(project_id="fs", path="a/b/c.bin", offset=10, length=5)))
        self.assertEqual(b"".join(c.data for c in part), data[10:15])
        eof = list(self.stub.ReadFile(p.ReadFileRequest(project_id="fs", path="a/b/c.bin", offset=len(data))))
        self.assertEqual(len(eof), 1)
        self.assertEqual(eof[0].data, b"")
        self.assertCode(SC.NOT_FOUND, lambda: list(self.stub.ReadFile(p.ReadFileRequest(project_id="fs", path="nope"))))
        self.assertCode(SC.FAILED_PRECONDITION, lambda: list(self.stub.ReadFile(p.ReadFileRequest(project_id="fs", path="a"))))
        r = self.run_cmd("fs", ["sha256sum", "a/b/c.bin"])
        self.assertTrue(r.stdout.startswith(hashlib.sha256(data).hexdigest().encode()))
        st = self.stub.Stat(p.StatRequest(project_id="fs", path="a/b"))
        self.assertEqual((st.type, st.name, st.path), (p.FILE_TYPE_DIRECTORY, "b", "/home/user/a/b"))
        self.assertCode(SC.NOT_FOUND, self.stub.Stat, p.StatRequest(project_id="fs", path="zz"))
        self.run_cmd("fs", ["ln", "-s", "a/b/c.bin", "link"])
        st = self.stub.Stat(p.StatRequest(project_id="fs", path="link"))
        self.assertEqual((st.type, st.symlink_target), (p.FILE_TYPE_SYMLINK, "a/b/c.bin"))
        ls = self.stub.ListDir(p.ListDirRequest(project_id="fs", depth=3))
        paths = [e.path for e in ls.entries]
        self.assertEqual(paths, sorted(paths))
        self.assertIn("/home/user/a/b/c.bin", paths)
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.ListDir, p.ListDirRequest(project_id="fs", depth=33))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.ListDir, p.ListDirRequest(project_id="fs", depth=-1))
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.ListDir, p.ListDirRequest(project_id="fs", path="a/b/c.bin"))
        ls = self.stub.ListDir(p.ListDirRequest(project_id="fs", depth=3, max_entries=1))
        self.assertTrue(ls.truncated)
        self.assertEqual(len(ls.entries), 1)

    def test_write_semantics(self):
        p = pb()

        def w(header, *chunks):
            return self.stub.WriteFile(iter([p.WriteFileRequest(header=header)] +
                                            [p.WriteFileRequest(data=c) for c in chunks]))
        w(p.WriteFileHeader(project_id="fs2", path="f.txt"), b"one")
        w(p.WriteFileHeader(project_id="fs2", path="f.txt", append=True), b"two")
        r = self.run_cmd("fs2", ["cat", "f.txt"])
        self.assertEqual(r.stdout, b"onetwo")
        self.assertCode(SC.ALREADY_EXISTS, w, p.WriteFileHeader(project_id="fs2", path="f.txt", exclusive=True), b"x")
        self.assertCode(SC.FAILED_PRECONDITION, w, p.WriteFileHeader(project_id="fs2", path="/home/user"), b"x")
        self.assertCode(SC.FAILED_PRECONDITION, w,
                        p.WriteFileHeader(project_id="fs2", path="no/such/f", no_create_parents=True), b"x")
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.WriteFile, iter([p.WriteFileRequest(data=b"x")]))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.WriteFile,
                        iter([p.WriteFileRequest(header=p.WriteFileHeader(project_id="fs2", path="g")),
                              p.WriteFileRequest(header=p.WriteFileHeader(project_id="fs2", path="g"))]))
        self.assertCode(SC.INVALID_ARGUMENT, w, p.WriteFileHeader(project_id="fs2", path="h"), b"x" * (1024 * 1024 + 1))
        self.assertCode(SC.NOT_FOUND, self.stub.Stat, p.StatRequest(project_id="fs2", path="h"))
        w(p.WriteFileHeader(project_id="fs2", path="empty"))
        self.assertEqual(self.stub.Stat(p.StatRequest(project_id="fs2", path="empty")).size_bytes, 0)

    def test_write_100mb(self):
        p = pb()
        chunk = os.urandom(1 << 20)
        h = hashlib.sha256()

        def reqs():
            yield p.WriteFileRequest(header=p.WriteFileHeader(project_id="fs-big", path="big.bin"))
            for _ in range(100):
                h.update(chunk)
                yield p.WriteFileRequest(data=chunk)
        w = self.stub.WriteFile(reqs(), timeout=120)
        self.assertEqual(w.bytes_written, 100 << 20)
        self.assertEqual(w.info.size_bytes, 100 << 20)
        r = self.run_cmd("fs-big", ["sha256sum", "big.bin"])
        self.assertTrue(r.stdout.startswith(h.hexdigest().encode()))
        n = sum(len(c.data) for c in self.stub.ReadFile(p.ReadFileRequest(project_id="fs-big", path="big.bin",
                                                                          chunk_bytes=1 << 20), timeout=120))
        self.assertEqual(n, 100 << 20)
        self.stub.Remove(p.RemoveRequest(project_id="fs-big", path="big.bin"))

    def test_mkdir_remove_move(self):
        p = pb()
        self.assertTrue(self.stub.MakeDir(p.MakeDirRequest(project_id="fs3", path="x/y", parents=True)).created)
        self.assertFalse(self.stub.MakeDir(p.MakeDirRequest(project_id="fs3", path="x/y", parents=True)).created)
        self.assertCode(SC.ALREADY_EXISTS, self.stub.MakeDir, p.MakeDirRequest(project_id="fs3", path="x/y"))
        self.assertCode(SC.NOT_FOUND, self.stub.MakeDir, p.MakeDirRequest(project_id="fs3", path="q/r"))
        self.assertEqual(self.stub.MakeDir(p.MakeDirRequest(project_id="fs3", path="m", mode=0o700)).created, True)
        self.assertEqual(self.stub.Stat(p.StatRequest(project_id="fs3", path="m")).mode, 0o700)
        self.run_cmd("fs3", ["touch", "x/y/f"])
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.Remove, p.RemoveRequest(project_id="fs3", path="x"))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.Remove, p.RemoveRequest(project_id="fs3", path="/home/../.."))
        self.stub.Move(p.MoveRequest(project_id="fs3", src="x/y/f", dst="g"))
        self.assertCode(SC.NOT_FOUND, self.stub.Move, p.MoveRequest(project_id="fs3", src="x/y/f", dst="g2"))
        self.run_cmd("fs3", ["touch", "h"])
        self.assertCode(SC.ALREADY_EXISTS, self.stub.Move, p.MoveRequest(project_id="fs3", src="g", dst="h"))
        self.stub.Move(p.MoveRequest(project_id="fs3", src="g", dst="h", overwrite=True))
        self.assertTrue(self.stub.Remove(p.RemoveRequest(project_id="fs3", path="x", recursive=True)).existed)
        self.assertFalse(self.stub.Remove(p.RemoveRequest(project_id="fs3", path="x", recursive=True)).existed)

    def test_upload_all_or_nothing(self):
        p = pb()

        def up(header, entries):
            return self.stub.UploadFiles(iter([p.UploadFilesRequest(header=header)] +
                                              [p.UploadFilesRequest(entry=e) for e in entries]), timeout=60)
        ents = [p.UploadEntry(path="src/f%03d.txt" % i, content=b"%d" % i) for i in range(200)]
        ents += [p.UploadEntry(path="src/sub", type=p.FILE_TYPE_DIRECTORY),
                 p.UploadEntry(path="src/link", type=p.FILE_TYPE_SYMLINK, symlink_target="f001.txt"),
                 p.UploadEntry(path="big", content=b"a" * 1000),
                 p.UploadEntry(path="big", content=b"b" * 1000, append=True)]
        r = up(p.UploadHeader(project_id="up", dest_dir="proj"), ents)
        self.assertEqual(r.files_written, 202)
        self.assertEqual(r.dest_dir, "/home/user/proj")
        out = self.run_cmd("up", shell="cat proj/src/link; wc -c < proj/big; ls proj/src | wc -l")
        self.assertEqual(out.stdout, b"1" + b"2000\n" + b"202\n")
        # an existing file fails the whole upload (nothing changes); replace overwrites
        d = self.assertCode(SC.ALREADY_EXISTS, up, p.UploadHeader(project_id="up", dest_dir="proj"),
                            [p.UploadEntry(path="new.txt", content=b"n"), p.UploadEntry(path="big", content=b"x")])
        self.assertIn("big", d)
        self.assertCode(SC.NOT_FOUND, self.stub.Stat, p.StatRequest(project_id="up", path="proj/new.txt"))
        r = up(p.UploadHeader(project_id="up", dest_dir="proj", replace=True),
               [p.UploadEntry(path="big", content=b"x")])
        self.assertEqual(self.run_cmd("up", ["cat", "proj/big"]).stdout, b"x")
        for bad in ["../x", "/abs", "a/./b", ""]:
            self.assertCode(SC.INVALID_ARGUMENT, up, p.UploadHeader(project_id="up"), [p.UploadEntry(path=bad)])
        self.assertCode(SC.INVALID_ARGUMENT, up, p.UploadHeader(project_id="up"),
                        [p.UploadEntry(path="o", type=p.FILE_TYPE_OTHER)])
        self.assertCode(SC.INVALID_ARGUMENT, up, p.UploadHeader(project_id="up"),
                        [p.UploadEntry(path="o", content=b"1", append=True)])
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.UploadFiles,
                        iter([p.UploadFilesRequest(entry=p.UploadEntry(path="a"))]))
        self.assertCode(SC.NOT_FOUND, self.stub.Stat, p.StatRequest(project_id="up", path="o"))


class TenantTest(ExecutorCase):
    @classmethod
    def setUpClass(cls):
        cls.keys = {"alice": "key-alice-123", "bob": "key-bob-456"}
        d = tempfile.mkdtemp(prefix="sbx-keys-")
        path = os.path.join(d, "keys")
        with open(path, "w") as f:
            for t, k in cls.keys.items():
                f.write("%s:%s\n" % (t, H.sha256_hex(k)))
        cls.executor_args = ("--api-keys", path)
        super().setUpClass()

    def test_tenants_do_not_see_each_other(self):
        p = pb()
        a, b = H.bearer(self.keys["alice"]), H.bearer(self.keys["bob"])
        sa = self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="shared-name"), metadata=a)
        sb = self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="shared-name"), metadata=b)
        self.assertNotEqual(sa.sandbox_id, sb.sandbox_id)
        self.assertCode(SC.NOT_FOUND, self.stub.GetSandbox, p.GetSandboxRequest(sandbox_id=sa.sandbox_id), metadata=b)
        self.assertCode(SC.NOT_FOUND, self.stub.KillSandbox, p.KillSandboxRequest(sandbox_id=sa.sandbox_id), metadata=b)
        self.assertCode(SC.NOT_FOUND, self.stub.Run, p.ExecRequest(sandbox_id=sa.sandbox_id, argv=p.Argv(args=["true"])),
                        metadata=b)
        ids = [x.sandbox_id for x in self.stub.ListSandboxes(p.ListSandboxesRequest(), metadata=b).sandboxes]
        self.assertEqual(ids, [sb.sandbox_id])
        self.assertCode(SC.UNAUTHENTICATED, self.stub.ListSandboxes, p.ListSandboxesRequest())


class StoreTest(ExecutorCase):
    with_store = True

    def history(self, project):
        return self.sstub.ListExecutions(spb().ListExecutionsRequest(project_id=project, include_output=True)).records

    def wait_history(self, project, n, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            code, _, r = self.code_of(self.history, project)
            if code == SC.OK and len(r) >= n:
                return r
            time.sleep(0.2)
        self.fail("history of %s did not reach %d records (last: %s)" % (project, n, code))

    def test_history_and_cache(self):
        p = pb()
        code, d, _ = self.code_of(self.sstub.ListExecutions, spb().ListExecutionsRequest(project_id="x"))
        if code == SC.UNIMPLEMENTED:
            self.skipTest("the store does not implement history yet: " + d)
        self.run_cmd("st", ["echo", "hi"])
        self.stub.Run(p.ExecRequest(project_id="st", argv=p.Argv(args=["sleep", "0.1"]), background=True))
        recs = self.wait_history("st", 2)
        cmds = sorted(r.command for r in recs)
        self.assertEqual(cmds, ["echo hi", "sleep 0.1"])
        echo = [r for r in recs if r.command == "echo hi"][0]
        self.assertEqual(echo.stdout, b"hi\n")
        self.assertTrue(echo.record_id.startswith(echo.sandbox_id + "."))
        # cache: the second run is answered from the store
        req = p.ExecRequest(project_id="st", shell="date +%s%N", cache_ttl_s=60)
        a = self.stub.Run(req)
        self.assertFalse(a.exit.cached)
        seen = {a.stdout}
        deadline = time.time() + 10
        while time.time() < deadline:
            b = self.stub.Run(req)
            if b.exit.cached:
                break
            seen.add(b.stdout)  # ran again (the record was not in the store yet)
            time.sleep(0.2)
        self.assertTrue(b.exit.cached)
        self.assertEqual(b.pid, 0)
        self.assertIn(b.stdout, seen)  # the output of a real earlier run
        evs = self.exec_events(req)
        self.assertEqual(evs[0].started.pid, 0)
        self.assertTrue(evs[-1].exited.cached)

    def test_outbox_survives_store_outage(self):
        code, d, _ = self.code_of(self.sstub.ListExecutions, spb().ListExecutionsRequest(project_id="x"))
        if code == SC.UNIMPLEMENTED:
            self.skipTest("the store does not implement history yet: " + d)
        data_dir = self.store.data_dir
        port = self.store.port
        self.store.stop()
        for i in range(3):
            self.run_cmd("st-out", ["echo", "n%d" % i])  # commands are not blocked by the outage
        time.sleep(0.5)
        type(self).store = H.Server("store", tmp=self.tmp, data_dir=data_dir,
                                    listen="127.0.0.1:%d" % port).start()
        recs = self.wait_history("st-out", 3, timeout=30)
        self.assertEqual(sorted(r.command for r in recs), ["echo n0", "echo n1", "echo n2"])


if __name__ == "__main__":
    sys.argv = H.parse_bindir(sys.argv)
    unittest.main(verbosity=2)
