#!/usr/bin/python3
"""Interop tests: Python grpcio (Debian's python3-grpcio) against sbx-store and sbx-executor.

Run:  /usr/bin/python3 tests/interop/test_interop.py --bindir build [TestClass ...]
The binaries come from --bindir (or $SBX_BUILD_DIR, else <repo>/build); the protos from
$SBX_PROTO_DIR (else <repo>/proto). Stubs are generated at test time into a temp dir.

Every test runs against BOTH services (subTest per service). Each test class starts its own
servers on 127.0.0.1:0 with temporary data dirs and kills them in tearDown/tearDownClass.
"""
import os
import signal
import sys
import tempfile
import threading
import time
import unittest

import sbx_harness as h  # noqa: E402

grpc = h.grpc
SC = grpc.StatusCode
BOTH = ("store", "executor")


def note(msg):
    sys.stderr.write("  note: %s\n" % msg)
    sys.stderr.flush()


class ServersMixin:
    """setUpClass starts one server per service with cls.server_args(service)."""

    @classmethod
    def server_args(cls, service):
        return []

    @classmethod
    def setUpClass(cls):
        h.stubs()
        cls.tmp = tempfile.mkdtemp(prefix="sbx-interop-")
        cls.servers = {}
        try:
            cls.prepare()
            for svc in BOTH:
                cls.servers[svc] = h.Server(svc, args=cls.server_args(svc), tmp=cls.tmp)
            for svc in BOTH:
                cls.servers[svc].start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def prepare(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        for s in getattr(cls, "servers", {}).values():
            s.kill()
        h.kill_all()
        import shutil
        shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)

    def addr(self, svc):
        return self.servers[svc].addr

    def assertAlive(self, svc):
        s = self.servers[svc]
        self.assertIsNone(s.proc.poll(), "%s died (rc %s); stderr:\n%s"
                          % (svc, s.proc.poll(), s.stderr_text()[-3000:]))

    def assertCode(self, got, want, what):
        code = got[0] if isinstance(got, tuple) else got
        self.assertEqual(code, want, "%s: got %s (%s), want %s"
                         % (what, code, got[1] if isinstance(got, tuple) else "", want))


# ---------------------------------------------------------------------------------------------
class HealthTest(ServersMixin, unittest.TestCase):
    """grpc.health.v1.Health Check and Watch on both services."""

    def test_check_server_and_service_name_serving(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                st = h.health_stub(ch)
                for name in ("", h.SERVICES[svc][1]):
                    r = st.Check(h.health_req(name), timeout=5)
                    self.assertEqual(r.status, h.serving_status("SERVING"), "%s %r" % (svc, name))

    def test_check_unknown_service_not_found(self):
        for svc in BOTH:
            other = h.SERVICES["executor" if svc == "store" else "store"][1]
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                st = h.health_stub(ch)
                for name in ("sbx.v1.NoSuchService", other, "sbx.v1", h.SERVICES[svc][1] + "x"):
                    with self.assertRaises(grpc.RpcError, msg=name) as cm:
                        st.Check(h.health_req(name), timeout=5)
                    self.assertEqual(cm.exception.code(), SC.NOT_FOUND, name)

    def test_check_long_unknown_name_not_found(self):
        # 64 KiB name: well under --max-message; the answer must still be NOT_FOUND (the
        # status message must not echo the whole name past the peer's metadata limit).
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    h.health_stub(ch).Check(h.health_req("n" * 65536), timeout=5)
                self.assertEqual(cm.exception.code(), SC.NOT_FOUND,
                                 "%s: %s" % (svc, cm.exception.details()))
                self.assertAlive(svc)

    def test_watch_first_message_serving(self):
        for svc in BOTH:
            for name in ("", h.SERVICES[svc][1]):
                with self.subTest(svc=svc, name=name), h.channel(self.addr(svc)) as ch:
                    call = h.health_stub(ch).Watch(h.health_req(name), timeout=10)
                    first = next(call)
                    self.assertEqual(first.status, h.serving_status("SERVING"))
                    call.cancel()
                    with self.assertRaises(grpc.RpcError) as cm:
                        next(call)
                    self.assertEqual(cm.exception.code(), SC.CANCELLED)

    def test_watch_unknown_service_reports_service_unknown(self):
        # health.proto: Watch reports an unknown name as SERVICE_UNKNOWN, not as an error.
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                call = h.health_stub(ch).Watch(h.health_req("sbx.v1.NoSuchService"), timeout=10)
                self.assertEqual(next(call).status, h.serving_status("SERVICE_UNKNOWN"))
                call.cancel()

    def test_many_concurrent_checks_and_watches(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                st = h.health_stub(ch)
                watches = [st.Watch(h.health_req(""), timeout=10) for _ in range(20)]
                futs = [st.Check.future(h.health_req(""), timeout=10) for _ in range(200)]
                for f in futs:
                    self.assertEqual(f.result().status, h.serving_status("SERVING"))
                for w in watches:
                    self.assertEqual(next(w).status, h.serving_status("SERVING"))
                for w in watches:
                    w.cancel()
                # the server notices the cancellations and keeps answering
                self.assertEqual(st.Check(h.health_req(""), timeout=5).status,
                                 h.serving_status("SERVING"))
                self.assertAlive(svc)


# ---------------------------------------------------------------------------------------------
class StatusTest(ServersMixin, unittest.TestCase):
    """UNIMPLEMENTED, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED (default --max-message 16M)."""

    def test_unknown_method_unimplemented(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                for path in ("/sbx.v1.Nope/X", "/%s/NoSuchRpc" % h.SERVICES[svc][1],
                             "/grpc.health.v1.Health/Nope"):
                    t0 = time.monotonic()
                    code, details = h.raw_unary(ch, path, b"", timeout=5)
                    self.assertEqual(code, SC.UNIMPLEMENTED, "%s %s: %s" % (svc, path, details))
                    # at once, not after the deadline
                    self.assertLess(time.monotonic() - t0, 2.0, path)

    def test_unimplemented_rpc_of_the_service(self):
        skipped = []
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                rpc, info = h.find_unimplemented(ch, svc)
                if rpc is None:
                    skipped.append("%s: every probed RPC is implemented (%s)" % (svc, info))
                    continue
                self.assertIn(rpc, info, "the UNIMPLEMENTED message should name the method")
        if skipped:
            note("; ".join(skipped))
            if len(skipped) == len(BOTH):
                self.skipTest("; ".join(skipped))

    def test_watch_deadline_exceeded(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                t0 = time.monotonic()
                call = h.health_stub(ch).Watch(h.health_req(""), timeout=0.3)
                self.assertEqual(next(call).status, h.serving_status("SERVING"))
                with self.assertRaises(grpc.RpcError) as cm:
                    for _ in call:
                        pass
                self.assertEqual(cm.exception.code(), SC.DEADLINE_EXCEEDED)
                el = time.monotonic() - t0
                self.assertGreaterEqual(el, 0.25)
                self.assertLess(el, 3.0)
                # the server is fine afterwards
                st = h.health_stub(ch)
                self.assertEqual(st.Check(h.health_req(""), timeout=5).status,
                                 h.serving_status("SERVING"))

    def test_sbx_rpc_answers_before_deadline(self):
        # an sbx RPC (implemented or not) is answered before a 2 s deadline, never hangs
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                t0 = time.monotonic()
                code, details, _ = h.call_rpc(ch, svc, h.READ_ONLY_RPCS[svc][0], timeout=2)
                self.assertNotEqual(code, SC.DEADLINE_EXCEEDED, details)
                self.assertLess(time.monotonic() - t0, 2.0)

    def test_oversized_request_resource_exhausted(self):
        big = 17 << 20
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    h.health_stub(ch).Check(h.health_req("x" * big), timeout=20)
                self.assertEqual(cm.exception.code(), SC.RESOURCE_EXHAUSTED,
                                 cm.exception.details())
                # the same through a service method (rejected before any handler or auth)
                path = h.rpc_method(svc, h.READ_ONLY_RPCS[svc][0])[0]
                code, details = h.raw_unary(ch, path, h.big_string_field(big), timeout=20)
                self.assertEqual(code, SC.RESOURCE_EXHAUSTED, details)
                self.assertEqual(h.health_stub(ch).Check(h.health_req(""), timeout=5).status,
                                 h.serving_status("SERVING"))
                self.assertAlive(svc)

    def test_request_under_default_limit_accepted(self):
        # 12 MiB < 16M: a HealthCheckRequest for "" carrying a 12 MiB unknown field must reach
        # the handler and be answered SERVING, not be rejected
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                code, details = h.raw_unary(ch, "/grpc.health.v1.Health/Check",
                                            h.big_string_field(12 << 20, field=15), timeout=20)
                self.assertEqual(code, SC.OK, "%s: %s" % (svc, details))
                self.assertAlive(svc)


class MaxMessageTest(ServersMixin, unittest.TestCase):
    """--max-message 1M: 2 MiB rejected, 512 KiB accepted."""

    @classmethod
    def server_args(cls, service):
        return ["--max-message", "1M"]

    def test_2mib_rejected(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    h.health_stub(ch).Check(h.health_req("x" * (2 << 20)), timeout=10)
                self.assertEqual(cm.exception.code(), SC.RESOURCE_EXHAUSTED,
                                 cm.exception.details())
                path = h.rpc_method(svc, h.READ_ONLY_RPCS[svc][0])[0]
                code, details = h.raw_unary(ch, path, h.big_string_field(2 << 20), timeout=10)
                self.assertEqual(code, SC.RESOURCE_EXHAUSTED, details)
                self.assertAlive(svc)

    def test_small_request_accepted(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                st = h.health_stub(ch)
                self.assertEqual(st.Check(h.health_req(""), timeout=5).status,
                                 h.serving_status("SERVING"))
                code, details = h.raw_unary(ch, "/grpc.health.v1.Health/Check",
                                            h.big_string_field(512 << 10, field=15), timeout=10)
                self.assertEqual(code, SC.OK, details)


# ---------------------------------------------------------------------------------------------
TENANT_KEY = "sbx-test-key-acme-0123456789"
OTHER_KEY = "sbx-test-key-globex-9876543210"
SERVICE_KEY = "sbx-test-service-key-abcdef"


class AuthTest(ServersMixin, unittest.TestCase):
    """Servers started with --api-keys."""

    @classmethod
    def prepare(cls):
        cls.keys = os.path.join(cls.tmp, "api-keys")
        with open(cls.keys, "w") as f:
            f.write("# test keys\n\n")
            f.write("acme:%s\n" % h.sha256_hex(TENANT_KEY))
            f.write("  globex:%s  \n" % h.sha256_hex(OTHER_KEY).upper())
            f.write("@service:%s\n" % h.sha256_hex(SERVICE_KEY))

    @classmethod
    def server_args(cls, service):
        return ["--api-keys", cls.keys]

    def probe(self, ch, svc, metadata):
        return h.call_rpc(ch, svc, h.READ_ONLY_RPCS[svc][0], metadata=metadata, timeout=5)[:2]

    def test_no_key_unauthenticated(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                for rpc in h.READ_ONLY_RPCS[svc]:
                    code, details, _ = h.call_rpc(ch, svc, rpc, timeout=5)
                    self.assertEqual(code, SC.UNAUTHENTICATED, "%s %s: %s" % (svc, rpc, details))

    def test_wrong_or_malformed_key_unauthenticated(self):
        bad = [bearer for bearer in (
            h.bearer("not-a-key"),
            h.bearer(TENANT_KEY + "x"),
            h.bearer(h.sha256_hex(TENANT_KEY)),  # the hash is not the key
            [("authorization", TENANT_KEY)],  # no Bearer
            [("authorization", "Basic " + TENANT_KEY)],
            [("authorization", "Bearer ")],
        )]
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                for md in bad:
                    code, details = self.probe(ch, svc, md)
                    self.assertEqual(code, SC.UNAUTHENTICATED, "%s %r: %s" % (svc, md, details))

    def test_health_needs_no_key(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                st = h.health_stub(ch)
                self.assertEqual(st.Check(h.health_req(""), timeout=5).status,
                                 h.serving_status("SERVING"))
                self.assertEqual(st.Check(h.health_req(h.SERVICES[svc][1]), timeout=5).status,
                                 h.serving_status("SERVING"))
                # even with a wrong key
                self.assertEqual(st.Check(h.health_req(""), timeout=5,
                                          metadata=h.bearer("wrong")).status,
                                 h.serving_status("SERVING"))
                w = st.Watch(h.health_req(""), timeout=5)
                self.assertEqual(next(w).status, h.serving_status("SERVING"))
                w.cancel()

    def test_right_key_passes_auth(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                for key in (TENANT_KEY, OTHER_KEY, SERVICE_KEY):
                    code, details = self.probe(ch, svc, h.bearer(key))
                    self.assertNotIn(code, (SC.UNAUTHENTICATED, SC.PERMISSION_DENIED),
                                     "%s key %s: %s" % (svc, key, details))
                # scheme is case-insensitive (RFC 7235)
                code, details = self.probe(ch, svc, [("authorization", "bearer " + TENANT_KEY)])
                self.assertNotEqual(code, SC.UNAUTHENTICATED, details)

    def test_tenant_key_cannot_act_for_another_tenant(self):
        for svc in BOTH:
            with self.subTest(svc=svc), h.channel(self.addr(svc)) as ch:
                code, details = self.probe(ch, svc, h.bearer(TENANT_KEY) + [("x-sbx-tenant", "globex")])
                self.assertEqual(code, SC.PERMISSION_DENIED, details)
                # its own tenant named explicitly is fine
                code, details = self.probe(ch, svc, h.bearer(TENANT_KEY) + [("x-sbx-tenant", "acme")])
                self.assertNotIn(code, (SC.UNAUTHENTICATED, SC.PERMISSION_DENIED), details)
                # a service principal may act for any tenant
                code, details = self.probe(ch, svc, h.bearer(SERVICE_KEY) + [("x-sbx-tenant", "globex")])
                self.assertNotIn(code, (SC.UNAUTHENTICATED, SC.PERMISSION_DENIED), details)
                # a malformed tenant name is rejected
                code, details = self.probe(ch, svc, h.bearer(SERVICE_KEY) + [("x-sbx-tenant", "a b/c")])
                self.assertEqual(code, SC.INVALID_ARGUMENT, details)

    def test_keys_file_allows_all_interfaces(self):
        # the loopback-only rule applies only without --api-keys
        for svc in BOTH:
            with self.subTest(svc=svc):
                s = h.Server(svc, args=["--api-keys", self.keys], tmp=self.tmp,
                             listen="0.0.0.0:0")
                try:
                    s.start()
                    h.wait_serving("127.0.0.1:%d" % s.port)
                    self.assertEqual(s.stop(), 0)
                finally:
                    s.kill()

    def test_bad_keys_file_refused(self):
        bad = os.path.join(self.tmp, "bad-keys")
        with open(bad, "w") as f:
            f.write("acme:not-a-hash\n")
        for svc in BOTH:
            with self.subTest(svc=svc):
                r = h.run_binary(svc, ["--listen", "127.0.0.1:0", "--data-dir",
                                       os.path.join(self.tmp, "bk-" + svc), "--api-keys", bad])
                self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertNotIn("listening on", r.stdout)
                r = h.run_binary(svc, ["--listen", "127.0.0.1:0", "--data-dir",
                                       os.path.join(self.tmp, "bk-" + svc), "--api-keys",
                                       os.path.join(self.tmp, "no-such-file")])
                self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertNotIn("listening on", r.stdout)


# ---------------------------------------------------------------------------------------------
class TlsTest(unittest.TestCase):
    """TLS (--tls-cert/--tls-key) and mTLS (--tls-client-ca) with openssl-made certificates."""

    @classmethod
    def setUpClass(cls):
        h.stubs()
        cls.tmp = tempfile.mkdtemp(prefix="sbx-tls-")
        cls.tls = {}
        cls.mtls = {}
        try:
            c = cls.certs = h.make_certs(cls.tmp)
            for svc in BOTH:
                cls.tls[svc] = h.Server(svc, tmp=cls.tmp, args=[
                    "--tls-cert", c["server.pem"], "--tls-key", c["server.key"]])
                cls.mtls[svc] = h.Server(svc, tmp=cls.tmp, args=[
                    "--tls-cert", c["server.pem"], "--tls-key", c["server.key"],
                    "--tls-client-ca", c["ca.pem"]])
            for s in list(cls.tls.values()) + list(cls.mtls.values()):
                s.start()
        except BaseException:
            cls.tearDownClass()
            raise
        cls.root = h.read(c["ca.pem"])
        cls.client_key = h.read(c["client.key"])
        cls.client_cert = h.read(c["client.pem"])

    @classmethod
    def tearDownClass(cls):
        for s in list(getattr(cls, "tls", {}).values()) + list(getattr(cls, "mtls", {}).values()):
            s.kill()
        h.kill_all()
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, addr, creds=None, options=None, timeout=5):
        with h.channel(addr, creds, options) as ch:
            try:
                r = h.health_stub(ch).Check(h.health_req(""), timeout=timeout)
            except grpc.RpcError as e:
                return e.code(), e.details()
            return r.status, ""

    def test_tls_with_ca_root_works(self):
        creds = grpc.ssl_channel_credentials(root_certificates=self.root)
        for svc in BOTH:
            with self.subTest(svc=svc):
                # IP SAN 127.0.0.1
                self.assertEqual(self.check(self.tls[svc].addr, creds)[0],
                                 h.serving_status("SERVING"))
                # DNS SAN localhost
                self.assertEqual(self.check(self.tls[svc].addr, creds,
                                            [("grpc.ssl_target_name_override", "localhost")])[0],
                                 h.serving_status("SERVING"))
                with h.channel(self.tls[svc].addr, creds) as ch:
                    code, details = h.raw_unary(ch, "/sbx.v1.Nope/X", b"")
                    self.assertEqual(code, SC.UNIMPLEMENTED, details)

    def test_tls_plaintext_client_fails(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                code, details = self.check(self.tls[svc].addr, None, timeout=3)
                self.assertEqual(code, SC.UNAVAILABLE, details)
                self.assertIsNone(self.tls[svc].proc.poll())

    def test_tls_untrusted_or_wrong_name_fails(self):
        other = grpc.ssl_channel_credentials(root_certificates=h.read(self.certs["other-ca.pem"]))
        right = grpc.ssl_channel_credentials(root_certificates=self.root)
        for svc in BOTH:
            with self.subTest(svc=svc):
                code, details = self.check(self.tls[svc].addr, other, timeout=3)
                self.assertEqual(code, SC.UNAVAILABLE, details)
                code, details = self.check(self.tls[svc].addr, right,
                                           [("grpc.ssl_target_name_override", "evil.example")],
                                           timeout=3)
                self.assertEqual(code, SC.UNAVAILABLE, details)

    def test_tls_client_cert_optional_without_client_ca(self):
        creds = grpc.ssl_channel_credentials(self.root, self.client_key, self.client_cert)
        for svc in BOTH:
            with self.subTest(svc=svc):
                self.assertEqual(self.check(self.tls[svc].addr, creds)[0],
                                 h.serving_status("SERVING"))

    def test_mtls_client_cert_works(self):
        creds = grpc.ssl_channel_credentials(self.root, self.client_key, self.client_cert)
        for svc in BOTH:
            with self.subTest(svc=svc):
                self.assertEqual(self.check(self.mtls[svc].addr, creds)[0],
                                 h.serving_status("SERVING"))

    def test_mtls_without_client_cert_fails(self):
        creds = grpc.ssl_channel_credentials(root_certificates=self.root)
        for svc in BOTH:
            with self.subTest(svc=svc):
                code, details = self.check(self.mtls[svc].addr, creds, timeout=3)
                self.assertEqual(code, SC.UNAVAILABLE, details)
                code, details = self.check(self.mtls[svc].addr, None, timeout=3)
                self.assertEqual(code, SC.UNAVAILABLE, details)
                self.assertIsNone(self.mtls[svc].proc.poll())

    def test_mtls_client_cert_of_other_ca_fails(self):
        creds = grpc.ssl_channel_credentials(self.root, h.read(self.certs["other-client.key"]),
                                             h.read(self.certs["other-client.pem"]))
        for svc in BOTH:
            with self.subTest(svc=svc):
                code, details = self.check(self.mtls[svc].addr, creds, timeout=3)
                self.assertEqual(code, SC.UNAVAILABLE, details)

    def test_tls_key_without_cert_refused(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                r = h.run_binary(svc, ["--listen", "127.0.0.1:0", "--data-dir",
                                       os.path.join(self.tmp, "nc-" + svc),
                                       "--tls-cert", self.certs["server.pem"]])
                self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertNotIn("listening on", r.stdout)


# ---------------------------------------------------------------------------------------------
class ShutdownTest(unittest.TestCase):
    """SIGTERM / SIGINT: NOT_SERVING, in-flight calls end, exit 0."""

    def setUp(self):
        h.stubs()
        self.tmp = tempfile.mkdtemp(prefix="sbx-shutdown-")

    def tearDown(self):
        h.kill_all()
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, svc, args=()):
        s = h.Server(svc, args=args, tmp=self.tmp)
        s.start()
        return s

    def assertCleanOutput(self, s):
        self.assertEqual(len(s.stdout_lines), 1, "stdout must be exactly one line: %r"
                         % s.stdout_lines)
        self.assertEqual(s.stdout_lines[0], "listening on 127.0.0.1:%d" % s.port)
        self.assertNotEqual(s.port, 0)
        self.assertEqual(s.bad_stderr_lines(), [], s.stderr_text()[-3000:])

    def test_sigterm_with_open_watch(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                s = self.start(svc)
                with h.channel(s.addr) as ch:
                    call = h.health_stub(ch).Watch(h.health_req(""), timeout=30)
                    self.assertEqual(next(call).status, h.serving_status("SERVING"))
                    t0 = time.monotonic()
                    s.send_signal(signal.SIGTERM)
                    seen, end = [], None
                    try:
                        for m in call:
                            seen.append(m.status)
                        end = "OK"
                    except grpc.RpcError as e:
                        end = e.code()
                    t_stream = time.monotonic() - t0
                    self.assertTrue(h.serving_status("NOT_SERVING") in seen or end is not None,
                                    "watcher saw neither NOT_SERVING nor the end: %s" % seen)
                    self.assertNotIn(h.serving_status("SERVING"), seen)
                    self.assertLess(t_stream, 3.0, "Watch did not end promptly")
                    # health.proto: Watch ends with UNAVAILABLE when the server shuts down
                    self.assertIn(end, (SC.UNAVAILABLE, "OK"), "Watch ended with %s" % end)
                    rc = s.wait(8)
                    el = time.monotonic() - t0
                self.assertEqual(rc, 0, "exit code %s after SIGTERM; stderr:\n%s"
                                 % (rc, s.stderr_text()[-3000:]))
                self.assertLess(el, 8.0)
                self.assertCleanOutput(s)

    def test_sigterm_idle_client_connection_does_not_delay_exit(self):
        # A client that made one call and keeps its connection open (normal for gRPC
        # channels) has no call in flight: SIGTERM must not wait for the grace period.
        for svc in BOTH:
            with self.subTest(svc=svc):
                s = self.start(svc)  # default --grace-ms 10000
                with h.channel(s.addr) as ch:
                    self.assertEqual(h.health_stub(ch).Check(h.health_req(""), timeout=5).status,
                                     h.serving_status("SERVING"))
                    t0 = time.monotonic()
                    s.send_signal(signal.SIGTERM)
                    rc = s.wait(15)
                    el = time.monotonic() - t0
                self.assertEqual(rc, 0, s.stderr_text()[-3000:])
                self.assertNotIn("grace period over", s.stderr_text(),
                                 "no call was in flight, yet the grace period ran out")
                self.assertLess(el, 2.0, "SIGTERM took %.1f s with an idle connection open" % el)

    def test_sigint_exits_zero(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                s = self.start(svc)
                h.wait_serving(s.addr)
                t0 = time.monotonic()
                rc = s.stop(signal.SIGINT, timeout=10)
                self.assertEqual(rc, 0, s.stderr_text()[-3000:])
                self.assertLess(time.monotonic() - t0, 5.0)
                self.assertCleanOutput(s)

    def test_sigterm_new_connections_refused_after_exit(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                s = self.start(svc)
                addr = s.addr
                self.assertEqual(s.stop(signal.SIGTERM, timeout=10), 0, s.stderr_text())
                with h.channel(addr) as ch:
                    with self.assertRaises(grpc.RpcError) as cm:
                        h.health_stub(ch).Check(h.health_req(""), timeout=2)
                    self.assertEqual(cm.exception.code(), SC.UNAVAILABLE)


# ---------------------------------------------------------------------------------------------
class CliTest(unittest.TestCase):
    """Flags, environment variables, exit codes."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sbx-cli-")

    def tearDown(self):
        h.kill_all()
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def dd(self, svc):
        return os.path.join(self.tmp, "data-" + svc)

    def test_all_interfaces_without_api_keys_refused(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                r = h.run_binary(svc, ["--listen", "0.0.0.0:0", "--data-dir", self.dd(svc)])
                self.assertNotEqual(r.returncode, 0)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("api-keys", r.stdout + r.stderr)
                self.assertNotIn("listening on", r.stdout)

    def test_help(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                r = h.run_binary(svc, ["--help"])
                self.assertEqual(r.returncode, 0, r.stderr)
                out = r.stdout + r.stderr
                for word in ("SBX_LISTEN", "--listen", "--data-dir", "SBX_DATA_DIR",
                             "--api-keys", "SBX_API_KEYS", "--tls-cert", "--tls-key",
                             "--tls-client-ca", "--max-message", "--grace-ms"):
                    self.assertIn(word, out)
                self.assertIn("50052" if svc == "store" else "50051", out)

    def test_bad_value_exits_2_naming_flag(self):
        cases = [["--grace-ms", "abc"], ["--grace-ms", "-5"], ["--max-message", "lots"],
                 ["--log-level", "loud"]]
        for svc in BOTH:
            for args in cases:
                with self.subTest(svc=svc, args=args):
                    r = h.run_binary(svc, ["--listen", "127.0.0.1:0", "--data-dir",
                                           self.dd(svc)] + args)
                    self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                    self.assertIn(args[0], r.stderr)
                    self.assertNotIn("listening on", r.stdout)

    def test_unknown_flag_exits_2(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                r = h.run_binary(svc, ["--no-such-flag"])
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertIn("--no-such-flag", r.stderr)

    def test_bad_env_value_exits_2(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                r = h.run_binary(svc, ["--listen", "127.0.0.1:0", "--data-dir", self.dd(svc)],
                                 env={"SBX_GRACE_MS": "abc"})
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertRegex(r.stderr, "SBX_GRACE_MS|--grace-ms")

    def test_env_listen_and_flag_wins(self):
        for svc in BOTH:
            with self.subTest(svc=svc):
                # SBX_LISTEN alone
                s = h.Server(svc, tmp=self.tmp, listen=None, env={"SBX_LISTEN": "127.0.0.1:0"})
                s.start()
                h.wait_serving(s.addr)
                self.assertEqual(s.stop(), 0)
                # the flag wins over a variable that would not even parse
                s = h.Server(svc, tmp=self.tmp, env={"SBX_LISTEN": "not-an-address"})
                s.start()
                h.wait_serving(s.addr)
                self.assertEqual(s.stop(), 0)

    def test_busy_port_fails(self):
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
            port = sock.getsockname()[1]
            for svc in BOTH:
                with self.subTest(svc=svc):
                    r = h.run_binary(svc, ["--listen", "127.0.0.1:%d" % port,
                                           "--data-dir", self.dd(svc)])
                    self.assertNotEqual(r.returncode, 0)
                    self.assertNotIn("listening on", r.stdout)


def main():
    argv = h.parse_bindir(sys.argv)
    for svc in BOTH:
        h.binary(svc)  # fail early with a clear message when the build is missing
    unittest.main(argv=argv, verbosity=2)


if __name__ == "__main__":
    main()
