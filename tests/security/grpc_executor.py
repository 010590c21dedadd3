#!/usr/bin/env python3
"""Security suite of sbx-executor, driven over gRPC (label `security`). Each test attacks from a
sandbox (through a command or through the file API), asserts the exact failure, and then checks
that the executor still answers health checks with SERVING and that another, fresh sandbox
still runs a command.

Run: /usr/bin/python3 tests/security/grpc_executor.py --bindir build [Test.test_name]
Needs root (user namespaces, cgroups, per-sandbox uid ranges).
"""
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
import sbx_harness as H  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode


def extra_args():
    """$SBX_TEST_EXECUTOR_ARGS: more executor flags, e.g. "--init-path DIR/sbx-init" to run a
    sanitizer build of the executor with an uninstrumented sandbox init."""
    return os.environ.get("SBX_TEST_EXECUTOR_ARGS", "").split()


def pb():
    return H.stubs().executor_pb2


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class GrpcSecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (user namespaces, cgroups, uid ranges)")
        cls.tmp = tempfile.mkdtemp(prefix="sbx-sec-")
        os.chmod(cls.tmp, 0o711)
        cls.ex = H.Server("executor", tmp=cls.tmp, args=["--store", "127.0.0.1:1"] + extra_args()).start()
        cls.ch = H.channel(cls.ex.addr)
        cls.stub = H.stubs().executor_pb2_grpc.SandboxExecutorStub(cls.ch)
        cls.health = H.health_stub(cls.ch)
        cls.n = 0
        # a host-only secret: outside every sandbox root (the sandbox /tmp is a private tmpfs)
        cls.secret_dir = tempfile.mkdtemp(prefix="sbx-host-secret-", dir="/tmp")
        cls.secret = os.path.join(cls.secret_dir, "secret.txt")
        with open(cls.secret, "w") as f:
            f.write("HOST-SECRET")
        os.chmod(cls.secret_dir, 0o755)
        os.chmod(cls.secret, 0o644)

    @classmethod
    def tearDownClass(cls):
        rc = cls.ex.stop(signal.SIGTERM, timeout=30)
        H.kill_all()
        assert rc == 0, "executor exit code %r; stderr:\n%s" % (rc, cls.ex.stderr_text())

    def tearDown(self):
        """After every attack: the executor is SERVING and a fresh sandbox works."""
        r = self.health.Check(H.health_req("sbx.v1.SandboxExecutor"), timeout=10)
        self.assertEqual(r.status, H.serving_status("SERVING"))
        type(self).n += 1
        out = self.run_cmd("sec-after-%d" % self.n, ["echo", "still-works"], timeout=30)
        self.assertEqual(out.stdout, b"still-works\n")
        self.stub.KillSandbox(pb().KillSandboxRequest(project_id="sec-after-%d" % self.n))

    # ---- helpers ----
    def run_cmd(self, project, args=None, shell=None, timeout=60, **kw):
        req = pb().ExecRequest(project_id=project, **kw)
        if shell is not None:
            req.shell = shell
        else:
            req.argv.args.extend(args)
        return self.stub.Run(req, timeout=timeout)

    def code(self, fn, *a, **kw):
        try:
            r = fn(*a, **kw)
            if hasattr(r, "__iter__") and not hasattr(r, "ListFields"):
                list(r)
            return SC.OK, ""
        except grpc.RpcError as e:
            return e.code(), e.details()

    def read_file(self, project, path):
        return self.code(self.stub.ReadFile, pb().ReadFileRequest(project_id=project, path=path), timeout=10)

    def write_file(self, project, path, data=b"x"):
        p = pb()
        return self.code(self.stub.WriteFile, iter([
            p.WriteFileRequest(header=p.WriteFileHeader(project_id=project, path=path)),
            p.WriteFileRequest(data=data)]), timeout=30)

    # ---- host files ----
    def test_etc_shadow_via_command(self):
        r = self.run_cmd("sec-shadow", ["cat", "/etc/shadow"])
        self.assertEqual(r.exit.exit_code, 1)
        self.assertIn(b"Permission denied", r.stderr)
        self.assertEqual(r.stdout, b"")

    def test_etc_shadow_via_file_api(self):
        code, d = self.read_file("sec-shadow", "/etc/shadow")
        self.assertEqual(code, SC.PERMISSION_DENIED, d)

    def test_host_file_via_command(self):
        r = self.run_cmd("sec-host", ["cat", self.secret])
        self.assertEqual(r.exit.exit_code, 1)
        self.assertIn(b"No such file or directory", r.stderr)

    def test_dotdot_and_absolute_traversal(self):
        for path in [self.secret, "../../.." + self.secret, "../" * 40 + self.secret.lstrip("/"),
                     "/home/user/../../.." + self.secret]:
            code, d = self.read_file("sec-trav", path)
            self.assertEqual(code, SC.NOT_FOUND, "%s: %s" % (path, d))
        # another sandbox's home, by its host path, is not reachable either
        self.run_cmd("sec-other", shell="echo OTHER > /home/user/mine.txt")
        pdir = os.path.join(self.ex.data_dir, "sandboxes", "default", "sec-other")
        other = os.path.join(pdir, "home.img")  # the home: an ext4 image (a dir without limits)
        if not os.path.exists(other):
            other = os.path.join(pdir, "home", "mine.txt")
        self.assertTrue(os.path.exists(other))
        code, d = self.read_file("sec-trav", other)
        self.assertEqual(code, SC.NOT_FOUND, d)
        # a magic link is never followed (ELOOP: FAILED_PRECONDITION, as for a symlink loop)
        code, d = self.read_file("sec-trav", "/proc/1/root" + self.secret)
        self.assertIn(code, (SC.PERMISSION_DENIED, SC.NOT_FOUND, SC.FAILED_PRECONDITION), d)

    def test_symlink_escape_via_file_api(self):
        p = pb()
        self.run_cmd("sec-link", shell="ln -s %s abs; ln -s ../../../..%s rel; ln -s /etc/passwd pw"
                     % (self.secret, self.secret))
        # the file API never follows a symlink out through a directory component either
        self.run_cmd("sec-link", shell="ln -s %s dirlink" % self.secret_dir)
        for link in ["abs", "rel", "dirlink/secret.txt"]:
            code, d = self.read_file("sec-link", link)
            self.assertEqual(code, SC.NOT_FOUND, "%s: %s" % (link, d))
        for link in ["abs", "rel"]:
            code, d = self.write_file("sec-link", link, b"pwned")
            # the link resolves inside the sandbox root: /tmp/... in the sandbox's own tmpfs
            self.assertIn(code, (SC.OK, SC.NOT_FOUND, SC.PERMISSION_DENIED), d)
        with open(self.secret) as f:
            self.assertEqual(f.read(), "HOST-SECRET")
        with open("/etc/passwd", "rb") as f:
            before = f.read()
        code, d = self.write_file("sec-link", "pw", b"root::0:0::/:/bin/sh\n")
        self.assertEqual(code, SC.PERMISSION_DENIED, d)
        with open("/etc/passwd", "rb") as f:
            self.assertEqual(f.read(), before)
        st = self.stub.Stat(p.StatRequest(project_id="sec-link", path="abs"))
        self.assertEqual(st.type, p.FILE_TYPE_SYMLINK)

    def test_hardlink_escape(self):
        r = self.run_cmd("sec-hard", ["ln", "/etc/shadow", "/home/user/shadow"])
        self.assertNotEqual(r.exit.exit_code, 0)
        self.assertRegex(r.stderr, rb"Operation not permitted|Invalid cross-device link|Permission denied")

    def test_write_usr(self):
        code, d = self.write_file("sec-usr", "/usr/bin/pwned")
        self.assertEqual(code, SC.PERMISSION_DENIED, d)
        code, d = self.code(self.stub.MakeDir, pb().MakeDirRequest(project_id="sec-usr", path="/usr/pwned"))
        self.assertEqual(code, SC.PERMISSION_DENIED, d)
        r = self.run_cmd("sec-usr", ["touch", "/usr/pwned"])
        self.assertEqual(r.exit.exit_code, 1)
        self.assertIn(b"Read-only file system", r.stderr)
        self.assertFalse(os.path.exists("/usr/pwned"))
        self.assertFalse(os.path.exists("/usr/bin/pwned"))

    # ---- processes, network ----
    def test_no_host_processes_and_no_host_loopback(self):
        r = self.run_cmd("sec-ns", shell="ls /proc | grep -c '^[0-9]'")
        self.assertLess(int(r.stdout), 10)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        try:
            r = self.run_cmd("sec-ns", ["python3", "-c",
                                        "import socket; socket.create_connection(('127.0.0.1', %d), 2)" % port])
            self.assertEqual(r.exit.exit_code, 1)
            self.assertIn(b"ConnectionRefusedError", r.stderr)
        finally:
            srv.close()

    def test_mount_unshare_ptrace_denied(self):
        r = self.run_cmd("sec-sys", shell="mount -t tmpfs x /tmp 2>&1; echo rc=$?")
        self.assertRegex(r.stdout, rb"rc=(1|32)")
        r = self.run_cmd("sec-sys", ["unshare", "-U", "true"])
        self.assertNotEqual(r.exit.exit_code, 0)
        self.assertRegex(r.stderr, rb"Operation not permitted|Function not implemented")

    def test_signal_another_sandboxs_process(self):
        p = pb()
        a = self.stub.Run(p.ExecRequest(project_id="sec-sig-a", argv=p.Argv(args=["sleep", "30"]),
                                        background=True, tag="victim"))
        self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="sec-sig-b"))  # pids restart at 2 there
        code, d = self.code(self.stub.SignalProcess, p.SignalProcessRequest(
            project_id="sec-sig-b", process=p.ProcessSelector(pid=a.pid), signal=9))
        self.assertEqual(code, SC.NOT_FOUND, d)
        code, d = self.code(self.stub.SignalProcess, p.SignalProcessRequest(
            sandbox_id=a.sandbox_id, project_id="sec-sig-b", process=p.ProcessSelector(pid=a.pid)))
        self.assertEqual(code, SC.INVALID_ARGUMENT, d)
        r = self.run_cmd("sec-sig-b", shell="kill -9 -1; echo done")
        ps = self.stub.ListProcesses(p.ListProcessesRequest(project_id="sec-sig-a"))
        self.assertIn(a.pid, [x.pid for x in ps.processes if x.running])
        self.stub.SignalProcess(p.SignalProcessRequest(project_id="sec-sig-a",
                                                       process=p.ProcessSelector(tag="victim"), signal=9))

    # ---- resources ----
    def test_fork_bomb(self):
        p = pb()
        self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="sec-bomb", limits=p.SandboxLimits(pids=64)))
        r = self.run_cmd("sec-bomb", shell="bomb() { bomb | bomb & }; bomb; sleep 2", timeout_ms=4000, timeout=30)
        self.assertTrue(r.exit.timed_out or r.exit.exit_code != 0 or b"fork" in r.stderr,
                        "exit %s stderr %r" % (r.exit, r.stderr[:200]))
        self.assertTrue(b"Resource temporarily unavailable" in r.stderr or b"fork" in r.stderr or
                        r.exit.timed_out, r.stderr[:300])
        self.stub.KillSandbox(p.KillSandboxRequest(project_id="sec-bomb"))

    def test_30g_allocation(self):
        p = pb()
        self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="sec-mem",
                                                       limits=p.SandboxLimits(memory_bytes=256 << 20)))
        r = self.run_cmd("sec-mem", ["python3", "-c",
                                     "l = []\nfor i in range(30 * 8):\n    l.append(b'x' * (128 << 20))"],
                         timeout_ms=60000, timeout=90)
        self.assertEqual((r.exit.signal, r.exit.exit_code), (9, 137), "exit %s stderr %r" % (r.exit, r.stderr[-300:]))
        self.assertFalse(r.exit.timed_out)
        self.stub.KillSandbox(p.KillSandboxRequest(project_id="sec-mem"))

    def test_500mb_stdout(self):
        p = pb()
        pid = self.ex.proc.pid
        before = rss_kb(pid)
        n = 0
        last = None
        for ev in self.stub.Exec(p.ExecRequest(project_id="sec-out", shell="head -c 500000000 /dev/zero"),
                                 timeout=120):
            kind = ev.WhichOneof("event")
            if kind == "stdout":
                n += len(ev.stdout.data)
            last = ev
        self.assertEqual(last.WhichOneof("event"), "exited")
        self.assertTrue(last.exited.output_truncated)
        self.assertEqual(last.exited.stdout_bytes, 500000000)
        self.assertLessEqual(n, 16 << 20)  # the server default cap
        r = self.run_cmd("sec-out", shell="head -c 500000000 /dev/zero", timeout=120)
        self.assertEqual(len(r.stdout), 1 << 20)
        self.assertTrue(r.exit.output_truncated)
        self.assertEqual(r.exit.stdout_bytes, 500000000)
        grew = rss_kb(pid) - before
        self.assertLess(grew, 150 * 1024, "executor RSS grew by %d KiB" % grew)

    def test_big_file_until_the_limit(self):
        p = pb()
        self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="sec-disk",
                                                       limits=p.SandboxLimits(disk_bytes=64 << 20)))
        r = self.run_cmd("sec-disk", ["dd", "if=/dev/zero", "of=/home/user/big", "bs=1M", "count=10240"],
                         timeout=120)
        # the home (an ext4 image of 64 MiB) is full (ENOSPC), or the file size limit stopped
        # it first (SIGXFSZ) where homes are directories (--disk-limit off)
        self.assertTrue(r.exit.signal == 25 or b"No space left on device" in r.stderr,
                        (r.exit, r.stderr))
        st = self.stub.Stat(p.StatRequest(project_id="sec-disk", path="big"))
        self.assertLessEqual(st.size_bytes, 64 << 20)
        chunk = b"\0" * (1 << 20)
        code, d = self.code(self.stub.WriteFile, iter(
            [p.WriteFileRequest(header=p.WriteFileHeader(project_id="sec-disk", path="big2"))] +
            [p.WriteFileRequest(data=chunk) for _ in range(70)]), timeout=60)
        self.assertEqual(code, SC.RESOURCE_EXHAUSTED, d)
        self.assertIn("disk_bytes", d)
        code, d = self.code(self.stub.Stat, p.StatRequest(project_id="sec-disk", path="big2"))
        self.assertEqual(code, SC.NOT_FOUND)  # a failed write leaves nothing behind
        self.stub.KillSandbox(p.KillSandboxRequest(project_id="sec-disk", wipe_home=True))

    def test_many_tiny_files(self):
        r = self.run_cmd("sec-many", shell="mkdir d && cd d && i=0; while [ $i -lt 20000 ]; do : > f$i; "
                         "i=$((i+1)); done; ls | wc -l", timeout_ms=120000, timeout=150)
        self.assertEqual(r.stdout.strip(), b"20000")
        ls = self.stub.ListDir(pb().ListDirRequest(project_id="sec-many", path="d"))
        self.assertTrue(ls.truncated)
        self.assertEqual(len(ls.entries), 10000)
        self.stub.KillSandbox(pb().KillSandboxRequest(project_id="sec-many", wipe_home=True))


if __name__ == "__main__":
    sys.argv = H.parse_bindir(sys.argv)
    unittest.main(verbosity=2)
