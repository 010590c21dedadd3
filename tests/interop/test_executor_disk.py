#!/usr/bin/env python3
"""The shipped sbx-executor's homes as an operator deploys it, over gRPC (Python grpcio as the
client): a data dir anywhere root can use (inside a 0700 parent), and the per-sandbox disk limit
of issue 9 (limits.disk_bytes / disk_inodes on the whole home: an ext4 image per sandbox on a
loop device). Every class starts the real binary with default flags apart from its address,
data dir and the store address (nothing listens there: the outbox keeps the records).

Run: /usr/bin/python3 tests/interop/test_executor_disk.py --bindir build [TestClass[.test]]
Needs root (sandboxes use user namespaces, cgroups, loop devices).
"""
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unittest

import sbx_harness as H  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode
MIB = 1 << 20
MECH = "ext4-image-loop"


def pb():
    return H.stubs().executor_pb2


def extra_args():
    return os.environ.get("SBX_TEST_EXECUTOR_ARGS", "").split()


def allocated(path):
    """Bytes the host really allocated under path (st_blocks, hard links counted once)."""
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            try:
                st = os.lstat(os.path.join(root, n))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


class Executor:
    """One shipped executor on a data dir (restartable on the same dir)."""

    def __init__(self, data_dir, tmp, args=()):
        self.data_dir, self.tmp, self.args = data_dir, tmp, list(args)
        self.srv = None
        self.stub = None

    def start(self):
        self.srv = H.Server("executor", tmp=self.tmp, data_dir=self.data_dir,
                            args=["--store", "127.0.0.1:1"] + self.args + extra_args()).start()
        H.wait_serving(self.srv.addr, timeout=30)
        self.ch = H.channel(self.srv.addr)
        self.stub = H.stubs().executor_pb2_grpc.SandboxExecutorStub(self.ch)
        return self

    def stop(self, sig=signal.SIGTERM):
        self.ch.close()
        rc = self.srv.stop(sig, timeout=30)
        return rc

    def bad_lines(self):
        # the outbox retries a store that is not there; anything else at error is a defect
        return [l for l in self.srv.bad_stderr_lines() if "comp=outbox" not in l]

    def run(self, project, shell, timeout=60):
        return self.stub.Run(pb().ExecRequest(project_id=project, shell=shell), timeout=timeout)

    def write(self, project, path, data, chunk=MIB):
        p = pb()

        def msgs():
            yield p.WriteFileRequest(header=p.WriteFileHeader(project_id=project, path=path))
            for i in range(0, len(data), chunk):
                yield p.WriteFileRequest(data=data[i:i + chunk])
        return self.stub.WriteFile(msgs(), timeout=60)

    def upload(self, project, dest, files):
        p = pb()

        def msgs():
            yield p.UploadFilesRequest(header=p.UploadHeader(project_id=project, dest_dir=dest))
            for name, data in files:
                first = True
                for i in range(0, max(len(data), 1), MIB):
                    yield p.UploadFilesRequest(entry=p.UploadEntry(
                        path=name, content=data[i:i + MIB], append=not first))
                    first = False
        return self.stub.UploadFiles(msgs(), timeout=60)

    def get(self, project):
        return self.stub.GetSandbox(pb().GetSandboxRequest(project_id=project), timeout=10)


def code_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
        return SC.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (user namespaces, cgroups, loop devices)")
        cls.tmp = tempfile.mkdtemp(prefix="sbx-disk-test-")

    @classmethod
    def tearDownClass(cls):
        H.kill_all()


class DataDirTest(Base):
    """A data dir inside a 0700 parent (like /root/sbx): sandboxes run and their homes persist
    across a restart. Before the homes were attached by fd every sandbox failed there with
    "sandbox init failed to start: Permission denied" (step=home)."""

    def check(self, args):
        parent = os.path.join(self.tmp, "private-%d" % len(args))
        os.mkdir(parent, 0o700)
        os.chmod(parent, 0o700)
        data = os.path.join(parent, "data")
        ex = Executor(data, self.tmp, args).start()
        try:
            r = ex.run("dd-a", "echo kept > ~/note && id -u && cat ~/note")
            self.assertEqual(r.exit.exit_code, 0, r.stderr)
            self.assertEqual(r.stdout, b"1000\nkept\n")
            self.assertEqual(stat.S_IMODE(os.stat(parent).st_mode), 0o700)
            # the outbox's retries of the absent store (127.0.0.1:1) are expected; any other
            # warning (a start-up one above all) is a defect
            warn = [l for l in ex.srv.stderr_text().splitlines() if "level=warn" in l and
                    "no --api-keys: accepting unauthenticated calls on loopback only" not in l
                    and "comp=outbox" not in l]
            self.assertEqual(warn, [])
        finally:
            self.assertEqual(ex.stop(), 0)
        self.assertEqual(ex.bad_lines(), [])
        ex = Executor(data, self.tmp, args).start()
        try:
            r = ex.run("dd-a", "cat ~/note")
            self.assertEqual((r.exit.exit_code, r.stdout), (0, b"kept\n"), r.stderr)
        finally:
            self.assertEqual(ex.stop(), 0)
        self.assertEqual(ex.bad_lines(), [])

    def test_image_homes(self):
        self.check([])

    def test_directory_homes(self):
        self.check(["--disk-limit", "off"])


class DiskLimitTest(Base):
    """limits.disk_bytes / disk_inodes hold on the whole home, from inside and through the file
    RPCs, and the executor stays healthy."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = os.path.join(cls.tmp, "data")
        cls.ex = Executor(cls.data, cls.tmp).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.ex.stop()
        bad = cls.ex.bad_lines()
        super().tearDownClass()
        assert rc == 0, "executor exit code %r" % rc
        assert not bad, "executor logged errors:\n" + "\n".join(bad)

    def create(self, project, disk_bytes=10 * MIB, disk_inodes=0):
        p = pb()
        return self.ex.stub.CreateSandbox(p.CreateSandboxRequest(
            project_id=project, limits=p.SandboxLimits(disk_bytes=disk_bytes,
                                                       disk_inodes=disk_inodes)), timeout=30)

    def assertHealthy(self):
        self.assertEqual(H.wait_serving(self.ex.srv.addr), "SERVING")
        r = self.ex.run("healthy", "echo ok")
        self.assertEqual(r.stdout, b"ok\n")

    def test_enforced_and_usage(self):
        s = self.create("dl-get")
        self.assertIn("disk:" + MECH, list(s.enforced))
        self.assertIn("disk_inodes:" + MECH, list(s.enforced))
        self.assertNotIn("disk:rlimit-fsize-per-file", list(s.enforced))
        self.assertEqual(s.limits.disk_bytes, 10 * MIB)
        self.assertEqual(s.limits.disk_inodes, 1024)  # one per 16 KiB, at least 1024
        self.ex.run("dl-get", "head -c 3000000 /dev/zero > ~/a && mkdir ~/d && touch ~/d/x")
        g = self.ex.get("dl-get")
        self.assertEqual(g.disk.mechanism, MECH)
        self.assertGreaterEqual(g.disk.limit_bytes, 10 * MIB)
        self.assertLess(g.disk.limit_bytes, 10 * MIB + 256 * 1024)
        self.assertGreaterEqual(g.disk.limit_inodes, 1024)
        self.assertGreaterEqual(g.disk.used_bytes, 3000000)
        self.assertLess(g.disk.used_bytes, 3000000 + 64 * 1024)
        self.assertEqual(g.disk.used_inodes, 3)  # a, d, d/x (the root is one of ext4's own)
        # default limits: the server's --disk (4G) and one inode per 16 KiB
        d = self.ex.stub.CreateSandbox(pb().CreateSandboxRequest(project_id="dl-default"))
        self.assertEqual(d.limits.disk_bytes, 4 << 30)
        self.assertEqual(d.limits.disk_inodes, (4 << 30) // 16384)
        self.assertEqual(d.disk.mechanism, MECH)

    def test_shell_many_files(self):
        """The issue's reproduction: 20 files of 2 MB in a 10 MiB home."""
        self.create("dl-shell")
        r = self.ex.run("dl-shell", "cd ~ && for i in $(seq 1 20); do "
                        "head -c 2000000 /dev/zero > f$i || echo FAIL$i; done; du -sk .")
        self.assertIn(b"No space left on device", r.stderr)
        self.assertIn(b"FAIL", r.stdout)
        kib = int(r.stdout.split()[-2])
        self.assertLessEqual(kib, 10 * 1024 + 64, r.stdout)
        self.assertGreater(kib, 9 * 1024, r.stdout)
        g = self.ex.get("dl-shell")
        self.assertLessEqual(g.disk.used_bytes, g.disk.limit_bytes)
        # the host holds the image's blocks, no more
        img = os.path.join(self.data, "sandboxes", "default", "dl-shell", "home.img")
        self.assertLess(os.stat(img).st_blocks * 512, 11 * MIB)
        # space comes back: rm, and the files fit again
        r = self.ex.run("dl-shell", "rm -f ~/f* && head -c 8000000 /dev/zero > ~/big && echo ok")
        self.assertEqual(r.stdout, b"ok\n", r.stderr)
        self.assertHealthy()

    def test_write_file(self):
        """Ten 3 MiB WriteFiles: three fit, the fourth is RESOURCE_EXHAUSTED naming the limit."""
        self.create("dl-write")
        blob = b"w" * (3 * MIB)
        results = [code_of(self.ex.write, "dl-write", "w%d" % i, blob) for i in range(10)]
        ok = [c for c, _ in results if c == SC.OK]
        self.assertEqual(len(ok), 3, results)
        for code, details in results[3:]:
            self.assertEqual(code, SC.RESOURCE_EXHAUSTED, details)
            self.assertIn("limits.disk_bytes", details)
            self.assertIn(str(10 * MIB), details)
        r = self.ex.run("dl-write", "ls ~ | sort | tr '\\n' ' '; du -sk ~ | cut -f1")
        self.assertEqual(r.stdout.split()[:3], [b"w0", b"w1", b"w2"], r.stdout)  # no temp left
        self.assertLessEqual(int(r.stdout.split()[-1]), 10 * 1024 + 64)
        self.assertHealthy()

    def test_upload(self):
        """An upload larger than the home is refused whole (RESOURCE_EXHAUSTED, nothing left)."""
        self.create("dl-up")
        files = [("u%02d" % i, bytes([65 + i]) * MIB) for i in range(12)]
        code, details = code_of(self.ex.upload, "dl-up", "/home/user/up", files)
        self.assertEqual(code, SC.RESOURCE_EXHAUSTED, details)
        self.assertIn("limits.disk_bytes", details)
        r = self.ex.run("dl-up", "ls -A ~ | wc -l; du -sk ~ | cut -f1")
        self.assertEqual(int(r.stdout.split()[0]), 0, r.stdout)
        self.assertLess(int(r.stdout.split()[1]), 64)
        ok = self.ex.upload("dl-up", "/home/user/up", files[:6])
        self.assertEqual(ok.files_written, 6)
        self.assertHealthy()

    def test_inodes(self):
        """disk_inodes holds: a loop creating 3000 files stops near 1024; WriteFile of one
        more names limits.disk_inodes."""
        s = self.create("dl-ino", disk_bytes=64 * MIB, disk_inodes=1024)
        self.assertEqual(s.limits.disk_inodes, 1024)
        r = self.ex.run("dl-ino", "cd ~ && i=0; while [ $i -lt 3000 ]; do printf '' 2>/dev/null > f$i "
                        "|| break; i=$((i+1)); done; echo $i")
        made = int(r.stdout)
        self.assertGreaterEqual(made, 1000)
        self.assertLessEqual(made, 1040)
        g = self.ex.get("dl-ino")
        self.assertEqual(g.disk.used_inodes, g.disk.limit_inodes)
        code, details = code_of(self.ex.write, "dl-ino", "one-more", b"x")
        self.assertEqual(code, SC.RESOURCE_EXHAUSTED, details)
        self.assertIn("limits.disk_inodes", details)
        code, details = code_of(self.ex.stub.MakeDir, pb().MakeDirRequest(
            project_id="dl-ino", path="newdir"), timeout=10)
        self.assertEqual(code, SC.RESOURCE_EXHAUSTED, details)
        self.assertIn("limits.disk_inodes", details)
        self.assertHealthy()

    def test_bad_limits(self):
        p = pb()
        for lim, field in ((p.SandboxLimits(disk_bytes=MIB), "limits.disk_bytes"),
                           (p.SandboxLimits(disk_bytes=10 * MIB, disk_inodes=100000),
                            "limits.disk_inodes"),
                           (p.SandboxLimits(disk_inodes=10), "limits.disk_inodes")):
            code, details = code_of(self.ex.stub.CreateSandbox, p.CreateSandboxRequest(
                project_id="dl-bad", limits=lim), timeout=10)
            self.assertEqual(code, SC.INVALID_ARGUMENT, details)
            self.assertIn(field, details)

    def test_limits_stay_with_the_home(self):
        """A home keeps the limits it was made with; wipe_home makes it again."""
        p = pb()
        self.create("dl-keep")
        self.ex.stub.KillSandbox(p.KillSandboxRequest(project_id="dl-keep"), timeout=30)
        code, details = code_of(self.create, "dl-keep", disk_bytes=20 * MIB)
        self.assertEqual(code, SC.FAILED_PRECONDITION, details)
        self.assertIn("wipe_home", details)
        s = self.ex.stub.CreateSandbox(p.CreateSandboxRequest(project_id="dl-keep"), timeout=30)
        self.assertEqual(s.limits.disk_bytes, 10 * MIB)  # the home's, not the server default
        self.ex.stub.KillSandbox(p.KillSandboxRequest(project_id="dl-keep", wipe_home=True),
                                 timeout=30)
        s = self.create("dl-keep", disk_bytes=20 * MIB)
        self.assertEqual(s.limits.disk_bytes, 20 * MIB)

    def test_host_space(self):
        """Filling three 10 MiB homes costs the host about 30 MiB, whatever the sandboxes try
        (sparse images; blanks made ahead hold a few hundred KiB each)."""
        before = allocated(self.data)
        for i in range(3):
            self.create("dl-host%d" % i)
            self.ex.run("dl-host%d" % i, "head -c 100000000 /dev/zero > ~/big; "
                        "for j in $(seq 1 50); do head -c 1000000 /dev/urandom > ~/r$j; done")
        grown = allocated(self.data) - before
        self.assertLess(grown, 36 * MIB, "data dir grew by %d bytes" % grown)
        self.assertHealthy()


class RestartTest(Base):
    """The image survives the executor (SIGTERM and kill -9) and is reused, not recreated; one
    left unclean is repaired before it is mounted again."""

    def test_reuse_after_restart(self):
        data = os.path.join(self.tmp, "data")
        ex = Executor(data, self.tmp).start()
        p = pb()
        ex.stub.CreateSandbox(p.CreateSandboxRequest(
            project_id="rs", limits=p.SandboxLimits(disk_bytes=16 * MIB)), timeout=30)
        ex.run("rs", "echo one > ~/f && mkdir -p ~/src && echo two > ~/src/g")
        img = os.path.join(data, "sandboxes", "default", "rs", "home.img")
        ino = os.stat(img).st_ino
        self.assertEqual(ex.stop(signal.SIGKILL), -signal.SIGKILL)
        ex = Executor(data, self.tmp).start()
        r = ex.run("rs", "cat ~/f ~/src/g && ls -ld ~ | cut -c1-10 && id -u")
        self.assertEqual(r.stdout, b"one\ntwo\ndrwx------\n1000\n", r.stderr)
        self.assertEqual(os.stat(img).st_ino, ino)
        self.assertEqual(ex.get("rs").limits.disk_bytes, 16 * MIB)
        self.assertEqual(ex.stop(), 0)
        # the host went down with the image mounted (no journal on a small home): s_state
        # "not clean" -> e2fsck -p before the next mount
        debugfs = shutil.which("debugfs", path="/usr/sbin:/sbin:/usr/bin:/bin")
        if not debugfs:
            self.skipTest("debugfs (e2fsprogs) not installed: cannot mark the image unclean")
        subprocess.run([debugfs, "-w", "-R", "ssv state 0", img], check=True,
                       capture_output=True)
        ex = Executor(data, self.tmp).start()
        r = ex.run("rs", "cat ~/f")
        self.assertEqual(r.stdout, b"one\n", r.stderr)
        self.assertIn("e2fsck -p", ex.srv.stderr_text())
        self.assertEqual(ex.stop(), 0)
        self.assertEqual(ex.bad_lines(), [])


class WeakTest(Base):
    """Without a working mechanism the executor refuses to start unless told otherwise."""

    def test_refuses_without_loop(self):
        # a data dir whose "disk" entry is a file: the probe cannot make its images there
        data = os.path.join(self.tmp, "data-weak")
        os.mkdir(data)
        with open(os.path.join(data, "disk"), "w") as f:
            f.write("not a dir")
        r = H.run_binary("executor", ["--listen", "127.0.0.1:0", "--data-dir", data,
                                      "--store", "127.0.0.1:1"] + extra_args(), timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("cannot enforce disk limits", r.stderr)
        self.assertIn("--disk-limit off", r.stderr)
        ex = Executor(data, self.tmp, ["--allow-weak-isolation"]).start()
        try:
            s = ex.stub.CreateSandbox(pb().CreateSandboxRequest(project_id="w"), timeout=30)
            self.assertIn("disk:rlimit-fsize-per-file", list(s.enforced))
            self.assertEqual(s.limits.disk_inodes, 0)  # not enforced
            self.assertEqual(s.disk.mechanism, "")
            self.assertIn("disk limits NOT enforced", ex.srv.stderr_text())
        finally:
            self.assertEqual(ex.stop(), 0)


if __name__ == "__main__":
    sys.argv = H.parse_bindir(sys.argv)
    unittest.main(verbosity=2)
