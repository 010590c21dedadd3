#!/usr/bin/env python3
"""Network egress of sbx-executor over gRPC (Python grpcio as an independent client), against a
real sbx-executor and sbx-store on ephemeral ports and a host echo/bulk server on 127.0.0.2
(opened with --egress-allow-private 127.0.0.2/32). Loopback only.

PolicyApiTest: CreateSandbox.network (set, unset = --egress-default, set-but-empty = none),
  GetSandbox/ListSandboxes network objects, UpdateSandboxNetwork (INVALID_ARGUMENT naming the
  list, index and pattern; NOT_FOUND; FAILED_PRECONDITION on a stopped sandbox), the proxy
  environment of commands (and a request's env overriding it), the proxies gone after kill.
LoadTest: 100 concurrent tunnels through one sandbox's proxy all echo their own bytes, while a
  client in the same sandbox asks for 64 MiB and stops reading, another sandbox's proxy keeps
  answering, and the executor's health Check answers throughout (its worst latency printed).

Run: /usr/bin/python3 tests/interop/test_egress.py --bindir build [TestClass[.test]]
Needs root (sandboxes).
"""
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest

import sbx_harness as H  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode


def pb():
    return H.stubs().executor_pb2


def extra_args():
    return os.environ.get("SBX_TEST_EXECUTOR_ARGS", "").split()


class Upstream:
    """Echo server on 127.0.0.2: a line "BULK\\n" answers 64 MiB then closes; anything else is
    echoed."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.2", 0))
        self.s.listen(512)
        self.port = self.s.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            with c:
                first = c.recv(65536)
                if first.startswith(b"BULK"):
                    chunk = b"x" * 65536
                    for _ in range(1024):
                        c.sendall(chunk)
                    return
                d = first
                while d:
                    c.sendall(d)
                    d = c.recv(65536)
        except OSError:
            pass

    def close(self):
        self.stop = True
        self.s.close()


PING_PY = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
s.sendall(b"CONNECT 127.0.0.2:%s HTTP/1.1\r\n\r\n" % sys.argv[1].encode())
h = b""
while b"\r\n\r\n" not in h:
    d = s.recv(1)
    if not d:
        break
    h += d
if b" 200 " not in h.split(b"\r\n")[0]:
    print(h.split(b"\r\n")[0].decode())
    sys.exit(0)
s.sendall(b"ping")
print("200", s.recv(4).decode())
"""


class EgressCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (user namespaces, cgroups, uid ranges)")
        cls.up = Upstream()
        cls.tmp = tempfile.mkdtemp(prefix="sbx-egress-test-")
        os.chmod(cls.tmp, 0o711)
        cls.store = H.Server("store", tmp=cls.tmp).start()
        cls.ex = H.Server("executor", tmp=cls.tmp, args=[
            "--store", cls.store.addr, "--egress-allow-private", "127.0.0.2/32",
            "--egress-default", "127.0.0.2:%d" % cls.up.port] + extra_args()).start()
        cls.ch = H.channel(cls.ex.addr)
        cls.stub = H.stubs().executor_pb2_grpc.SandboxExecutorStub(cls.ch)

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        rc = cls.ex.stop(signal.SIGTERM, timeout=30)
        bad = cls.ex.bad_stderr_lines()
        cls.store.stop()
        cls.up.close()
        H.kill_all()
        assert rc == 0, "executor exit code %r; stderr:\n%s" % (rc, cls.ex.stderr_text())
        assert not bad, "executor logged errors:\n" + "\n".join(bad)

    def code_of(self, fn, *a, **kw):
        try:
            return SC.OK, "", fn(*a, **kw)
        except grpc.RpcError as e:
            return e.code(), e.details(), None

    def ping(self, project):
        """A tunnel through the sandbox's HTTP proxy to the echo server: "200 ping" when it
        works, else the proxy's status line."""
        r = self.stub.Run(pb().ExecRequest(project_id=project, argv=pb().Argv(args=["python3", "-", str(self.up.port)]),
                                           stdin=PING_PY.encode()), timeout=60)
        return r.stdout.decode(errors="replace").strip()

    def sh(self, project, shell, env=None, timeout=120):
        return self.stub.Run(pb().ExecRequest(project_id=project, shell=shell, env=env or {}),
                             timeout=timeout)


class PolicyApiTest(EgressCase):
    def test_create_get_update(self):
        p = pb()
        sb = self.stub.CreateSandbox(p.CreateSandboxRequest(
            project_id="eg-api", network=p.NetworkPolicy(allow_out=["127.0.0.2:%d" % self.up.port,
                                                                    "*.example.org:443"],
                                                         deny_out=["bad.example.org"])))
        n = sb.network
        self.assertEqual(list(n.allow_out), ["127.0.0.2:%d" % self.up.port, "*.example.org:443"])
        self.assertEqual(list(n.deny_out), ["bad.example.org"])
        self.assertEqual(n.http_proxy, "http://127.0.0.1:3128")
        self.assertEqual(n.socks_proxy, "socks5h://127.0.0.1:1080")
        self.assertEqual(self.ping("eg-api"), "200 ping")
        r = self.sh("eg-api", "env | grep -E '^(HTTPS?_PROXY|ALL_PROXY|NO_PROXY|http_proxy)=' | sort")
        for line in (b"ALL_PROXY=socks5h://127.0.0.1:1080", b"HTTPS_PROXY=http://127.0.0.1:3128",
                     b"HTTP_PROXY=http://127.0.0.1:3128", b"NO_PROXY=localhost,127.0.0.1,::1",
                     b"http_proxy=http://127.0.0.1:3128"):
            self.assertIn(line, r.stdout)
        # a request's env overrides the injected variables
        r = self.sh("eg-api", "echo $HTTP_PROXY", env={"HTTP_PROXY": "http://mine:1"})
        self.assertEqual(r.stdout, b"http://mine:1\n")
        got = self.stub.GetSandbox(p.GetSandboxRequest(project_id="eg-api")).network
        self.assertGreaterEqual(got.allowed, 1)
        self.assertGreater(got.bytes_in, 0)
        listed = [s for s in self.stub.ListSandboxes(p.ListSandboxesRequest(project_id="eg-api")).sandboxes]
        self.assertEqual(list(listed[0].network.allow_out), list(n.allow_out))
        # replace
        sb = self.stub.UpdateSandboxNetwork(p.UpdateSandboxNetworkRequest(
            project_id="eg-api", network=p.NetworkPolicy(allow_out=["registry.example.net"])))
        self.assertEqual(list(sb.network.allow_out), ["registry.example.net"])
        self.assertEqual(list(sb.network.deny_out), [])
        self.assertIn("denied (not in allow_out)", self.ping("eg-api"))
        # unset network = no egress
        sb = self.stub.UpdateSandboxNetwork(p.UpdateSandboxNetworkRequest(project_id="eg-api"))
        self.assertEqual(list(sb.network.allow_out), [])
        self.assertEqual(sb.network.http_proxy, "http://127.0.0.1:3128")  # open, refusing

    def test_default_and_explicit_none(self):
        p = pb()
        d = self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="eg-default")).network
        self.assertEqual(list(d.allow_out), ["127.0.0.2:%d" % self.up.port])
        n = self.stub.CreateSandbox(p.CreateSandboxRequest(
            project_id="eg-none", network=p.NetworkPolicy())).network
        self.assertEqual(list(n.allow_out), [])
        self.assertEqual(n.http_proxy, "")  # never opened
        r = self.sh("eg-none", "env | grep -ci _proxy= ; curl -sS --max-time 5 http://127.0.0.2:%d/"
                    % self.up.port)
        self.assertTrue(r.stdout.startswith(b"0\n"), r.stdout)
        self.assertNotEqual(r.exit.exit_code, 0)

    def test_errors(self):
        p = pb()
        cases = [
            (p.NetworkPolicy(allow_out=["ok.example", "bad host"]), "network.allow_out[1]", "bad host"),
            (p.NetworkPolicy(deny_out=["10.0.0.0/40"]), "network.deny_out[0]", "/40"),
            (p.NetworkPolicy(allow_out=["x:99999"]), "network.allow_out[0]", "99999"),
            (p.NetworkPolicy(allow_out=["a" * 300]), "network.allow_out[0]", "253"),
            (p.NetworkPolicy(allow_out=["h%d.example" % i for i in range(257)]), "network.allow_out",
             "256"),
        ]
        for pol, field, frag in cases:
            code, det, _ = self.code_of(self.stub.CreateSandbox, p.CreateSandboxRequest(
                project_id="eg-err", network=pol))
            self.assertEqual(code, SC.INVALID_ARGUMENT, det)
            self.assertIn(field, det)
            self.assertIn(frag, det)
            code, det, _ = self.code_of(self.stub.UpdateSandboxNetwork, p.UpdateSandboxNetworkRequest(
                project_id="eg-default", network=pol))
            self.assertEqual(code, SC.INVALID_ARGUMENT, det)
            self.assertIn(field, det)
        code, det, _ = self.code_of(self.stub.UpdateSandboxNetwork, p.UpdateSandboxNetworkRequest(
            project_id="eg-nosuch", network=p.NetworkPolicy(allow_out=["x.example"])))
        self.assertEqual(code, SC.NOT_FOUND, det)
        sb = self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="eg-killed"))
        self.stub.KillSandbox(p.KillSandboxRequest(project_id="eg-killed"))
        code, det, _ = self.code_of(self.stub.UpdateSandboxNetwork, p.UpdateSandboxNetworkRequest(
            sandbox_id=sb.sandbox_id, network=p.NetworkPolicy(allow_out=["x.example"])))
        self.assertEqual(code, SC.FAILED_PRECONDITION, det)
        got = self.stub.GetSandbox(p.GetSandboxRequest(sandbox_id=sb.sandbox_id))
        self.assertEqual(got.network.http_proxy, "")  # closed with the sandbox

    def test_proxy_port_taken(self):
        p = pb()
        self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="eg-taken", network=p.NetworkPolicy()))
        self.stub.Run(p.ExecRequest(project_id="eg-taken", background=True, tag="squat",
                                    shell="exec python3 -c \"import socket,time; s=socket.socket(); "
                                          "s.bind(('127.0.0.1',3128)); s.listen(); time.sleep(60)\""),
                      timeout=30)
        time.sleep(1.0)
        code, det, _ = self.code_of(self.stub.UpdateSandboxNetwork, p.UpdateSandboxNetworkRequest(
            project_id="eg-taken", network=p.NetworkPolicy(allow_out=["x.example"])))
        self.assertEqual(code, SC.FAILED_PRECONDITION, det)
        self.assertIn("3128", det)


LOAD_PY = r"""
import socket, sys, threading
port = int(sys.argv[1])
def tunnel():
    s = socket.create_connection(("127.0.0.1", 3128), timeout=60)
    s.sendall(b"CONNECT 127.0.0.2:%d HTTP/1.1\r\n\r\n" % port)
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            raise SystemExit("proxy closed: %r" % head)
        head += d
    if b" 200 " not in head:
        raise SystemExit("refused: %r" % head)
    return s
# the stalled client: asks for 64 MiB and never reads
stalled = tunnel()
stalled.sendall(b"BULK\n")
errors = []
ok = [0]
lock = threading.Lock()
def one(i):
    try:
        s = tunnel()
        msg = (b"conn %03d " % i) * 100
        for _ in range(20):
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = s.recv(len(msg) - len(got))
                if not d:
                    raise RuntimeError("closed early")
                got += d
            if got != msg:
                raise RuntimeError("mixed bytes")
        s.close()
        with lock:
            ok[0] += 1
    except Exception as e:
        with lock:
            errors.append("%d: %s" % (i, e))
ts = [threading.Thread(target=one, args=(i,)) for i in range(100)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("ok=%d errors=%d" % (ok[0], len(errors)))
for e in errors[:5]:
    print(e)
stalled.close()
"""


class LoadTest(EgressCase):
    def test_100_connections_a_stalled_reader_and_health(self):
        p = pb()
        self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="eg-load"))
        self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="eg-other"))
        stop = threading.Event()
        worst = [0.0]
        fails = []

        def health():
            with H.channel(self.ex.addr) as ch:
                st = H.health_stub(ch)
                while not stop.is_set():
                    t0 = time.monotonic()
                    try:
                        r = st.Check(H.health_req(), timeout=2)
                        if r.status != H.serving_status("SERVING"):
                            fails.append("status %s" % r.status)
                    except grpc.RpcError as e:
                        fails.append(str(e.code()))
                    worst[0] = max(worst[0], time.monotonic() - t0)
                    time.sleep(0.02)

        other = []

        def other_sandbox():
            while not stop.is_set():
                other.append(self.ping("eg-other") == "200 ping")
                time.sleep(0.2)

        th = [threading.Thread(target=health), threading.Thread(target=other_sandbox)]
        for t in th:
            t.start()
        try:
            r = self.stub.Run(p.ExecRequest(project_id="eg-load", argv=pb().Argv(args=["python3", "-", str(self.up.port)]),
                                            stdin=LOAD_PY.encode()), timeout=180)
        finally:
            stop.set()
            for t in th:
                t.join()
        self.assertEqual(r.exit.exit_code, 0, r.stdout + r.stderr)
        self.assertIn(b"ok=100 errors=0", r.stdout, r.stdout + r.stderr)
        self.assertFalse(fails, fails[:5])
        self.assertTrue(other and all(other), other)
        print("health Check worst latency during the load: %.1f ms; other sandbox: %d/%d ok"
              % (worst[0] * 1000, sum(other), len(other)), file=sys.stderr)
        self.assertLess(worst[0], 2.0)
        n = self.stub.GetSandbox(p.GetSandboxRequest(project_id="eg-load")).network
        self.assertGreaterEqual(n.allowed, 101)
        self.assertLess(n.bytes_in, 48 << 20)  # the stalled reader did not drain 64 MiB


if __name__ == "__main__":
    sys.argv = H.parse_bindir(sys.argv)
    unittest.main(verbosity=2)
