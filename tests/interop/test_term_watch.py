#!/usr/bin/env python3
"""Terminals and file watching of sbx-executor over gRPC (Python grpcio as an independent
client), against a real sbx-executor started on an ephemeral port:

- TerminalTest: ExecRequest.pty gives the command a terminal of the sandbox's own devpts as its
  stdin/stdout/stderr and controlling terminal (isatty, /dev/pts/N owned by the sandbox user,
  own session and foreground process group, size), typed input echoes, ^C interrupts, CloseInput
  types EOF (twice after a partial line) and the terminal stays usable, ResizeTerminal reaches
  the foreground process group as SIGWINCH and shows in ListProcesses, output offsets and
  AttachProcess work for terminal processes, a client that leaves hangs the terminal up
  (SIGHUP), TIOCSTI stays refused, terminals are freed (300 in a row), bad sizes and non-terminal
  processes are refused with the documented codes.
- WatchTest: WatchDir's READY, CREATE / MODIFY / DELETE / RENAME_FROM+RENAME_TO (cookie) of
  files and directories, a new subdirectory's contents (written right after mkdir), directory
  renames followed, non-recursive watches, 10,000 new files each reported (or an OVERFLOW),
  coalescing, paths that would leave the root refused or clamped, the stream ending when the
  directory is deleted and when the sandbox stops.
- WatchLimitsTest: --watch-max-dirs and --watch-max-streams reported as RESOURCE_EXHAUSTED
  naming the flag.

Run: /usr/bin/python3 tests/interop/test_term_watch.py --bindir build [TestClass[.test]]
Needs root (sandboxes use user namespaces, cgroups and per-sandbox uid ranges).
"""
import os
import queue
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
    return os.environ.get("SBX_TEST_EXECUTOR_ARGS", "").split()


def pb():
    return H.stubs().executor_pb2


class Case(unittest.TestCase):
    executor_args = ()

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (user namespaces, cgroups, uid ranges)")
        cls.tmp = tempfile.mkdtemp(prefix="sbx-term-test-")
        os.chmod(cls.tmp, 0o711)
        cls.ex = H.Server("executor", tmp=cls.tmp,
                          args=["--store", "127.0.0.1:1"] + list(cls.executor_args)
                          + extra_args()).start()
        cls.ch = H.channel(cls.ex.addr)
        cls.stub = H.stubs().executor_pb2_grpc.SandboxExecutorStub(cls.ch)

    @classmethod
    def tearDownClass(cls):
        rc = cls.ex.stop(signal.SIGTERM, timeout=30)
        bad = [l for l in cls.ex.bad_stderr_lines() if "comp=outbox" not in l]
        H.kill_all()
        assert rc == 0, "executor exit code %r; stderr:\n%s" % (rc, cls.ex.stderr_text())
        assert not bad, "executor logged errors:\n" + "\n".join(bad)

    def code(self, fn, *a, **kw):
        try:
            r = fn(*a, **kw)
            if hasattr(r, "__iter__") and not hasattr(r, "ListFields"):
                r = list(r)
            return SC.OK, "", r
        except grpc.RpcError as e:
            return e.code(), e.details(), None

    def assertCode(self, want, fn, *a, **kw):
        c, details, r = self.code(fn, *a, **kw)
        self.assertEqual(c, want, "details: %s" % details)
        return details if c != SC.OK else r

    def sh(self, project, script, **kw):
        return self.stub.Run(pb().ExecRequest(project_id=project, shell=script, **kw), timeout=60)


# ---------------------------------------------------------------------------------------------
# Terminals
# ---------------------------------------------------------------------------------------------

class Output:
    """Follows a process's stdout through AttachProcess(follow) on a thread."""

    def __init__(self, stub, project, pid):
        self.data = bytearray()
        self.offsets = []
        self.stderr = bytearray()
        self.exit = None
        self.cv = threading.Condition()
        self.call = stub.AttachProcess(pb().AttachProcessRequest(
            project_id=project, process=pb().ProcessSelector(pid=pid), follow=True), timeout=120)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for ev in self.call:
                with self.cv:
                    if ev.HasField("stdout"):
                        self.offsets.append((ev.stdout.offset, len(ev.stdout.data)))
                        self.data += ev.stdout.data
                    elif ev.HasField("stderr"):
                        self.stderr += ev.stderr.data
                    elif ev.HasField("exited"):
                        self.exit = ev.exited
                    self.cv.notify_all()
        except grpc.RpcError:
            pass
        with self.cv:
            self.cv.notify_all()

    def wait_for(self, needle, timeout=15):
        deadline = time.monotonic() + timeout
        with self.cv:
            while needle not in self.data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%r not in terminal output %r" % (needle, bytes(self.data)))
                self.cv.wait(left)

    def wait_exit(self, timeout=15):
        self.t.join(timeout)
        return self.exit


class TerminalTest(Case):
    P = "term"

    def start(self, script=None, argv=None, cols=80, rows=24, **kw):
        p = pb()
        req = p.ExecRequest(project_id=self.P, background=True, pty=p.TerminalSize(cols=cols, rows=rows), **kw)
        if script is not None:
            req.shell = script
        else:
            req.argv.args.extend(argv)
        ev = list(self.stub.Exec(req, timeout=30))
        self.assertTrue(ev and ev[0].HasField("started"), ev)
        pid = ev[0].started.pid
        self.assertGreater(pid, 0)
        return pid, Output(self.stub, self.P, pid)

    def sel(self, pid):
        return pb().ProcessSelector(pid=pid)

    def send(self, pid, data):
        self.stub.SendInput(pb().SendInputRequest(project_id=self.P, process=self.sel(pid), data=data),
                            timeout=10)

    def test_terminal_is_the_commands_tty(self):
        r = self.sh(self.P, "for fd in 0 1 2; do test -t $fd && echo tty$fd; done; tty; stty size; "
                    "stat -c '%U %t' $(tty); echo err >&2", pty=pb().TerminalSize(cols=123, rows=45))
        out = r.stdout.decode()
        self.assertEqual(r.exit.exit_code, 0, out)
        for fd in range(3):
            self.assertIn("tty%d" % fd, out)
        self.assertRegex(out, r"/dev/pts/\d+\r\n")
        self.assertIn("45 123\r\n", out)
        self.assertIn("user 88\r\n", out)  # owned by the sandbox user; major 136 = 0x88 (pts)
        self.assertIn("err\r\n", out)  # stderr is the terminal too
        self.assertEqual(r.stderr, b"")
        # its own session, the terminal's foreground group, the terminal's controlling process
        r = self.sh(self.P, "exec python3 -c 'import os; print(os.getsid(0) == os.getpid(), "
                    "os.tcgetpgrp(0) == os.getpgrp(), os.isatty(0))'",
                    pty=pb().TerminalSize(cols=80, rows=24))
        self.assertEqual(r.stdout, b"True True True\r\n")
        # without pty: pipes, as before
        r = self.sh(self.P, "test -t 1 && echo tty || echo pipe")
        self.assertEqual(r.stdout, b"pipe\n")

    def test_input_echo_eof_and_ctrl_c(self):
        pid, out = self.start(argv=["cat"])
        self.send(pid, b"hello\n")
        out.wait_for(b"hello\r\nhello\r\n")  # the terminal's echo, then cat's copy
        # EOF after a partial line takes two ^D: the first ends the line
        self.send(pid, b"abc")
        self.stub.CloseInput(pb().CloseInputRequest(project_id=self.P, process=self.sel(pid)), timeout=10)
        x = out.wait_exit()
        self.assertIsNotNone(x, bytes(out.data))
        self.assertEqual(x.exit_code, 0)
        self.assertTrue(out.data.endswith(b"abcabc"), bytes(out.data))
        self.assertEqual(out.stderr, b"")
        # ^C interrupts the foreground job; the terminal takes input again after EOF
        pid, out = self.start("cat; echo after-cat; sleep 100")
        self.stub.CloseInput(pb().CloseInputRequest(project_id=self.P, process=self.sel(pid)), timeout=10)
        out.wait_for(b"after-cat")
        info = [p for p in self.stub.ListProcesses(pb().ListProcessesRequest(project_id=self.P)).processes
                if p.pid == pid][0]
        self.assertTrue(info.stdin_open)  # EOF was typed, the terminal is still open
        time.sleep(0.2)
        self.send(pid, b"\x03")
        x = out.wait_exit()
        self.assertIsNotNone(x)
        self.assertEqual(x.signal, signal.SIGINT, x)
        self.assertEqual(x.exit_code, 128 + signal.SIGINT)

    def test_resize_sends_sigwinch(self):
        prog = ("import os, signal, sys, time\n"
                "def w(*a):\n"
                "    s = os.get_terminal_size(0)\n"
                "    os.write(1, b'winch %dx%d\\n' % (s.columns, s.lines))\n"
                "signal.signal(signal.SIGWINCH, w)\n"
                "print('ready', flush=True)\n"
                "time.sleep(60)\n")
        pid, out = self.start(argv=["python3", "-c", prog])
        out.wait_for(b"ready")
        self.stub.ResizeTerminal(pb().ResizeTerminalRequest(project_id=self.P, process=self.sel(pid),
                                                            cols=132, rows=50), timeout=10)
        out.wait_for(b"winch 132x50")
        info = [p for p in self.stub.ListProcesses(pb().ListProcessesRequest(project_id=self.P)).processes
                if p.pid == pid][0]
        self.assertTrue(info.HasField("pty"))
        self.assertEqual((info.pty.cols, info.pty.rows), (132, 50))
        self.stub.SignalProcess(pb().SignalProcessRequest(project_id=self.P, process=self.sel(pid), signal=9))
        out.wait_exit()
        # after the exit
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.ResizeTerminal,
                        pb().ResizeTerminalRequest(project_id=self.P, process=self.sel(pid), cols=80, rows=24))

    def test_resize_and_pty_errors(self):
        p = pb()
        for cols, rows, field in ((0, 24, "cols"), (1001, 24, "cols"), (80, 0, "rows"), (80, 5000, "rows")):
            d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.ResizeTerminal,
                                p.ResizeTerminalRequest(project_id=self.P, process=self.sel(1), cols=cols, rows=rows))
            self.assertIn(field, d)
            self.assertIn("1000", d)
        self.sh(self.P, "true")  # the sandbox exists
        self.assertCode(SC.NOT_FOUND, self.stub.ResizeTerminal,
                        p.ResizeTerminalRequest(project_id=self.P, process=self.sel(99999), cols=80, rows=24))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.ResizeTerminal,
                        p.ResizeTerminalRequest(project_id=self.P, cols=80, rows=24))
        ev = list(self.stub.Exec(p.ExecRequest(project_id=self.P, background=True,
                                               argv=p.Argv(args=["sleep", "30"])), timeout=30))
        pid = ev[0].started.pid
        d = self.assertCode(SC.FAILED_PRECONDITION, self.stub.ResizeTerminal,
                            p.ResizeTerminalRequest(project_id=self.P, process=self.sel(pid), cols=80, rows=24))
        self.assertIn("no terminal", d)
        self.stub.SignalProcess(p.SignalProcessRequest(project_id=self.P, process=self.sel(pid), signal=9))
        d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.Run,
                            p.ExecRequest(project_id=self.P, shell="true", pty=p.TerminalSize(cols=0, rows=10)))
        self.assertIn("pty.cols", d)
        d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.Run,
                            p.ExecRequest(project_id=self.P, shell="true", pty=p.TerminalSize(cols=10, rows=2000)))
        self.assertIn("pty.rows", d)

    def test_offsets_attach_and_history(self):
        pid, out = self.start("for i in $(seq 1 200); do echo line-$i; done; read x; echo got-$x")
        out.wait_for(b"line-200\r\n")
        # offsets are contiguous from 0
        o = 0
        for off, n in out.offsets:
            self.assertEqual(off, o)
            o += n
        whole = bytes(out.data)
        # attach again from an offset in the middle: exactly the rest
        mid = len(whole) // 2
        evs = list(self.stub.AttachProcess(pb().AttachProcessRequest(
            project_id=self.P, process=self.sel(pid), stdout_offset=mid), timeout=10))
        self.assertTrue(evs[0].HasField("attached"))
        self.assertTrue(evs[0].attached.running)
        got = b"".join(e.stdout.data for e in evs if e.HasField("stdout"))
        self.assertEqual(evs[1].stdout.offset, mid)
        self.assertEqual(got, whole[mid:])
        self.assertFalse(any(e.HasField("stderr") for e in evs))
        self.send(pid, b"yes\r")  # Enter on a terminal is CR; ICRNL turns it into NL
        x = out.wait_exit()
        self.assertEqual(x.exit_code, 0)
        self.assertIn(b"got-yes", bytes(out.data))
        self.assertEqual(x.stderr_bytes, 0)
        # finished terminal processes are listed with their terminal
        procs = self.stub.ListProcesses(pb().ListProcessesRequest(project_id=self.P, include_exited=True)).processes
        mine = [p for p in procs if p.pid == pid]
        self.assertTrue(mine and mine[0].HasField("pty") and not mine[0].running)

    def test_tag_and_signal(self):
        pid, out = self.start("echo tagged; sleep 100", tag="shell-1")
        out.wait_for(b"tagged")
        p = pb()
        self.stub.ResizeTerminal(p.ResizeTerminalRequest(project_id=self.P, process=p.ProcessSelector(tag="shell-1"),
                                                         cols=90, rows=30), timeout=10)
        self.stub.SignalProcess(p.SignalProcessRequest(project_id=self.P, process=p.ProcessSelector(tag="shell-1"),
                                                       signal=15))
        x = out.wait_exit()
        self.assertEqual(x.signal, signal.SIGTERM)

    def test_foreground_client_leaving_hangs_up(self):
        p = pb()
        self.sh(self.P, "rm -f /tmp/hup")
        req = p.ExecRequest(project_id=self.P, pty=p.TerminalSize(cols=80, rows=24), request_id="hup-1",
                            shell="trap 'echo hup > /tmp/hup; exit 3' HUP; echo ready; "
                                  "while :; do sleep 0.1; done")
        call = self.stub.Exec(req, timeout=60)
        for ev in call:
            if ev.HasField("stdout") and b"ready" in ev.stdout.data:
                break
        call.cancel()
        deadline = time.monotonic() + 10
        r = None
        while time.monotonic() < deadline:
            r = self.sh(self.P, "cat /tmp/hup 2>/dev/null")
            if r.stdout:
                break
            time.sleep(0.1)
        self.assertEqual(r.stdout, b"hup\n")

    def test_tiocsti_refused(self):
        prog = ("import fcntl, termios\n"
                "try:\n"
                "    fcntl.ioctl(0, termios.TIOCSTI, b'x')\n"
                "    print('injected')\n"
                "except OSError as e:\n"
                "    print('refused', e.errno)\n")
        r = self.stub.Run(pb().ExecRequest(project_id=self.P, argv=pb().Argv(args=["python3", "-c", prog]),
                                           pty=pb().TerminalSize(cols=80, rows=24)), timeout=30)
        self.assertEqual(r.stdout, b"refused 1\r\n")  # EPERM from the seccomp filter

    def test_terminals_are_freed(self):
        # the sandbox's devpts allows 256 at once: 300 in a row only work when each is freed
        p = pb()
        for i in range(300):
            r = self.stub.Run(p.ExecRequest(project_id=self.P, argv=p.Argv(args=["tty"]),
                                            pty=p.TerminalSize(cols=80, rows=24)), timeout=30)
            self.assertEqual(r.exit.exit_code, 0, (i, r))
            self.assertTrue(r.stdout.startswith(b"/dev/pts/"), r.stdout)

    def test_stdin_and_close_stdin_in_the_request(self):
        p = pb()
        r = self.stub.Run(p.ExecRequest(project_id=self.P, argv=p.Argv(args=["cat"]), stdin=b"one\ntwo",
                                        close_stdin=True, pty=p.TerminalSize(cols=80, rows=24)), timeout=30)
        self.assertEqual(r.exit.exit_code, 0)
        # the terminal's echo and cat's copy, in an order the scheduler picks: "two" is the
        # partial line the first ^D ended, the second ^D ended cat
        self.assertEqual(r.stdout.count(b"one\r\n"), 2, r.stdout)
        self.assertEqual(r.stdout.count(b"two"), 2, r.stdout)
        self.assertTrue(r.stdout.endswith(b"two"), r.stdout)


# ---------------------------------------------------------------------------------------------
# Watching
# ---------------------------------------------------------------------------------------------

def kind(name):
    return pb().WatchEventKind.Value("WATCH_EVENT_KIND_" + name)


def kname(k):
    return pb().WatchEventKind.Name(k).replace("WATCH_EVENT_KIND_", "")


class Watcher:
    """A WatchDir stream read on a thread into a queue."""

    def __init__(self, stub, timeout=120, **req):
        self.q = queue.Queue()
        self.status = None
        self.details = ""
        self.call = stub.WatchDir(pb().WatchDirRequest(**req), timeout=timeout)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for ev in self.call:
                self.q.put(ev)
            self.status = SC.OK
        except grpc.RpcError as e:
            self.status = e.code()
            self.details = e.details()
        self.q.put(None)

    def next(self, timeout=10):
        return self.q.get(timeout=timeout)

    def ready(self):
        ev = self.next()
        assert ev is not None, "stream ended before READY: %s %s" % (self.status, self.details)
        assert ev.kind == kind("READY"), ev
        return ev

    def collect(self, quiet=0.6, limit=30):
        """Events until none came for `quiet` seconds (or the stream ended)."""
        out = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                ev = self.q.get(timeout=quiet)
            except queue.Empty:
                break
            if ev is None:
                break
            out.append(ev)
        return out

    def close(self):
        self.call.cancel()
        self.t.join(10)


def summary(evs):
    return [(kname(e.kind), e.path) for e in evs]


class WatchTest(Case):
    P = "watch"

    def setUp(self):
        self.sh(self.P, "rm -rf /home/user/w && mkdir -p /home/user/w")

    def test_files_and_directories(self):
        w = Watcher(self.stub, project_id=self.P, path="w", recursive=True)
        r = w.ready()
        self.assertEqual(r.path, "/home/user/w")
        self.assertTrue(r.is_dir)
        self.sh(self.P, "cd w && echo a > f && echo b >> f && mkdir d")
        evs = w.collect()
        self.assertEqual(summary(evs), [("CREATE", "/home/user/w/f"), ("CREATE", "/home/user/w/d")])
        self.assertFalse(evs[0].is_dir)
        self.assertTrue(evs[1].is_dir)
        self.assertGreater(evs[0].at_unix_ms, 0)
        self.sh(self.P, "cd w && echo c >> f")
        self.assertEqual(summary(w.collect()), [("MODIFY", "/home/user/w/f")])
        self.sh(self.P, "cd w && mv f g")
        evs = w.collect()
        self.assertEqual(summary(evs), [("RENAME_FROM", "/home/user/w/f"), ("RENAME_TO", "/home/user/w/g")])
        self.assertNotEqual(evs[0].cookie, 0)
        self.assertEqual(evs[0].cookie, evs[1].cookie)
        self.sh(self.P, "cd w && rm g && rmdir d")
        self.assertEqual(summary(w.collect()), [("DELETE", "/home/user/w/g"), ("DELETE", "/home/user/w/d")])
        # a new directory's contents, written right after the mkdir, are all reported
        self.sh(self.P, "cd w && mkdir -p n/a/b && touch n/1 n/a/2 n/a/b/3")
        got = set(summary(w.collect()))
        for p in ("n", "n/a", "n/a/b", "n/1", "n/a/2", "n/a/b/3"):
            self.assertIn(("CREATE", "/home/user/w/" + p), got)
        # a directory renamed inside the tree: its watches follow
        self.sh(self.P, "cd w && mv n m && touch m/a/b/4")
        evs = summary(w.collect())
        self.assertEqual(evs[:2], [("RENAME_FROM", "/home/user/w/n"), ("RENAME_TO", "/home/user/w/m")])
        self.assertIn(("CREATE", "/home/user/w/m/a/b/4"), evs)
        # moved out of the tree: no more events from it; moved in: watched
        self.sh(self.P, "rm -rf out && mv w/m out && touch out/5 out/a/b/6")
        evs = summary(w.collect())
        self.assertEqual(evs, [("RENAME_FROM", "/home/user/w/m")])
        self.sh(self.P, "mv out w/back && touch w/back/a/6")
        evs = summary(w.collect())
        self.assertEqual(evs[0], ("RENAME_TO", "/home/user/w/back"))
        self.assertIn(("CREATE", "/home/user/w/back/a/6"), evs)
        w.close()

    def test_non_recursive(self):
        self.sh(self.P, "mkdir -p w/sub")
        w = Watcher(self.stub, project_id=self.P, path="/home/user/w")
        w.ready()
        self.sh(self.P, "touch w/sub/x w/top && mkdir w/d2 && touch w/d2/y")
        self.assertEqual(summary(w.collect()), [("CREATE", "/home/user/w/top"), ("CREATE", "/home/user/w/d2")])
        w.close()

    def test_coalescing_and_create_then_delete(self):
        w = Watcher(self.stub, project_id=self.P, path="w", recursive=True, coalesce_ms=300)
        w.ready()
        # within one window: written many times = one event; created and deleted = nothing
        self.sh(self.P, "cd w && for i in 1 2 3 4 5 6 7 8; do echo $i >> log; done; touch tmpf; rm tmpf")
        self.assertEqual(summary(w.collect(quiet=1.0)), [("CREATE", "/home/user/w/log")])
        w.close()

    def test_ten_thousand_files(self):
        w = Watcher(self.stub, project_id=self.P, path="w", recursive=True, timeout=300)
        w.ready()
        prog = ("import os\n"
                "for d in range(100):\n"
                "    os.makedirs('w/pkg/m%d' % d)\n"
                "    for f in range(100):\n"
                "        with open('w/pkg/m%d/f%d.js' % (d, f), 'w') as fh:\n"
                "            fh.write('x')\n")
        t0 = time.monotonic()
        self.stub.Run(pb().ExecRequest(project_id=self.P, argv=pb().Argv(args=["python3", "-c", prog])),
                      timeout=120)
        evs = w.collect(quiet=2.0, limit=120)
        dt = time.monotonic() - t0
        overflow = [e for e in evs if e.kind == kind("OVERFLOW")]
        paths = {e.path for e in evs if e.kind == kind("CREATE")}
        want = {"/home/user/w/pkg/m%d/f%d.js" % (d, f) for d in range(100) for f in range(100)}
        missing = want - paths
        sys.stderr.write("10,000 files: %d events in %.2f s, %d overflow, %d missing\n"
                         % (len(evs), dt, len(overflow), len(missing)))
        self.assertTrue(not missing or overflow, "%d files never reported and no OVERFLOW" % len(missing))
        # coalesced: one event per file, not one per syscall
        self.assertLess(len(evs), 10200 + 100)
        w.close()

    def test_paths_outside_refused_or_clamped(self):
        p = pb()
        self.sh(self.P, "ln -sfn /proc/1/root w/escape; touch w/file")
        # a /proc magic link (the init's root) is never followed
        c, d, _ = self.code(lambda: list(self.stub.WatchDir(
            p.WatchDirRequest(project_id=self.P, path="w/escape"), timeout=10)))
        self.assertIn(c, (SC.PERMISSION_DENIED, SC.NOT_FOUND, SC.FAILED_PRECONDITION), d)
        # kernel pseudo filesystems are not watched
        for path in ("/proc", "/dev/pts"):
            self.assertCode(SC.PERMISSION_DENIED, lambda: list(self.stub.WatchDir(
                p.WatchDirRequest(project_id=self.P, path=path), timeout=10)))
        self.assertCode(SC.NOT_FOUND, lambda: list(self.stub.WatchDir(
            p.WatchDirRequest(project_id=self.P, path="w/missing"), timeout=10)))
        self.assertCode(SC.FAILED_PRECONDITION, lambda: list(self.stub.WatchDir(
            p.WatchDirRequest(project_id=self.P, path="w/file"), timeout=10)))
        d = self.assertCode(SC.INVALID_ARGUMENT, lambda: list(self.stub.WatchDir(
            p.WatchDirRequest(project_id=self.P, path="x" * 5000), timeout=10)))
        self.assertIn("path", d)
        d = self.assertCode(SC.INVALID_ARGUMENT, lambda: list(self.stub.WatchDir(
            p.WatchDirRequest(project_id=self.P, path="w", coalesce_ms=20000), timeout=10)))
        self.assertIn("coalesce_ms", d)
        self.assertCode(SC.INVALID_ARGUMENT, lambda: list(self.stub.WatchDir(
            p.WatchDirRequest(path="w"), timeout=10)))
        # ".." cannot climb out of the root: /../../tmp is the sandbox's /tmp, not the host's
        w = Watcher(self.stub, project_id=self.P, path="/../../../tmp")
        self.assertEqual(w.ready().path, "/tmp")
        host = tempfile.NamedTemporaryFile(dir="/tmp", prefix="sbx-host-")
        self.sh(self.P, "touch /tmp/inside")
        evs = summary(w.collect())
        self.assertIn(("CREATE", "/tmp/inside"), evs)
        self.assertFalse([e for e in evs if "sbx-host-" in e[1]], evs)
        host.close()
        w.close()

    def test_ends_when_directory_deleted(self):
        self.sh(self.P, "mkdir -p w/gone")
        w = Watcher(self.stub, project_id=self.P, path="w/gone")
        w.ready()
        self.sh(self.P, "rmdir w/gone")
        evs = w.collect(limit=10)
        self.assertEqual(summary(evs), [("DELETE", "/home/user/w/gone")])
        w.t.join(5)
        self.assertEqual(w.status, SC.OK, w.details)

    def test_ends_when_sandbox_stops(self):
        w = Watcher(self.stub, project_id="watch-kill", path="")
        self.assertEqual(w.ready().path, "/home/user")
        self.stub.KillSandbox(pb().KillSandboxRequest(project_id="watch-kill"), timeout=30)
        w.t.join(10)
        self.assertFalse(w.t.is_alive())
        self.assertEqual(w.status, SC.OK, w.details)


class WatchLimitsTest(Case):
    executor_args = ("--watch-max-dirs", "5", "--watch-max-streams", "2")
    P = "wlim"

    def test_dir_budget(self):
        self.sh(self.P, "rm -rf t && mkdir -p t/a t/b t/c")
        w = Watcher(self.stub, project_id=self.P, path="t", recursive=True)
        w.ready()
        self.sh(self.P, "mkdir t/d t/e")  # 6 directories: the 6th does not fit
        w.collect()
        w.t.join(10)
        self.assertEqual(w.status, SC.RESOURCE_EXHAUSTED)
        self.assertIn("--watch-max-dirs", w.details)
        self.assertIn("5", w.details)
        self.sh(self.P, "mkdir -p t/f/g/h")
        d = self.assertCode(SC.RESOURCE_EXHAUSTED, lambda: list(self.stub.WatchDir(
            pb().WatchDirRequest(project_id=self.P, path="t", recursive=True), timeout=10)))
        self.assertIn("--watch-max-dirs", d)

    def test_stream_limit(self):
        a = Watcher(self.stub, project_id=self.P, path="")
        b = Watcher(self.stub, project_id=self.P, path="")
        a.ready()
        b.ready()
        d = self.assertCode(SC.RESOURCE_EXHAUSTED, lambda: list(self.stub.WatchDir(
            pb().WatchDirRequest(project_id=self.P, path=""), timeout=10)))
        self.assertIn("--watch-max-streams", d)
        a.close()
        time.sleep(0.5)  # the server notices the cancel within its poll interval
        c = Watcher(self.stub, project_id=self.P, path="")
        c.ready()
        b.close()
        c.close()


if __name__ == "__main__":
    sys.argv = H.parse_bindir(sys.argv)
    unittest.main(verbosity=2)
