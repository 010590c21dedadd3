#!/usr/bin/env python3
"""check_manifests.py SRC STORE_BIN EXECUTOR_BIN: every flag that docker-compose.yml and
deploy/k8s/*.yaml pass to sbx-store / sbx-executor (and every SBX_* variable they set) is one the
binary's --help lists, so a renamed flag cannot silently break the packaging."""
import glob
import re
import subprocess
import sys

import yaml

src, store_bin, exec_bin = sys.argv[1:4]
helps = {
    "sbx-store": subprocess.run([store_bin, "--help"], capture_output=True, text=True, check=True).stdout,
    "sbx-executor": subprocess.run([exec_bin, "--help"], capture_output=True, text=True, check=True).stdout,
}
problems, checked = [], 0


def check(cmd, env):
    global checked
    if not cmd or cmd[0] not in helps:
        return
    text = helps[cmd[0]]
    for arg in cmd[1:]:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            checked += 1
            if not re.search(r"^\s+%s\b" % re.escape(flag), text, re.M):
                problems.append("%s has no flag %s" % (cmd[0], flag))
    for name in env:
        checked += 1
        if name.startswith("SBX_") and ("env %s;" % name) not in text:
            problems.append("%s has no variable %s" % (cmd[0], name))


with open(src + "/docker-compose.yml") as f:
    compose = yaml.safe_load(f)
for name, svc in compose["services"].items():
    check(svc.get("command"), (svc.get("environment") or {}).keys())

for path in glob.glob(src + "/deploy/k8s/*.yaml"):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") not in ("StatefulSet", "Deployment"):
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                check(c.get("command"), [e["name"] for e in c.get("env", [])])

if checked == 0:
    print("no sbx commands found in the manifests")
    sys.exit(1)
for p in problems:
    print(p)
print("%d flags/variables checked, %d problems" % (checked, len(problems)))
sys.exit(1 if problems else 0)
