#!/usr/bin/env python3
"""check_manifests.py SRC STORE_BIN EXECUTOR_BIN: offline checks of the packaging.

1. Flags: every flag that docker-compose*.yml and deploy/k8s/*.yaml pass to sbx-store /
   sbx-executor, and every SBX_* variable they set, is one the binary's --help lists.
2. kubectl: each manifest goes through `kubectl label --local -o name` (no cluster, no
   discovery): YAML syntax, multi-document split, apiVersion/kind/metadata present and decodable.
   `kubectl apply/create --dry-run=client` cannot be used: they need the server's discovery.
3. Schema: the fields the manifests use, checked against a hand-written subset of the
   Kubernetes API (allowed keys and types per object, enums, required fields), so a typo such as
   `readinesProbe` or `seccompProfile: {type: unconfined}` fails here. Not validated: fields this
   schema does not list (they are reported as unknown, not accepted), resource quantity syntax
   beyond a pattern, and anything only a server knows (admission, feature gates, quotas).
4. Consistency: selectors match template labels, serviceName names a headless Service, mounts
   name volumes, probes name declared ports, Localhost seccomp profiles exist in
   deploy/seccomp/, the executor's capabilities are the same in compose and Kubernetes, and
   Kubernetes' own rule (allowPrivilegeEscalation: false forbids adding SYS_ADMIN) holds.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

src, store_bin, exec_bin = sys.argv[1:4]
helps = {
    "sbx-store": subprocess.run([store_bin, "--help"], capture_output=True, text=True, check=True).stdout,
    "sbx-executor": subprocess.run([exec_bin, "--help"], capture_output=True, text=True, check=True).stdout,
}
problems, counts = [], {"flags": 0, "fields": 0, "objects": 0}

# ---- 1. flags ----------------------------------------------------------------------------------


def check_cmd(where, cmd, env):
    if not cmd or cmd[0] not in helps:
        return
    text = helps[cmd[0]]
    for arg in cmd[1:]:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            counts["flags"] += 1
            if not re.search(r"^\s+%s\b" % re.escape(flag), text, re.M):
                problems.append("%s: %s has no flag %s" % (where, cmd[0], flag))
    for name in env:
        if name.startswith("SBX_"):
            counts["flags"] += 1
            if ("env %s;" % name) not in text:
                problems.append("%s: %s has no variable %s" % (where, cmd[0], name))


compose_files = sorted(glob.glob(os.path.join(src, "docker-compose*.yml")))
compose = {}
default_cmd = {"store": ["sbx-store"], "executor": ["sbx-executor"]}
for path in compose_files:
    with open(path) as f:
        doc = yaml.safe_load(f)
    for name, svc in (doc.get("services") or {}).items():
        merged = compose.setdefault(name, {})
        merged.update({k: v for k, v in svc.items() if k in ("cap_add", "cap_drop", "security_opt")})
        env = svc.get("environment") or {}
        env = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        # an override without a command adds variables to the image's command
        check_cmd(os.path.basename(path), svc.get("command") or default_cmd.get(name), env)

# ---- 3. schema ----------------------------------------------------------------------------------
# A schema is: a type (str, int, bool), a set (enum of strings), a dict (allowed keys -> schema;
# "*" = any key with that schema; a key in REQUIRED[...] must be present), or a one-item list
# (a list of that schema). QTY is a Kubernetes quantity.
QTY = "quantity"
INTSTR = "int-or-string"
CAPS = {
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
    "KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
    "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT",
    "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG",
    "WAKE_ALARM", "ALL",
}
META = {"name": str, "namespace": str, "labels": {"*": str}, "annotations": {"*": str}}
SECCOMP = {"type": {"RuntimeDefault", "Unconfined", "Localhost"}, "localhostProfile": str}
APPARMOR = {"type": {"RuntimeDefault", "Unconfined", "Localhost"}, "localhostProfile": str}
PROBE = {
    "grpc": {"port": int, "service": str},
    "httpGet": {"path": str, "port": INTSTR, "scheme": {"HTTP", "HTTPS"}},
    "tcpSocket": {"port": INTSTR},
    "exec": {"command": [str]},
    "initialDelaySeconds": int, "periodSeconds": int, "timeoutSeconds": int,
    "successThreshold": int, "failureThreshold": int, "terminationGracePeriodSeconds": int,
}
CONTAINER_SC = {
    "runAsUser": int, "runAsGroup": int, "runAsNonRoot": bool, "privileged": bool,
    "allowPrivilegeEscalation": bool, "readOnlyRootFilesystem": bool,
    "capabilities": {"add": [CAPS], "drop": [CAPS]},
    "seccompProfile": SECCOMP, "appArmorProfile": APPARMOR, "procMount": {"Default", "Unmasked"},
}
POD_SC = {
    "runAsUser": int, "runAsGroup": int, "runAsNonRoot": bool, "fsGroup": int,
    "supplementalGroups": [int], "seccompProfile": SECCOMP, "appArmorProfile": APPARMOR,
}
RESOURCES = {"requests": {"cpu": QTY, "memory": QTY, "ephemeral-storage": QTY},
             "limits": {"cpu": QTY, "memory": QTY, "ephemeral-storage": QTY}}
CONTAINER = {
    "name": str, "image": str, "imagePullPolicy": {"Always", "IfNotPresent", "Never"},
    "command": [str], "args": [str], "workingDir": str,
    "env": [{"name": str, "value": str,
             "valueFrom": {"secretKeyRef": {"name": str, "key": str, "optional": bool},
                           "configMapKeyRef": {"name": str, "key": str, "optional": bool},
                           "fieldRef": {"fieldPath": str}}}],
    "ports": [{"containerPort": int, "name": str, "protocol": {"TCP", "UDP", "SCTP"}}],
    "readinessProbe": PROBE, "livenessProbe": PROBE, "startupProbe": PROBE,
    "securityContext": CONTAINER_SC, "resources": RESOURCES,
    "volumeMounts": [{"name": str, "mountPath": str, "readOnly": bool, "subPath": str}],
}
VOLUME = {
    "name": str,
    "secret": {"secretName": str, "items": [{"key": str, "path": str, "mode": int}],
               "defaultMode": int, "optional": bool},
    "emptyDir": {"medium": {"", "Memory"}, "sizeLimit": QTY},
    "hostPath": {"path": str, "type": {"", "Directory", "DirectoryOrCreate", "File",
                                       "FileOrCreate", "Socket", "CharDevice", "BlockDevice"}},
    "persistentVolumeClaim": {"claimName": str, "readOnly": bool},
}
POD_SPEC = {
    "containers": [CONTAINER], "initContainers": [CONTAINER], "volumes": [VOLUME],
    "securityContext": POD_SC, "terminationGracePeriodSeconds": int, "serviceAccountName": str,
    "nodeSelector": {"*": str}, "hostUsers": bool,
}
PVC_SPEC = {"accessModes": [{"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"}],
            "storageClassName": str, "resources": {"requests": {"storage": QTY}}}
KINDS = {
    ("v1", "Namespace"): {"metadata": META},
    ("v1", "Service"): {"metadata": META, "spec": {
        "clusterIP": str, "selector": {"*": str}, "type": {"ClusterIP", "NodePort", "LoadBalancer"},
        "ports": [{"name": str, "port": int, "targetPort": INTSTR, "protocol": {"TCP", "UDP"}}]}},
    ("v1", "Secret"): {"metadata": META, "type": str, "data": {"*": str}, "stringData": {"*": str}},
    ("apps/v1", "StatefulSet"): {"metadata": META, "spec": {
        "serviceName": str, "replicas": int, "selector": {"matchLabels": {"*": str}},
        "podManagementPolicy": {"OrderedReady", "Parallel"},
        "template": {"metadata": META, "spec": POD_SPEC},
        "volumeClaimTemplates": [{"metadata": META, "spec": PVC_SPEC}]}},
    ("apps/v1", "Deployment"): {"metadata": META, "spec": {
        "replicas": int, "selector": {"matchLabels": {"*": str}},
        "template": {"metadata": META, "spec": POD_SPEC}}},
}
REQUIRED = {id(CONTAINER): ["name", "image"], id(VOLUME): ["name"], id(META): [],
            id(SECCOMP): ["type"], id(APPARMOR): ["type"]}


def check_schema(where, value, schema):
    counts["fields"] += 1
    if schema is str or schema is int or schema is bool:
        if type(value) is not schema:
            problems.append("%s: expected %s, got %r" % (where, schema.__name__, value))
    elif schema == QTY:
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?", str(value)):
            problems.append("%s: %r is not a quantity" % (where, value))
    elif schema == INTSTR:
        if type(value) not in (int, str):
            problems.append("%s: expected a port number or name, got %r" % (where, value))
    elif isinstance(schema, set):
        if value not in schema:
            problems.append("%s: %r is not one of %s" % (where, value, sorted(schema)))
    elif isinstance(schema, list):
        if not isinstance(value, list):
            problems.append("%s: expected a list, got %r" % (where, value))
            return
        for i, item in enumerate(value):
            check_schema("%s[%d]" % (where, i), item, schema[0])
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append("%s: expected a mapping, got %r" % (where, value))
            return
        for key, sub in value.items():
            if key in schema:
                check_schema("%s.%s" % (where, key), sub, schema[key])
            elif "*" in schema:
                check_schema("%s.%s" % (where, key), sub, schema["*"])
            else:
                problems.append("%s: unknown field %r" % (where, key))
        for key in REQUIRED.get(id(schema), []):
            if key not in value:
                problems.append("%s: missing %s" % (where, key))


# ---- 4. consistency ----------------------------------------------------------------------------


def check_pod(where, kind_spec, docs, ns):
    tmpl = kind_spec["template"]
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    for k, v in kind_spec["selector"]["matchLabels"].items():
        if labels.get(k) != v:
            problems.append("%s: selector %s=%s does not match the template's labels" % (where, k, v))
    if "serviceName" in kind_spec:
        svc = [d for d in docs if d.get("kind") == "Service" and d["metadata"]["name"] ==
               kind_spec["serviceName"] and d["metadata"].get("namespace") == ns]
        if not svc or svc[0]["spec"].get("clusterIP") != "None":
            problems.append("%s: serviceName %s is no headless Service in %s" %
                            (where, kind_spec["serviceName"], ns))
    pod = tmpl["spec"]
    vols = {v["name"] for v in pod.get("volumes", [])}
    vols |= {c["metadata"]["name"] for c in kind_spec.get("volumeClaimTemplates", [])}
    for c in pod["containers"]:
        cw = "%s container %s" % (where, c["name"])
        for m in c.get("volumeMounts", []):
            if m["name"] not in vols:
                problems.append("%s: mount of unknown volume %s" % (cw, m["name"]))
        ports = {p["containerPort"] for p in c.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            p = c.get(probe)
            if p is None:
                continue
            handlers = [h for h in ("grpc", "httpGet", "tcpSocket", "exec") if h in p]
            if len(handlers) != 1:
                problems.append("%s: %s needs exactly one handler, has %s" % (cw, probe, handlers))
            elif "grpc" in p and p["grpc"]["port"] not in ports:
                problems.append("%s: %s port %s is not a container port" % (cw, probe, p["grpc"]["port"]))
        sc = c.get("securityContext") or {}
        add = set((sc.get("capabilities") or {}).get("add", []))
        if sc.get("allowPrivilegeEscalation") is False and ("SYS_ADMIN" in add or sc.get("privileged")):
            problems.append("%s: Kubernetes refuses allowPrivilegeEscalation: false with SYS_ADMIN" % cw)
        for prof in (sc.get("seccompProfile"), (pod.get("securityContext") or {}).get("seccompProfile")):
            if prof and prof.get("type") == "Localhost":
                lp = prof.get("localhostProfile", "")
                if not os.path.exists(os.path.join(src, "deploy", "seccomp", os.path.basename(lp))):
                    problems.append("%s: seccomp profile %r is not in deploy/seccomp/" % (cw, lp))
            elif prof and "localhostProfile" in prof:
                problems.append("%s: localhostProfile without type Localhost" % cw)
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref["name"] != "sbx-keys":
                problems.append("%s: env %s reads Secret %s, documented is sbx-keys" % (cw, e["name"], ref["name"]))
        if c["name"] == "executor":
            want = set(compose.get("executor", {}).get("cap_add", []))
            if add != want or (sc.get("capabilities") or {}).get("drop") != ["ALL"] or \
                    compose.get("executor", {}).get("cap_drop") != ["ALL"]:
                problems.append("%s: capabilities %s (drop %s) differ from docker-compose.yml's %s (drop %s)" %
                                (cw, sorted(add), (sc.get("capabilities") or {}).get("drop"), sorted(want),
                                 compose.get("executor", {}).get("cap_drop")))
        check_cmd(cw, c.get("command"), [e["name"] for e in c.get("env", [])])


def kubectl_parse(path, ndocs):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("kubectl: not installed, the kubectl parse of %s was NOT run" % os.path.basename(path))
        return
    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig") as cfg:
        cfg.write("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
        cfg.flush()
        env = dict(os.environ, KUBECONFIG=cfg.name)
        r = subprocess.run([kubectl, "label", "--local", "-f", path, "-o", "name", "sbx-check=ok"],
                           capture_output=True, text=True, env=env, timeout=120)
    names = r.stdout.split()
    if r.returncode != 0 or len(names) != ndocs:
        problems.append("%s: kubectl label --local: exit %d, %d of %d objects: %s" %
                        (path, r.returncode, len(names), ndocs, r.stderr.strip()[:500]))
    else:
        print("kubectl: %s parsed, %d objects (%s)" % (os.path.basename(path), ndocs, ", ".join(names)))


for path in sorted(glob.glob(os.path.join(src, "deploy", "k8s", "*.yaml"))):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kubectl_parse(path, len(docs))
    base = os.path.basename(path)
    for d in docs:
        counts["objects"] += 1
        key = (d.get("apiVersion"), d.get("kind"))
        name = (d.get("metadata") or {}).get("name")
        where = "%s %s/%s" % (base, d.get("kind"), name)
        if key not in KINDS:
            problems.append("%s: apiVersion/kind %s is not in the schema" % (where, key))
            continue
        if not name:
            problems.append("%s: metadata.name missing" % where)
        check_schema(where, {k: v for k, v in d.items() if k not in ("apiVersion", "kind")}, KINDS[key])
        if d["kind"] in ("StatefulSet", "Deployment"):
            check_pod(where, d["spec"], docs, d["metadata"].get("namespace"))

if counts["flags"] == 0 or counts["objects"] == 0:
    print("no sbx commands or Kubernetes objects found in the manifests")
    sys.exit(1)
for p in problems:
    print(p)
print("%d flags/variables, %d Kubernetes objects, %d fields checked: %d problems" %
      (counts["flags"], counts["objects"], counts["fields"], len(problems)))
sys.exit(1 if problems else 0)
