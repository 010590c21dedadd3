"""Shared harness of the sbx Python tests (interop and integration).

Standard library + Debian's python3-grpcio / python3-grpc-tools only (run with
/usr/bin/python3). Provides:
  - locating the build (``--bindir DIR`` on the command line, else $SBX_BUILD_DIR, else
    <repo>/build) and the protos ($SBX_PROTO_DIR, else <repo>/proto);
  - Python stubs generated at test time with grpc_tools.protoc into a temporary directory
    (health.proto is generated from ``-I proto/grpc/health/v1`` so it becomes a top-level
    ``health_pb2`` and cannot shadow the real ``grpc`` package);
  - ``Server``: starts a service binary on 127.0.0.1:0, reads its ``listening on HOST:PORT``
    line with a timeout, keeps stderr in a file, stops it with a signal; every started
    process is registered and killed by ``kill_all()`` (tearDown) and at interpreter exit;
  - openssl-generated certificates (CA, server with SAN IP:127.0.0.1 + DNS:localhost,
    client) for the TLS and mTLS tests.
"""
import atexit
import hashlib
import importlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    import grpc
except ImportError as e:  # the suite requires Debian's python3-grpcio
    sys.stderr.write("sbx tests need grpcio: run them with /usr/bin/python3 "
                     "(apt-get install python3-grpcio python3-grpc-tools): %s\n" % e)
    raise

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

SERVICES = {
    # short name -> (relative binary path, full gRPC service name, pb2 module, service name)
    "store": ("services/store/sbx-store", "sbx.v1.StateStore", "store", "StateStore"),
    "executor": ("services/executor/sbx-executor", "sbx.v1.SandboxExecutor", "executor",
                 "SandboxExecutor"),
}

# RPCs that are read-only (or must be rejected) with an empty request: used to probe for an
# RPC that is not implemented yet, and for "a real call" without side effects.
READ_ONLY_RPCS = {
    "store": ["ListProjects", "GetProject", "ListExecutions", "GetCachedResult", "Get", "List"],
    "executor": ["ListSandboxes", "GetSandbox", "ListProcesses"],
}

BAD_OUTPUT = re.compile(r"level=error|\bERROR\b|assertion|AddressSanitizer|LeakSanitizer|"
                        r"runtime error:|Segmentation fault|core dumped", re.I)

_bindir = None


def parse_bindir(argv):
    """Removes ``--bindir DIR`` / ``--bindir=DIR`` from argv (for unittest) and remembers it."""
    global _bindir
    out = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--bindir" and i + 1 < len(argv):
            _bindir = argv[i + 1]
            i += 2
            continue
        if a.startswith("--bindir="):
            _bindir = a.split("=", 1)[1]
            i += 1
            continue
        out.append(a)
        i += 1
    return out


def bindir():
    d = _bindir or os.environ.get("SBX_BUILD_DIR") or os.path.join(REPO, "build")
    return os.path.abspath(d)


def binary(service):
    path = os.path.join(bindir(), SERVICES[service][0])
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s not found or not executable (build it, or pass --bindir / set "
                           "SBX_BUILD_DIR)" % path)
    return path


def proto_dir():
    return os.path.abspath(os.environ.get("SBX_PROTO_DIR") or os.path.join(REPO, "proto"))


# ---------------------------------------------------------------------------------------------
# Stubs
# ---------------------------------------------------------------------------------------------

class Stubs:
    pass


_stubs = None
_stub_dir = None


def stubs():
    """Generates (once per process) and imports the Python stubs; returns a namespace with
    health_pb2, health_pb2_grpc, store_pb2, store_pb2_grpc, executor_pb2, executor_pb2_grpc."""
    global _stubs, _stub_dir
    if _stubs is not None:
        return _stubs
    from grpc_tools import protoc
    pd = proto_dir()
    _stub_dir = tempfile.mkdtemp(prefix="sbx-pystubs-")
    atexit.register(shutil.rmtree, _stub_dir, True)
    # health: from its own directory -> top-level health_pb2 (no grpc/ package shadowing grpc)
    rc = protoc.main(["protoc", "-I", os.path.join(pd, "grpc", "health", "v1"),
                      "--python_out=" + _stub_dir, "--grpc_python_out=" + _stub_dir,
                      "health.proto"])
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed on health.proto (rc %d)" % rc)
    # sbx protos: from their own directory -> top-level store_pb2 / executor_pb2 (the proto
    # package stays sbx.v1, so the wire names are unchanged)
    rc = protoc.main(["protoc", "-I", os.path.join(pd, "sbx", "v1"),
                      "--python_out=" + _stub_dir, "--grpc_python_out=" + _stub_dir,
                      "store.proto", "executor.proto"])
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed on sbx/v1/*.proto (rc %d)" % rc)
    sys.path.insert(0, _stub_dir)
    s = Stubs()
    for m in ("health_pb2", "health_pb2_grpc", "store_pb2", "store_pb2_grpc", "executor_pb2",
              "executor_pb2_grpc"):
        setattr(s, m, importlib.import_module(m))
    # the real grpc package must still be the one imported
    assert hasattr(grpc, "insecure_channel"), "generated stubs shadow the grpc module"
    _stubs = s
    return s


def health_stub(channel):
    return stubs().health_pb2_grpc.HealthStub(channel)


def health_req(service=""):
    return stubs().health_pb2.HealthCheckRequest(service=service)


def serving_status(name):
    return stubs().health_pb2.HealthCheckResponse.ServingStatus.Value(name)


def rpc_method(service, rpc):
    """Returns (path, request class, response class) of an sbx RPC from the generated module."""
    short = SERVICES[service]
    pb2 = getattr(stubs(), short[2] + "_pb2")
    sd = pb2.DESCRIPTOR.services_by_name[short[3]]
    md = sd.methods_by_name[rpc]
    req = getattr(pb2, md.input_type.name)
    resp = getattr(pb2, md.output_type.name)
    return "/%s/%s" % (short[1], rpc), req, resp, md


def call_rpc(channel, service, rpc, request=None, metadata=None, timeout=5.0):
    """Calls a unary or server-streaming sbx RPC generically. Returns (code, details, result)
    where result is the response (unary) or the list of messages received (streaming)."""
    path, req_cls, resp_cls, md = rpc_method(service, rpc)
    if request is None:
        request = req_cls()
    if md.client_streaming:
        raise ValueError("client-streaming RPCs are not probed")
    if md.server_streaming:
        fn = channel.unary_stream(path, request_serializer=req_cls.SerializeToString,
                                  response_deserializer=resp_cls.FromString)
        msgs = []
        try:
            for m in fn(request, metadata=metadata, timeout=timeout):
                msgs.append(m)
        except grpc.RpcError as e:
            return e.code(), e.details(), msgs
        return grpc.StatusCode.OK, "", msgs
    fn = channel.unary_unary(path, request_serializer=req_cls.SerializeToString,
                             response_deserializer=resp_cls.FromString)
    try:
        r = fn(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as e:
        return e.code(), e.details(), None
    return grpc.StatusCode.OK, "", r


def raw_unary(channel, path, payload, metadata=None, timeout=5.0):
    """Sends raw bytes to path; returns (code, details)."""
    fn = channel.unary_unary(path, request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
    try:
        fn(payload, metadata=metadata, timeout=timeout)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def big_string_field(n, field=1):
    """Protobuf encoding of a length-delimited field of n bytes (a string/bytes field)."""
    out = bytearray([(field << 3) | 2])
    v = n
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            break
    return bytes(out) + b"x" * n


def channel(addr, creds=None, options=None):
    opts = [("grpc.max_receive_message_length", 64 << 20)] + list(options or [])
    if creds is None:
        return grpc.insecure_channel(addr, options=opts)
    return grpc.secure_channel(addr, creds, options=opts)


def bearer(key):
    return [("authorization", "Bearer " + key)]


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

_live = []
_live_mu = threading.Lock()


def kill_all():
    """Kills every process started through this module that is still running."""
    with _live_mu:
        procs = list(_live)
        del _live[:]
    for s in procs:
        s.kill()


atexit.register(kill_all)

LISTEN_RE = re.compile(r"^listening on (127\.0\.0\.1|0\.0\.0\.0|\[::1?\]|[\w.-]+):(\d+)$")


class StartError(Exception):
    pass


class Server:
    """One service binary started by a test."""

    def __init__(self, service, args=(), env=None, data_dir=None, tmp=None, listen="127.0.0.1:0"):
        self.service = service
        self.tmp = tmp or tempfile.mkdtemp(prefix="sbx-%s-" % service)
        self.own_tmp = tmp is None
        # each server gets its own data dir unless told otherwise: two stores cannot share a
        # RocksDB directory (the second one finds it locked)
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="data-%s-" % service, dir=self.tmp)
        os.makedirs(self.data_dir, exist_ok=True)
        self.argv = [binary(service)]
        if listen is not None:
            self.argv += ["--listen", listen]
        self.argv += ["--data-dir", self.data_dir] + list(args)
        e = dict(os.environ)
        for k in list(e):  # no SBX_* from the caller's environment leaks into the server
            if k.startswith("SBX_") and k not in ("SBX_BUILD_DIR", "SBX_PROTO_DIR"):
                del e[k]
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if env:
            e.update(env)
        fd, self.stderr_path = tempfile.mkstemp(prefix="stderr-%s-" % service, dir=self.tmp)
        self.stderr_f = os.fdopen(fd, "w+b")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.stderr_f, env=e)
        with _live_mu:
            _live.append(self)
        self.stdout_lines = []
        self._q = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self.addr = None
        self.port = None

    def _read_stdout(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def wait_listening(self, timeout=15.0):
        """Waits for the `listening on HOST:PORT` line; returns "HOST:PORT"."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartError("%s printed no 'listening on' line within %.0f s; stderr:\n%s"
                                 % (self.service, timeout, self.stderr_text()))
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait(timeout=5)
                raise StartError("%s exited (rc %s) before listening; argv %s; stderr:\n%s"
                                 % (self.service, rc, self.argv, self.stderr_text()))
            m = LISTEN_RE.match(line)
            if not m:
                raise StartError("%s: first stdout line is not 'listening on HOST:PORT': %r"
                                 % (self.service, line))
            self.port = int(m.group(2))
            self.addr = "127.0.0.1:%d" % self.port
            return self.addr

    def start(self, timeout=15.0):
        self.wait_listening(timeout)
        return self

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig and waits; returns the exit code (None on timeout, then kills)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._reader.join(timeout=5)
        self.close()
        return rc

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=5)
        self.close()
        return rc

    def close(self):
        """Releases the pipes of an exited process (stderr stays readable by path)."""
        for f in (self.proc.stdout, self.stderr_f):
            try:
                f.close()
            except Exception:
                pass
        self._forget()

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._reader.join(timeout=5)
        self.close()
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _forget(self):
        with _live_mu:
            if self in _live:
                _live.remove(self)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def bad_stderr_lines(self):
        return [l for l in self.stderr_text().splitlines() if BAD_OUTPUT.search(l)]


def run_binary(service, args, env=None, timeout=15.0):
    """Runs a binary to completion (for flag tests); returns CompletedProcess (text)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("SBX_")}
    if env:
        e.update(env)
    return subprocess.run([binary(service)] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=e, timeout=timeout)


def wait_serving(addr, service="", timeout=10.0, creds=None, options=None, metadata=None):
    """Polls health Check until SERVING; returns the status name reached."""
    deadline = time.monotonic() + timeout
    last = None
    with channel(addr, creds, options) as ch:
        st = health_stub(ch)
        while time.monotonic() < deadline:
            try:
                r = st.Check(health_req(service), timeout=2, metadata=metadata)
                if r.status == serving_status("SERVING"):
                    return "SERVING"
                last = r.status
            except grpc.RpcError as e:
                last = e.code()
            time.sleep(0.05)
    raise AssertionError("%s never became SERVING (last: %s)" % (addr, last))


def find_unimplemented(ch, service, metadata=None):
    """Returns (rpc, details) of a read-only RPC that answers UNIMPLEMENTED, or (None, codes)."""
    seen = {}
    for rpc in READ_ONLY_RPCS[service]:
        code, details, _ = call_rpc(ch, service, rpc, metadata=metadata, timeout=5)
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return rpc, details
        seen[rpc] = code.name
    return None, seen


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------

def _openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr))


def make_certs(d):
    """Creates in d: ca.pem/ca.key, server.pem/server.key (SAN IP:127.0.0.1, DNS:localhost,
    serverAuth), client.pem/client.key (clientAuth), and a second unrelated CA with its own
    client cert (other-ca.pem, other-client.pem/.key). Returns a dict of paths."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                 "-subj", "/CN=sbx test " + ca, "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n")
    for name, ca, ext, cn in (("server", "ca", "server.ext", "localhost"),
                              ("client", "ca", "client.ext", "sbx-test-client"),
                              ("other-client", "other-ca", "client.ext", "sbx-other-client")):
        _openssl("req", "-new", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=" + cn, cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                 "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext, cwd=d)
    return {n: os.path.join(d, n) for n in os.listdir(d)}


def read(path):
    with open(path, "rb") as f:
        return f.read()
