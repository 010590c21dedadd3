#!/usr/bin/env python3
"""ExposePort and StartDevServer of sbx-executor over gRPC (Python grpcio as an independent
client), against a real sbx-executor and sbx-store started on ephemeral ports: servers inside
sandboxes reached from the host through the returned host:port / URL (urllib, raw sockets),
readiness (slow starters waited for, never-listening and early-exiting commands reported with
their last output), 50 concurrent connections, a 100 MB download checked by sha256, raw TCP
echo with half-close, a chunked HTTP response, and a killed sandbox's host ports freed.

Run: /usr/bin/python3 tests/interop/test_ports.py --bindir build [TestClass[.test]]
Needs root (sandboxes use user namespaces, cgroups and per-sandbox uid ranges).
"""
import concurrent.futures
import hashlib
import http.client
import os
import signal
import socket
import sys
import tempfile
import time
import unittest
import urllib.request

import sbx_harness as H  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode

# no proxy from the environment may come between the test and the forwarder
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

ECHO_PY = b"""
import socket, sys, threading
def serve(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
print("echo listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

CHUNKED_PY = b"""
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(20):
            data = ("chunk %02d " % i).encode() * (i + 1)
            self.wfile.write(b"%x\\r\\n" % len(data) + data + b"\\r\\n")
            self.wfile.flush()
            time.sleep(0.02)
        self.wfile.write(b"0\\r\\n\\r\\n")
        self.wfile.flush()
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def extra_args():
    return os.environ.get("SBX_TEST_EXECUTOR_ARGS", "").split()


def pb():
    return H.stubs().executor_pb2


def get(url, timeout=20):
    with OPENER.open(url, timeout=timeout) as r:
        return r.status, r.read()


def listening(host, port):
    """False when a connect to host:port is refused (nothing listens there). A forward whose
    sandbox port has no listener accepts and resets, which still counts as listening."""
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    except OSError:
        pass
    return True


def host_port_of(url):
    rest = url.split("://", 1)[1].rstrip("/")
    host, port = rest.rsplit(":", 1)
    return host.strip("[]"), int(port)


class PortsCase(unittest.TestCase):
    """One sbx-store and one sbx-executor for the whole class."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (user namespaces, cgroups, uid ranges)")
        cls.tmp = tempfile.mkdtemp(prefix="sbx-ports-test-")
        os.chmod(cls.tmp, 0o711)  # sandbox roots (unprivileged uids) traverse to their homes
        cls.store = H.Server("store", tmp=cls.tmp).start()
        cls.ex = H.Server("executor", tmp=cls.tmp,
                          args=["--store", cls.store.addr] + extra_args()).start()
        cls.ch = H.channel(cls.ex.addr)
        cls.stub = H.stubs().executor_pb2_grpc.SandboxExecutorStub(cls.ch)

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        rc = cls.ex.stop(signal.SIGTERM, timeout=30)
        bad = cls.ex.bad_stderr_lines()
        cls.store.stop()
        H.kill_all()
        assert rc == 0, "executor exit code %r; stderr:\n%s" % (rc, cls.ex.stderr_text())
        assert not bad, "executor logged errors:\n" + "\n".join(bad)

    # ---- helpers ----
    def code_of(self, fn, *a, **kw):
        try:
            return SC.OK, "", fn(*a, **kw)
        except grpc.RpcError as e:
            return e.code(), e.details(), None

    def assertCode(self, want, fn, *a, **kw):
        code, details, r = self.code_of(fn, *a, **kw)
        self.assertEqual(code, want, "details: %s" % details)
        return details if code != SC.OK else r

    def sh(self, project, shell, stdin=b"", **kw):
        r = self.stub.Run(pb().ExecRequest(project_id=project, shell=shell, stdin=stdin, **kw),
                          timeout=120)
        self.assertEqual(r.exit.exit_code, 0, r.stderr)
        return r

    def dev(self, project, shell, port, timeout=60, **kw):
        req = pb().StartDevServerRequest(project_id=project, shell=shell, port=port, **kw)
        return self.stub.StartDevServer(req, timeout=timeout)

    def expose(self, project, port):
        return self.stub.ExposePort(pb().ExposePortRequest(project_id=project, port=port),
                                    timeout=30)

    def background(self, project, shell, tag):
        return self.stub.Run(pb().ExecRequest(project_id=project, shell=shell, background=True,
                                              tag=tag, close_stdin=True), timeout=30)

    def connect_when_listening(self, host, port, timeout=15):
        """Connects through the forwarder and checks the far side is there: a forward to a
        port nobody listens on yet is accepted and then reset."""
        deadline = time.monotonic() + timeout
        while True:
            s = None
            try:
                s = socket.create_connection((host, port), timeout=10)
                s.sendall(b"ping\n")
                d = s.recv(5)
                if d == b"ping\n":
                    return s
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                pass  # accepted, then reset: nothing listens inside yet
            if s:
                s.close()
            if time.monotonic() > deadline:
                self.fail("nothing answered on %s:%d within %ds" % (host, port, timeout))
            time.sleep(0.1)

    def procs(self, project):
        return self.stub.ListProcesses(pb().ListProcessesRequest(project_id=project,
                                                                 include_exited=True)).processes


class ExposePortTest(PortsCase):
    def test_http_server_reachable_and_idempotent(self):
        p = pb()
        self.sh("pt-http", "mkdir -p www && printf 'hello from the sandbox\\n' > www/index.html")
        r = self.dev("pt-http", "cd www && exec python3 -m http.server 8000 --bind 127.0.0.1", 8000,
                     tag="web")
        self.assertTrue(r.url.startswith("http://127.0.0.1:"), r.url)
        self.assertTrue(r.url.endswith("/"), r.url)
        self.assertEqual(r.host, "127.0.0.1")
        self.assertEqual(r.url, "http://127.0.0.1:%d/" % r.host_port)
        self.assertGreater(r.pid, 0)
        self.assertTrue(r.sandbox_id)
        status, body = get(r.url + "index.html")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"hello from the sandbox\n")
        # ExposePort of the same port: the same host port, host and URL
        e = self.expose("pt-http", 8000)
        self.assertEqual((e.host, e.host_port, e.url), (r.host, r.host_port, r.url))
        e2 = self.stub.ExposePort(p.ExposePortRequest(sandbox_id=r.sandbox_id, port=8000))
        self.assertEqual(e2.host_port, r.host_port)
        # the same tag again: no second process, the same pid and URL
        r2 = self.dev("pt-http", "exec python3 -m http.server 8000", 8000, tag="web")
        self.assertEqual((r2.pid, r2.url), (r.pid, r.url))
        running = [x for x in self.procs("pt-http") if x.running]
        self.assertEqual([x.tag for x in running], ["web"])
        # GetSandbox lists the forward
        g = self.stub.GetSandbox(p.GetSandboxRequest(project_id="pt-http"))
        self.assertEqual([(x.port, x.host, x.host_port, x.url) for x in g.exposed_ports],
                         [(8000, r.host, r.host_port, r.url)])
        # a second port gets another host port; exposed_ports is ordered by port
        e3 = self.expose("pt-http", 7000)
        self.assertNotEqual(e3.host_port, r.host_port)
        g = self.stub.GetSandbox(p.GetSandboxRequest(sandbox_id=r.sandbox_id))
        self.assertEqual([x.port for x in g.exposed_ports], [7000, 8000])
        lst = self.stub.ListSandboxes(p.ListSandboxesRequest(project_id="pt-http"))
        self.assertEqual([x.port for x in lst.sandboxes[0].exposed_ports], [7000, 8000])

    def test_bad_requests(self):
        p = pb()
        for port in (0, 65536, 70000):
            d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.ExposePort,
                                p.ExposePortRequest(project_id="pt-bad", port=port))
            self.assertIn("port", d)
            d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.StartDevServer,
                                p.StartDevServerRequest(project_id="pt-bad", port=port,
                                                        shell="true"))
            self.assertIn("port", d)
        d = self.assertCode(SC.NOT_FOUND, self.stub.ExposePort,
                            p.ExposePortRequest(sandbox_id="sb-0000000000000000", port=80))
        self.assertIn("sb-0000000000000000", d)
        self.assertCode(SC.NOT_FOUND, self.stub.StartDevServer,
                        p.StartDevServerRequest(sandbox_id="sb-0000000000000000", port=80,
                                                shell="true"))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.ExposePort, p.ExposePortRequest(port=80))
        self.assertCode(SC.INVALID_ARGUMENT, self.stub.ExposePort,
                        p.ExposePortRequest(project_id="bad project", port=80))
        for kw, field in ((dict(ready_path="no-slash"), "ready_path"),
                          (dict(ready_path="/a b"), "ready_path"),
                          (dict(ready_timeout_ms=-1), "ready_timeout_ms"),
                          (dict(ready_timeout_ms=600001), "ready_timeout_ms"),
                          (dict(tag="bad tag"), "tag"),
                          (dict(env={"A=B": "x"}), "env")):
            d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.StartDevServer,
                                p.StartDevServerRequest(project_id="pt-bad", port=80,
                                                        shell="true", **kw))
            self.assertIn(field, d)
        d = self.assertCode(SC.INVALID_ARGUMENT, self.stub.StartDevServer,
                            p.StartDevServerRequest(project_id="pt-bad", port=80))
        self.assertIn("command", d)
        # a sandbox that was killed: FAILED_PRECONDITION by id (as the other RPCs)
        sb = self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="pt-bad")).sandbox_id
        self.stub.KillSandbox(p.KillSandboxRequest(sandbox_id=sb))
        self.assertCode(SC.FAILED_PRECONDITION, self.stub.ExposePort,
                        p.ExposePortRequest(sandbox_id=sb, port=80))


class ReadinessTest(PortsCase):
    def test_slow_starter_is_waited_for(self):
        t0 = time.monotonic()
        r = self.dev("pt-slow", "sleep 2; exec python3 -m http.server 8001 --bind 127.0.0.1",
                     8001, ready_timeout_ms=30000)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 1.9)
        self.assertGreaterEqual(r.ready_after_ms, 1900)
        self.assertLess(r.ready_after_ms, 20000)
        status, _ = get(r.url)
        self.assertEqual(status, 200)

    def test_ready_path_any_status_counts(self):
        r = self.dev("pt-path", "exec python3 -m http.server 8002 --bind 127.0.0.1", 8002,
                     ready_path="/does-not-exist?x=1")
        try:
            get(r.url + "nope")
            self.fail("expected 404")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 404)

    def test_never_listens_fails_within_timeout(self):
        t0 = time.monotonic()
        d = self.assertCode(SC.DEADLINE_EXCEEDED, self.dev, "pt-never",
                            "echo never-listening-marker-1; echo on-stderr-marker-2 >&2; "
                            "exec sleep 600", 8003, ready_timeout_ms=1500, tag="never")
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 1.4)
        self.assertLess(took, 6.0, "the ready timeout was 1.5 s")
        self.assertIn("8003", d)
        self.assertIn("on-stderr-marker-2", d)  # its last output
        self.assertIn("killed", d)
        # killed (not keep_on_failure): nothing with the tag is running any more
        deadline = time.monotonic() + 10
        while any(x.running for x in self.procs("pt-never")) and time.monotonic() < deadline:
            time.sleep(0.1)
        never = [x for x in self.procs("pt-never") if x.tag == "never"]
        self.assertEqual(len(never), 1)
        self.assertFalse(never[0].running)
        self.assertEqual(never[0].exit.signal, signal.SIGKILL)

    def test_keep_on_failure_leaves_it_running(self):
        d = self.assertCode(SC.DEADLINE_EXCEEDED, self.dev, "pt-keep",
                            "echo still-here-marker; exec sleep 600", 8004,
                            ready_timeout_ms=700, tag="kept", keep_on_failure=True)
        self.assertIn("still-here-marker", d)
        self.assertIn("left running", d)
        kept = [x for x in self.procs("pt-keep") if x.tag == "kept"]
        self.assertTrue(kept and kept[0].running)

    def test_exits_early_is_reported(self):
        t0 = time.monotonic()
        d = self.assertCode(SC.FAILED_PRECONDITION, self.dev, "pt-exit",
                            "echo about-to-fail-marker >&2; sleep 0.3; exit 3", 8005,
                            ready_timeout_ms=30000)
        self.assertLess(time.monotonic() - t0, 10.0, "an exit ends the wait at once")
        self.assertIn("code 3", d)
        self.assertIn("about-to-fail-marker", d)
        # the early exit of a real server: address already in use
        self.dev("pt-exit", "exec python3 -m http.server 8006 --bind 127.0.0.1", 8006)
        d = self.assertCode(SC.FAILED_PRECONDITION, self.dev, "pt-exit",
                            "exec python3 -c 'import socket; s=socket.socket(); "
                            "s.bind((\"127.0.0.1\", 8006))'", 8007)
        self.assertIn("Address already in use", d)
        # a program that does not exist
        d = self.assertCode(SC.FAILED_PRECONDITION, self.stub.StartDevServer,
                            pb().StartDevServerRequest(project_id="pt-exit", port=8008,
                                                       argv=pb().Argv(args=["/no/such/prog"])))
        self.assertIn("127", d)
        self.assertIn("/no/such/prog", d)

    def test_deadline_shorter_than_ready_timeout(self):
        t0 = time.monotonic()
        code, _, _ = self.code_of(self.dev, "pt-dl", "exec sleep 600", 8009,
                                  ready_timeout_ms=60000, tag="dl", timeout=1.5)
        self.assertEqual(code, SC.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - t0, 5)
        # the executor stopped waiting and killed the process
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            dl = [x for x in self.procs("pt-dl") if x.tag == "dl"]
            if dl and not dl[0].running:
                break
            time.sleep(0.1)
        self.assertFalse(dl[0].running)


class TrafficTest(PortsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        self = cls("run")
        self.sh("pt-traffic", "mkdir -p www && head -c 100000000 /dev/urandom > www/big.bin && "
                "printf 'small page\\n' > www/small.txt")
        cls.big_sha = self.sh("pt-traffic", "sha256sum www/big.bin").stdout.split()[0].decode()
        cls.web = self.dev("pt-traffic", "cd www && exec python3 -m http.server 8080 "
                           "--bind 127.0.0.1", 8080, tag="web")

    def test_50_concurrent_connections(self):
        host, port = host_port_of(self.web.url)
        # 50 connections open at the same time, then a request on each
        socks = [socket.create_connection((host, port), timeout=20) for _ in range(50)]
        try:
            for s in socks:
                s.sendall(b"GET /small.txt HTTP/1.0\r\nHost: x\r\n\r\n")
            for s in socks:
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
                self.assertTrue(data.startswith(b"HTTP/1.0 200"), data[:100])
                self.assertTrue(data.endswith(b"\r\n\r\nsmall page\n"), data[-100:])
        finally:
            for s in socks:
                s.close()
        # and 50 concurrent urllib requests
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            res = list(pool.map(lambda _: get(self.web.url + "small.txt"), range(50)))
        self.assertEqual(res, [(200, b"small page\n")] * 50)

    def test_100mb_download_byte_for_byte(self):
        h = hashlib.sha256()
        n = 0
        t0 = time.monotonic()
        with OPENER.open(self.web.url + "big.bin", timeout=120) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(int(r.headers["Content-Length"]), 100000000)
            while True:
                d = r.read(1 << 20)
                if not d:
                    break
                h.update(d)
                n += len(d)
        took = time.monotonic() - t0
        self.assertEqual(n, 100000000)
        self.assertEqual(h.hexdigest(), self.big_sha)
        sys.stderr.write("[100 MB through the forwarder in %.2f s] " % took)

    def test_raw_tcp_echo(self):
        self.sh("pt-traffic", "cat > echo.py", stdin=ECHO_PY)
        self.background("pt-traffic", "exec python3 echo.py 9000", "echo")
        e = self.expose("pt-traffic", 9000)
        s = self.connect_when_listening(e.host, e.host_port)
        try:
            payload = bytes(range(256)) * 4096 + os.urandom(3 << 20)  # every byte value, 4 MiB
            recv = bytearray()

            def reader():
                while True:
                    d = s.recv(1 << 16)
                    if not d:
                        return
                    recv.extend(d)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                f = pool.submit(reader)
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)  # half-close: the echo finishes and closes its side
                f.result(timeout=60)
            self.assertEqual(len(recv), len(payload))
            self.assertEqual(bytes(recv), payload)
        finally:
            s.close()
        # a long-lived connection: still relays after an idle pause
        s = self.connect_when_listening(e.host, e.host_port)
        try:
            time.sleep(1.5)
            s.sendall(b"\x00after a pause\xff")
            got = b""
            while len(got) < 15:
                got += s.recv(100)
            self.assertEqual(got, b"\x00after a pause\xff")
        finally:
            s.close()

    def test_chunked_response(self):
        self.sh("pt-traffic", "cat > chunked.py", stdin=CHUNKED_PY)
        r = self.dev("pt-traffic", "exec python3 chunked.py 9100", 9100, tag="chunked")
        host, port = host_port_of(r.url)
        c = http.client.HTTPConnection(host, port, timeout=20)
        try:
            for _ in range(2):  # two requests on one keep-alive connection
                c.request("GET", "/stream")
                resp = c.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
                body = resp.read()
                want = b"".join(("chunk %02d " % i).encode() * (i + 1) for i in range(20))
                self.assertEqual(body, want)
        finally:
            c.close()
        # the raw bytes on the wire keep the chunk framing
        s = socket.create_connection((host, port), timeout=20)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = b""
            while not raw.endswith(b"0\r\n\r\n"):
                d = s.recv(65536)
                if not d:
                    break
                raw += d
            self.assertIn(b"\r\n9\r\nchunk 00 \r\n", raw)
            self.assertTrue(raw.endswith(b"\r\n0\r\n\r\n"))
        finally:
            s.close()


class KillTest(PortsCase):
    def test_kill_frees_host_ports(self):
        p = pb()
        r = self.dev("pt-kill", "exec python3 -m http.server 8000 --bind 127.0.0.1", 8000)
        e = self.expose("pt-kill", 8001)
        host, port = host_port_of(r.url)
        self.assertEqual(get(r.url)[0], 200)
        live = socket.create_connection((host, port), timeout=10)  # an open connection too
        k = self.stub.KillSandbox(p.KillSandboxRequest(project_id="pt-kill"))
        self.assertTrue(k.killed)
        for hp in (port, e.host_port):
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection((host, hp), timeout=5).close()
        # the live connection was closed or reset
        live.settimeout(10)
        try:
            self.assertEqual(live.recv(10), b"")
        except (ConnectionResetError, BrokenPipeError):
            pass
        live.close()
        g = self.stub.GetSandbox(p.GetSandboxRequest(sandbox_id=r.sandbox_id))
        self.assertEqual(g.state, p.SANDBOX_STATE_STOPPED)
        self.assertEqual(len(g.exposed_ports), 0)
        # the project's next sandbox exposes afresh (a new forward)
        r2 = self.dev("pt-kill", "exec python3 -m http.server 8000 --bind 127.0.0.1", 8000)
        self.assertNotEqual(r2.sandbox_id, r.sandbox_id)
        self.assertEqual(get(r2.url)[0], 200)

    def test_idle_expiry_frees_host_ports(self):
        p = pb()
        self.stub.CreateSandbox(p.CreateSandboxRequest(project_id="pt-idle", idle_timeout_ms=1000))
        e = self.expose("pt-idle", 8000)
        self.assertTrue(listening(e.host, e.host_port))
        deadline = time.monotonic() + 15
        while listening(e.host, e.host_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertFalse(listening(e.host, e.host_port), "the idle sandbox's host port is open")
        self.assertCode(SC.NOT_FOUND, self.stub.GetSandbox,
                        p.GetSandboxRequest(project_id="pt-idle"))


if __name__ == "__main__":
    sys.argv = H.parse_bindir(sys.argv)
    unittest.main(verbosity=2)
