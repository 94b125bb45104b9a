#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes/ offline (docs/kubernetes.md#validating-them), as
# part of `make test` (`make validate-kubernetes` alone):
#   - every object of every manifest against the Kubernetes API's schemas of the named versions, strictly
#     (an unknown field fails), with kubernetes-validate (pinned, in .stack/venv; it ships the schemas);
#   - every file a kustomization names exists inside its folder, and every manifest is named by one;
#   - the manifests against the code and its documentation: the services' Deployments (2 replicas,
#     /health/ready and /health/live probes, a grace period above the preStop pause plus twice
#     SHUTDOWN_TIMEOUT_SECS, resources, non-root), a Service, a PodDisruptionBudget and a
#     HorizontalPodAutoscaler per Deployment, every environment variable documented in
#     docs/configuration.md for that service, the documented ports, nginx's placeholders, the Secret keys
#     each overlay provides, the copies of nginx.conf and init-databases.sql;
#   - when kubectl is on the machine (it has kustomize built in): every kustomization rendered, offline,
#     and what it renders validated too (secrets.env made from its example, in a temporary copy).
# Exits non-zero on any failure. KUBERNETES_VERSIONS overrides the versions validated against.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest Kubernetes the manifests are meant for, and the newest whose schemas the package ships.
KUBERNETES_VERSIONS="${KUBERNETES_VERSIONS:-1.30.0 1.37.0}"
VENV="$ROOT/.stack/venv"

log() { printf '\033[1m[kubernetes]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/common.sh
. "$ROOT/scripts/common.sh"

install_validator() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c \
        "import kubernetes_validate, sys; sys.exit(kubernetes_validate.__version__ != '$KUBERNETES_VALIDATE_VERSION')" \
        2>/dev/null; then
        return 0
    fi
    command -v python3 >/dev/null || apt_install python3
    if [ ! -x "$VENV/bin/pip" ] && ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        apt_install python3-venv
        rm -rf "$VENV"
        python3 -m venv "$VENV"
    fi
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION in $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        || die "kubernetes-validate could not be installed"
}

install_validator
exec "$VENV/bin/python" - "$ROOT" "$KUBERNETES_VERSIONS" <<'PY'
import os
import re
import shutil
import subprocess
import sys
import tempfile

import kubernetes_validate
import kubernetes_validate.utils as kv
import yaml

ROOT = sys.argv[1]
VERSIONS = sys.argv[2].split()
KDIR = os.path.join(ROOT, "deploy", "kubernetes")
SERVICES = ("order", "payment", "stock")
SECRET = "checkout"
# Files kustomize cannot read from where they live (outside the kustomization's folder), kept as copies.
COPIES = {
    "deploy/kubernetes/base/nginx.conf": "nginx.conf",
    "deploy/kubernetes/overlays/try-it/init-databases.sql": "deploy/postgres/init-databases.sql",
}

failures = []
passed = 0


def rel(path):
    return os.path.relpath(path, ROOT)


def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(what)
        print(f"FAIL {what}")
    return ok


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --- what the documentation says -----------------------------------------------------------------------
def documented():
    """The variables docs/configuration.md gives each service, and each service's default port."""
    text = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = set()
        elif current and line.startswith("| `"):
            first_cell = line.split("|")[1]
            sections[current].update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    common = sections.get("Every service", set())
    names = {svc: common | sections.get(svc, set()) for svc in SERVICES}
    ports = {svc: int(port) for port, svc in re.findall(r"(\d+) \((order|payment|stock)\)", text)}
    return names, ports


DOC_NAMES, DOC_PORTS = documented()
check(all({"DATABASE_URL", "SHUTDOWN_TIMEOUT_SECS"} <= DOC_NAMES[s] for s in SERVICES) and len(DOC_PORTS) == 3,
      "docs/configuration.md lists every service's variables and default port")

NGINX_CONF = open(os.path.join(ROOT, "nginx.conf")).read()
NGINX_PLACEHOLDERS = set(re.findall(r"\$\{([A-Z_]+)\}", NGINX_CONF))


# --- kustomizations: what they name exists, and every manifest is named --------------------------------
def kustomization_dirs():
    found = []
    for dirpath, _, files in os.walk(KDIR):
        if "kustomization.yaml" in files:
            found.append(dirpath)
    return sorted(found)


def inside(root, path):
    real = os.path.realpath(path)
    return real == os.path.realpath(root) or real.startswith(os.path.realpath(root) + os.sep)


KUSTOMIZATIONS = {d: yaml.safe_load(open(os.path.join(d, "kustomization.yaml"))) for d in kustomization_dirs()}
named_files = set()
for kdir, k in KUSTOMIZATIONS.items():
    where = rel(kdir)
    check(k.get("kind") == "Kustomization", f"{where}/kustomization.yaml is a Kustomization")
    for entry in k.get("resources", []) or []:
        path = os.path.normpath(os.path.join(kdir, entry))
        if os.path.isdir(path):
            check(path in KUSTOMIZATIONS, f"{where}: resource {entry} is a folder with a kustomization.yaml")
        else:
            check(os.path.isfile(path), f"{where}: resource {entry} exists")
            check(inside(kdir, path), f"{where}: resource {entry} is inside the kustomization's folder")
            named_files.add(path)
    for patch in k.get("patches", []) or []:
        if isinstance(patch, dict) and "path" in patch:
            path = os.path.normpath(os.path.join(kdir, patch["path"]))
            check(os.path.isfile(path) and inside(kdir, path), f"{where}: patch {patch['path']} exists inside the folder")
            named_files.add(path)
    for gen in (k.get("configMapGenerator", []) or []) + (k.get("secretGenerator", []) or []):
        for entry in gen.get("files", []) or []:
            source = entry.split("=", 1)[-1]
            path = os.path.normpath(os.path.join(kdir, source))
            check(os.path.isfile(path) and inside(kdir, path),
                  f"{where}: {gen['name']}'s file {source} exists inside the folder")
        for source in (gen.get("envs", []) or []) + ([gen["env"]] if gen.get("env") else []):
            path = os.path.normpath(os.path.join(kdir, source))
            # A file of real secrets is not committed; its example is.
            ok = (os.path.isfile(path) or os.path.isfile(path + ".example")) and inside(kdir, path)
            check(ok, f"{where}: {gen['name']}'s env file {source} (or {source}.example) exists inside the folder")

manifests = []
for dirpath, _, files in os.walk(KDIR):
    for name in files:
        if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml":
            manifests.append(os.path.join(dirpath, name))
manifests.sort()
for path in manifests:
    check(path in named_files, f"{rel(path)} is named by a kustomization")

for copy, original in COPIES.items():
    same = open(os.path.join(ROOT, copy), "rb").read() == open(os.path.join(ROOT, original), "rb").read()
    check(same, f"{copy} is byte for byte {original} (fix: cp {original} {copy})")


# --- the API schemas ------------------------------------------------------------------------------------
def validate_objects(objects, source):
    ok = True
    for version in VERSIONS:
        for obj in objects:
            what = f"{source}: {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')} against Kubernetes {version}"
            try:
                kubernetes_validate.validate(obj, version, strict=True)
                ok &= check(True, what)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                ok &= check(False, f"{what}: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                ok &= check(False, f"{what}: {e.message}")
            except kv.VersionNotSupportedError:
                ok &= check(False, f"{what}: kubernetes-validate {kubernetes_validate.__version__} has no schemas for it")
    return ok


FILE_OBJECTS = {}
for path in manifests:
    objects = load_all(path)
    FILE_OBJECTS[path] = objects
    if validate_objects(objects, rel(path)):
        kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        print(f"ok   {rel(path)}: {kinds} (Kubernetes {', '.join(VERSIONS)}, strict)")


# --- the manifests against the code and its documentation -----------------------------------------------
def objects_of(kdir, seen=None):
    """What a kustomization's resources hold, recursively, before generators and patches."""
    out = []
    for entry in KUSTOMIZATIONS[kdir].get("resources", []) or []:
        path = os.path.normpath(os.path.join(kdir, entry))
        if path in KUSTOMIZATIONS:
            out += objects_of(path)
        elif path in FILE_OBJECTS:
            out += FILE_OBJECTS[path]
    return out


def generated_secret_keys(kdir):
    """The keys and values of the Secret `checkout` a kustomization (or what it builds on) generates."""
    found = None
    for entry in KUSTOMIZATIONS[kdir].get("resources", []) or []:
        path = os.path.normpath(os.path.join(kdir, entry))
        if path in KUSTOMIZATIONS:
            found = generated_secret_keys(path) or found
    for gen in KUSTOMIZATIONS[kdir].get("secretGenerator", []) or []:
        if gen.get("name") != SECRET:
            continue
        pairs = {}
        for literal in gen.get("literals", []) or []:
            key, _, value = literal.partition("=")
            pairs[key] = value
        for source in gen.get("envs", []) or []:
            path = os.path.join(kdir, source)
            if not os.path.isfile(path):
                path += ".example"
            for line in open(path):
                line = line.strip()
                if line and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    pairs[key] = value
        found = pairs
    return found


def generated(actual, name, rendered):
    """Whether `actual` names the generated object `name` (rendered, kustomize appends a hash)."""
    return bool(actual) and (actual == name or (rendered and re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", actual)))


def find(objects, kind, name):
    return [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name]


def env_of(container):
    return {e["name"]: e for e in container.get("env", []) or []}


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_workload(objects, where, name, port_env):
    """The Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler of one component."""
    deployments = find(objects, "Deployment", name)
    if not check(len(deployments) == 1, f"{where}: one Deployment {name}"):
        return None
    dep = deployments[0]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"].get("labels", {})
    check(dep["spec"].get("replicas") == 2, f"{where}: Deployment {name} has 2 replicas")
    check(selects(dep["spec"]["selector"].get("matchLabels"), labels), f"{where}: Deployment {name}'s selector matches its pods")
    containers = [c for c in spec["containers"] if c["name"] == name]
    if not check(len(containers) == 1, f"{where}: Deployment {name} has a container {name}"):
        return None
    c = containers[0]
    env = env_of(c)
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    check("http" in ports, f"{where}: {name} names its port http")
    port = ports.get("http")
    check(port_env in env and env[port_env].get("value") == str(port),
          f"{where}: {name}'s {port_env} is its container port ({port})")
    res = c.get("resources", {})
    check(all(k in res.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")),
          f"{where}: {name} has CPU and memory requests and limits")
    run_as_non_root = (c.get("securityContext", {}).get("runAsNonRoot")
                       or spec.get("securityContext", {}).get("runAsNonRoot"))
    check(run_as_non_root is True, f"{where}: {name} runs as non-root")
    check(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
          f"{where}: {name} cannot escalate privileges")
    check(spec.get("enableServiceLinks") is False,
          f"{where}: {name} gets no service-link variables (they would look like configuration)")

    services = find(objects, "Service", name)
    if check(len(services) == 1, f"{where}: one Service {name}"):
        svc = services[0]
        check(selects(svc["spec"].get("selector"), labels), f"{where}: Service {name} selects the Deployment's pods")
        check(all(p.get("targetPort") in ("http", port) for p in svc["spec"]["ports"]),
              f"{where}: Service {name} targets the container port")
    pdbs = [o for o in objects if o.get("kind") == "PodDisruptionBudget"
            and selects(o["spec"].get("selector", {}).get("matchLabels"), labels)]
    check(len(pdbs) == 1 and pdbs[0]["apiVersion"] == "policy/v1" and pdbs[0]["spec"].get("minAvailable") == 1,
          f"{where}: a PodDisruptionBudget (policy/v1, minAvailable 1) for {name}")
    hpas = [o for o in objects if o.get("kind") == "HorizontalPodAutoscaler"
            and o["spec"]["scaleTargetRef"].get("kind") == "Deployment"
            and o["spec"]["scaleTargetRef"].get("name") == name]
    if check(len(hpas) == 1 and hpas[0]["apiVersion"] == "autoscaling/v2",
             f"{where}: a HorizontalPodAutoscaler (autoscaling/v2) for {name}"):
        h = hpas[0]["spec"]
        check(h.get("minReplicas", 1) >= 2 and h["maxReplicas"] >= h.get("minReplicas", 1),
              f"{where}: {name}'s autoscaler keeps at least 2 replicas")
        check(any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu" for m in h.get("metrics", [])),
              f"{where}: {name}'s autoscaler follows CPU")
    return dep, c, env, port, hpas[0]["spec"] if hpas else {}


def check_platform(objects, where, secret_keys, rendered=False):
    service_ports = {}
    budget = []
    needed_keys = set()
    for name in SERVICES:
        found = check_workload(objects, where, name, "PORT")
        if not found:
            continue
        dep, c, env, port, hpa = found
        spec = dep["spec"]["template"]["spec"]
        service_ports[name] = port
        check(port == DOC_PORTS.get(name), f"{where}: {name} listens on its documented port {DOC_PORTS.get(name)}")
        image = c["image"].rsplit(":", 1)[0] if ":" in c["image"].split("/")[-1] else c["image"]
        check(image.split("/")[-1] == "checkout-platform" and c.get("command") == [name],
              f"{where}: {name} runs the `{name}` binary of the checkout-platform image")
        undocumented = set(env) - DOC_NAMES[name]
        check(not undocumented, f"{where}: every variable {name} is given is documented for it in docs/configuration.md"
              + (f" (not: {', '.join(sorted(undocumented))})" if undocumented else ""))
        for var in ("DATABASE_URL", "REDIS_URL"):
            check(var in env, f"{where}: {name} is given {var}")
        for var, e in env.items():
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                check(generated(ref["name"], SECRET, rendered), f"{where}: {name}'s {var} comes from the Secret {SECRET}")
                needed_keys.add(ref["key"])
        ready = (c.get("readinessProbe") or {}).get("httpGet") or {}
        live = (c.get("livenessProbe") or {}).get("httpGet") or {}
        check(ready.get("path") == "/health/ready" and ready.get("port") in ("http", port),
              f"{where}: {name}'s readiness probe asks /health/ready")
        check(live.get("path") == "/health/live" and live.get("port") in ("http", port),
              f"{where}: {name}'s liveness probe asks /health/live")
        annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
        check(annotations.get("prometheus.io/scrape") == "true"
              and annotations.get("prometheus.io/port") == str(port)
              and annotations.get("prometheus.io/path") == "/metrics",
              f"{where}: {name}'s pods are annotated for Prometheus (/metrics on {port})")
        check(c.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
              f"{where}: {name}'s root filesystem is read-only")
        shutdown = env.get("SHUTDOWN_TIMEOUT_SECS", {}).get("value")
        if check(shutdown is not None and shutdown.isdigit(), f"{where}: {name} sets SHUTDOWN_TIMEOUT_SECS"):
            pre_stop = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
            pause = int(pre_stop[1]) if len(pre_stop) == 2 and pre_stop[0] == "sleep" and pre_stop[1].isdigit() else None
            check(pause is not None and pause > 0, f"{where}: {name} pauses in preStop so that its endpoints drain")
            grace = spec.get("terminationGracePeriodSeconds", 30)
            bound = (pause or 0) + 2 * int(shutdown)
            check(grace > bound,
                  f"{where}: {name}'s terminationGracePeriodSeconds ({grace}) > preStop ({pause}) + 2 × SHUTDOWN_TIMEOUT_SECS ({shutdown})")
        connections = int(env.get("DATABASE_MAX_CONNECTIONS", {}).get("value") or 16)
        budget.append((name, hpa.get("maxReplicas", 2), connections))

    # order reaches the participants through their Services.
    order = find(objects, "Deployment", "order")
    if order and service_ports.get("stock") and service_ports.get("payment"):
        env = env_of(order[0]["spec"]["template"]["spec"]["containers"][0])
        for var, target in (("STOCK_URL", "stock"), ("PAYMENT_URL", "payment")):
            check(env.get(var, {}).get("value") == f"http://{target}:{service_ports[target]}",
                  f"{where}: order's {var} is the Service {target} (http://{target}:{service_ports[target]})")

    # nginx: the repository's nginx.conf, every placeholder given, the upstreams the Services.
    found = check_workload(objects, where, "nginx", "NGINX_PORT")
    if found:
        dep, c, env, port, _ = found
        script = " ".join(c.get("command", []))
        listed = re.search(r"envsubst '([^']*)'", script)
        substituted = set(re.findall(r"\$([A-Z_]+)", listed.group(1))) if listed else set()
        check(substituted == NGINX_PLACEHOLDERS,
              f"{where}: nginx's envsubst fills exactly nginx.conf's placeholders ({', '.join(sorted(NGINX_PLACEHOLDERS))})")
        check(NGINX_PLACEHOLDERS <= set(env), f"{where}: nginx is given every placeholder of nginx.conf")
        # An upstream placeholder is either one address (ORDER_UPSTREAM: order:3131) or `server` lines
        # (ORDER_SERVERS: server order:3131 ...;): every address must be the service's Service.
        for var in sorted(NGINX_PLACEHOLDERS):
            svc = var.split("_", 1)[0].lower()
            if svc not in service_ports:
                continue
            value = env.get(var, {}).get("value") or ""
            addresses = re.findall(r"server\s+([^\s;]+)", value) if "server" in value else [value.strip()]
            check(bool(addresses) and all(a == f"{svc}:{service_ports[svc]}" for a in addresses),
                  f"{where}: nginx's {var} is the Service {svc} ({svc}:{service_ports[svc]})")
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"].get("volumes", [])}
        mounted = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/etc/checkout"]
        cm = (volumes.get(mounted[0]["name"], {}).get("configMap") or {}).get("name") if mounted else None
        base_gens = [g for k in KUSTOMIZATIONS.values() for g in k.get("configMapGenerator", []) or []
                     if generated(cm, g.get("name"), rendered) and "nginx.conf" in (g.get("files") or [])]
        check(bool(cm) and bool(base_gens),
              f"{where}: nginx reads /etc/checkout/nginx.conf from the ConfigMap generated from the copy of nginx.conf")

    if secret_keys is not None:
        missing = needed_keys - set(secret_keys)
        check(not missing, f"{where}: the Secret {SECRET} it generates has every key the services read"
              + (f" (missing: {', '.join(sorted(missing))})" if missing else ""))
        tokens = [t.strip() for t in secret_keys.get("service-tokens", "").split(",")]
        check(secret_keys.get("order-service-token") in tokens,
              f"{where}: order's token is one of stock's and payment's service tokens")
    if not rendered:
        total = sum(replicas * connections for _, replicas, connections in budget)
        detail = ", ".join(f"{n} {r} × {c}" for n, r, c in budget)
        print(f"info {where}: PostgreSQL connections at most (maxReplicas × DATABASE_MAX_CONNECTIONS): {detail} = {total}")


for kdir in KUSTOMIZATIONS:
    where = rel(kdir)
    objects = objects_of(kdir)
    is_overlay = bool(KUSTOMIZATIONS[kdir].get("namespace"))
    before = len(failures)
    check_platform(objects, where, generated_secret_keys(kdir) if is_overlay else None)
    if is_overlay:
        images = [i.get("name") for i in KUSTOMIZATIONS[kdir].get("images", []) or []]
        check("checkout-platform" in images, f"{where}: sets the checkout-platform image (images:)")
    if len(failures) == before:
        print(f"ok   {where}: the services, nginx, their Services, PodDisruptionBudgets and autoscalers agree "
              "with the code and docs/configuration.md")


# --- rendered by kustomize, when kubectl is here --------------------------------------------------------
kubectl = shutil.which("kubectl")
if not kubectl:
    print("note kubectl not found: the kustomizations were checked file by file, not rendered")
else:
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "kubernetes")
        shutil.copytree(KDIR, copy)
        for dirpath, _, files in os.walk(copy):
            for name in files:
                if name.endswith(".example"):
                    # Never the real secrets.env: the rendered output is the example's.
                    shutil.copyfile(os.path.join(dirpath, name), os.path.join(dirpath, name[: -len(".example")]))
        for kdir in KUSTOMIZATIONS:
            where = rel(kdir)
            target = os.path.join(copy, os.path.relpath(kdir, KDIR))
            run = subprocess.run([kubectl, "kustomize", target], capture_output=True, text=True)
            if not check(run.returncode == 0, f"{where}: kubectl kustomize renders it: {run.stderr.strip()}"):
                continue
            objects = [d for d in yaml.safe_load_all(run.stdout) if d]
            ok = validate_objects(objects, f"{where} (rendered)")
            before = len(failures)
            check_platform(objects, f"{where} (rendered)", None, rendered=True)
            ok &= len(failures) == before
            namespace = KUSTOMIZATIONS[kdir].get("namespace")
            if namespace:
                ok &= check(all(o["metadata"].get("namespace") == namespace for o in objects if o["kind"] != "Namespace"),
                            f"{where} (rendered): everything is in the namespace {namespace}")
                secrets = [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"]
                refs = {e["valueFrom"]["secretKeyRef"]["name"]
                        for o in objects if o["kind"] in ("Deployment", "StatefulSet")
                        for c in o["spec"]["template"]["spec"]["containers"]
                        for e in c.get("env", []) or [] if (e.get("valueFrom") or {}).get("secretKeyRef")}
                ok &= check(bool(refs) and refs <= set(secrets),
                            f"{where} (rendered): the Secret the workloads read is the one it generates")
            configmaps = [o for o in objects if o["kind"] == "ConfigMap" and "nginx.conf" in (o.get("data") or {})]
            ok &= check(len(configmaps) == 1 and configmaps[0]["data"]["nginx.conf"] == NGINX_CONF,
                        f"{where} (rendered): nginx's ConfigMap holds the repository's nginx.conf")
            if ok:
                print(f"ok   {where}: rendered by kubectl kustomize, {len(objects)} objects valid")

print()
if failures:
    print(f"kubernetes: {len(failures)} checks FAILED, {passed} passed (kubernetes-validate "
          f"{kubernetes_validate.__version__}, Kubernetes {', '.join(VERSIONS)})")
    for f in failures:
        print(f"  - {f}")
    sys.exit(1)
print(f"kubernetes: all {passed} checks passed (kubernetes-validate {kubernetes_validate.__version__}, "
      f"Kubernetes {', '.join(VERSIONS)})")
PY
