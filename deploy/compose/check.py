#!/usr/bin/env python3
"""Check deploy/docker-compose.yml against the repository, without Docker.

    deploy/compose/check.py [--bin FUNNELSTREAM]

Parses the compose file (PyYAML) and asserts that:

  * every key is one this file is allowed to use (a subset of the Compose
    Specification), images are pinned, depends_on names real services with
    conditions they can meet (service_healthy needs a healthcheck,
    service_completed_successfully a one-shot service);
  * every bind-mounted host path exists, and the build context holds the
    Dockerfile and every path its COPY lines read (not hidden by
    .dockerignore);
  * ports agree: each published container port is one the service listens
    on (funnelstream's --listen and the Dockerfile's EXPOSE, Kafka's
    listeners, Prometheus 9090, Grafana 3000); host ports are unique;
  * funnelstream and the producer use the Kafka service's advertised
    listener and the topic the init step creates; their flags exist
    (`funnelstream run/produce --help`), and `funnelstream check-config`
    accepts the run command's settings (with --bin);
  * Prometheus loads, through the mounts, the same rule files as
    deploy/prometheus/prometheus.yml and scrapes funnelstream:<its port>;
    `promtool check config` passes on a copy of the container's file tree;
  * Grafana's provisioned data source points at the Prometheus service and
    its dashboard provider's folder holds the mounted dashboard JSON.

Python 3 standard library plus PyYAML. Exit 0 when all checks pass, 1
otherwise (every failure printed).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY = os.path.dirname(HERE)
ROOT = os.path.dirname(DEPLOY)
COMPOSE = os.path.join(DEPLOY, "docker-compose.yml")

TOP_KEYS = {"name", "services", "volumes", "networks", "configs", "secrets"}
SERVICE_KEYS = {"image", "build", "hostname", "environment", "ports", "healthcheck", "depends_on",
                "entrypoint", "command", "restart", "volumes", "read_only", "tmpfs", "user",
                "networks", "expose", "profiles", "container_name", "working_dir", "labels",
                "stop_grace_period", "init", "deploy"}
BUILD_KEYS = {"context", "dockerfile", "args", "target"}
HEALTH_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART = {"no", "always", "on-failure", "unless-stopped"}

failures = []


def check(cond, msg):
    print(f"  {'ok  ' if cond else 'FAIL'} {msg}")
    if not cond:
        failures.append(msg)
    return cond


def arg_after(cmd, flag):
    """Value of `--flag V` or `--flag=V` in a command list."""
    for i, a in enumerate(cmd):
        if a == flag and i + 1 < len(cmd):
            return str(cmd[i + 1])
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def as_list(cmd):
    if cmd is None:
        return []
    if isinstance(cmd, str):
        return cmd.split()
    return [str(c) for c in cmd]


def bind_mounts(svc):
    """(host path, container path, options) of the short-syntax bind mounts."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((os.path.normpath(os.path.join(DEPLOY, v["source"])), v["target"],
                            "ro" if v.get("read_only") else "rw"))
            continue
        parts = v.split(":")
        if parts[0].startswith((".", "/")):
            out.append((os.path.normpath(os.path.join(DEPLOY, parts[0])), parts[1],
                        parts[2] if len(parts) > 2 else "rw"))
    return out


def container_to_host(svc, path):
    """Host path behind a container path, through the service's bind mounts."""
    for host, target, _ in bind_mounts(svc):
        if path == target:
            return host
        if path.startswith(target.rstrip("/") + "/") and os.path.isdir(host):
            return os.path.join(host, os.path.relpath(path, target))
    return None


def published(svc):
    """[(host port, container port)] of short-syntax port mappings."""
    out = []
    for p in svc.get("ports") or []:
        m = re.fullmatch(r"(?:[0-9.]+:)?([0-9]+):([0-9]+)(?:/tcp)?", str(p))
        if m is None:
            check(False, f"port {p!r} is HOST:CONTAINER")
        else:
            out.append((int(m.group(1)), int(m.group(2))))
    return out


def dockerfile_checks(svc_name, build):
    ctx = os.path.normpath(os.path.join(DEPLOY, build.get("context", ".")))
    dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
    if not check(os.path.isfile(dockerfile), f"{svc_name}: Dockerfile {os.path.relpath(dockerfile, ROOT)} exists"):
        return None
    ignore = []
    di = os.path.join(ctx, ".dockerignore")
    if os.path.isfile(di):
        with open(di, encoding="utf-8") as f:
            ignore = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    with open(dockerfile, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    expose = set()
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words[1:]):
            srcs = [w for w in words[1:-1] if not w.startswith("--")]
            for s in srcs:
                check(os.path.exists(os.path.join(ctx, s)), f"{svc_name}: COPY source {s} exists in the build context")
                top = s.strip("./").split("/")[0]
                check(top not in ignore, f"{svc_name}: COPY source {s} not excluded by .dockerignore")
        if words[0].upper() == "EXPOSE":
            expose |= {int(w.split("/")[0]) for w in words[1:]}
    # Files the sources embed at compile time must be in the image's build too.
    copied = [os.path.normpath(os.path.join(ctx, w)) for line in text.splitlines()
              for w in line.split()[1:-1] if line.split() and line.split()[0].upper() == "COPY"
              and "--from" not in line and not w.startswith("--")]
    embeds = 0
    for d, _, fs in os.walk(os.path.join(ctx, "src")):
        for fn in fs:
            if not fn.endswith(".rs"):
                continue
            with open(os.path.join(d, fn), encoding="utf-8") as f:
                for rel in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', f.read()):
                    embeds += 1
                    target = os.path.normpath(os.path.join(d, rel))
                    check(any(target == c or target.startswith(c + os.sep) for c in copied),
                          f"{svc_name}: {os.path.relpath(target, ctx)} (embedded by {fn}) is copied into the build")
    print(f"  ok   {svc_name}: {embeds} file(s) embedded with include_str!/include_bytes! checked")
    return expose


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("FUNNELSTREAM_BIN"),
                    help="funnelstream binary for the flag and check-config checks")
    args = ap.parse_args()

    with open(COMPOSE, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    print(f"{os.path.relpath(COMPOSE, ROOT)}")
    check(set(doc) <= TOP_KEYS | {k for k in doc if k.startswith("x-")}, f"top-level keys known: {sorted(doc)}")
    services = doc["services"]

    # Keys, images, depends_on, bind mounts.
    images = {}
    for name, svc in services.items():
        check(set(svc) <= SERVICE_KEYS, f"{name}: keys known ({sorted(set(svc) - SERVICE_KEYS) or 'all'})")
        check("image" in svc or "build" in svc, f"{name}: has an image or a build")
        img = svc.get("image", "")
        if "build" not in svc:
            check(re.search(r":[^/:]+$", img) is not None and not img.endswith(":latest"),
                  f"{name}: image {img} pinned to a tag")
        images[name] = img
        if "build" in svc:
            check(set(svc["build"]) <= BUILD_KEYS, f"{name}: build keys known")
        if "healthcheck" in svc:
            check(set(svc["healthcheck"]) <= HEALTH_KEYS, f"{name}: healthcheck keys known")
        if "restart" in svc:
            check(str(svc["restart"]) in RESTART, f"{name}: restart {svc['restart']!r} valid")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if not check(dep in services, f"{name}: depends on existing service {dep}"):
                continue
            cond = spec.get("condition", "service_started")
            check(cond in CONDITIONS, f"{name}: condition {cond} valid")
            if cond == "service_healthy":
                check("healthcheck" in services[dep], f"{name}: {dep} has a healthcheck (service_healthy)")
            if cond == "service_completed_successfully":
                check(str(services[dep].get("restart", "no")) == "no", f"{name}: {dep} is one-shot (restart: no)")
        for host, target, mode in bind_mounts(svc):
            check(os.path.exists(host), f"{name}: bind mount {os.path.relpath(host, ROOT)} -> {target} exists")
            check(mode == "ro", f"{name}: bind mount {target} read-only")

    host_ports = [hp for svc in services.values() for hp, _ in published(svc)]
    check(len(host_ports) == len(set(host_ports)), f"host ports unique: {sorted(host_ports)}")

    # Kafka: listeners, and the address clients use.
    print("kafka")
    kafka = services["kafka"]
    env = {k: str(v) for k, v in kafka["environment"].items()}
    listeners = dict(re.findall(r"([A-Z_]+)://[^:,]*:([0-9]+)", env["KAFKA_LISTENERS"]))
    advertised = dict((n, (h, p)) for n, h, p in re.findall(r"([A-Z_]+)://([^:,]+):([0-9]+)", env["KAFKA_ADVERTISED_LISTENERS"]))
    protocols = dict(x.split(":") for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    check(set(listeners) <= set(protocols), "every listener has a security protocol")
    check(env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners, "controller listener declared")
    voter = re.fullmatch(r"([0-9]+)@([^:]+):([0-9]+)", env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
    cid = env.get("CLUSTER_ID", "")
    check(re.fullmatch(r"[A-Za-z0-9_-]{22}", cid) is not None, "CLUSTER_ID is a base64 UUID (the image requires it in KRaft mode)")
    check(voter is not None and voter.group(1) == env["KAFKA_NODE_ID"]
          and voter.group(3) == listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]]
          and voter.group(2) in ("kafka", kafka.get("hostname"), "localhost"),
          "quorum voter is this node's controller listener")
    inner = advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    check(inner[0] in ("kafka", kafka.get("hostname")) and inner[1] == listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]],
          f"in-network listener advertised as {inner[0]}:{inner[1]}")
    bootstrap = f"{inner[0]}:{inner[1]}"
    for hp, cp in published(kafka):
        check(str(cp) in listeners.values() and any(h == "localhost" and p == str(cp) for h, p in advertised.values()),
              f"published {hp}:{cp} is a listener advertised as localhost")

    init = services["kafka-init"]
    init_cmd = as_list(init.get("entrypoint")) + as_list(init.get("command"))
    topic = arg_after(init_cmd, "--topic")
    check(init_cmd[0].endswith("kafka-topics.sh") and "--create" in init_cmd, "kafka-init creates a topic")
    check(arg_after(init_cmd, "--bootstrap-server") == bootstrap, f"kafka-init uses {bootstrap}")
    check(init.get("image") == kafka.get("image"), "kafka-init uses the broker's image (same tools)")
    ck_init = services.get("kafka-init-checkpoints", {})
    ck_cmd = as_list(ck_init.get("entrypoint")) + as_list(ck_init.get("command"))
    ck_topic = arg_after(ck_cmd, "--topic")
    check(bool(ck_cmd) and ck_cmd[0].endswith("kafka-topics.sh") and "--create" in ck_cmd,
          "kafka-init-checkpoints creates the checkpoint topic")
    check(arg_after(ck_cmd, "--config") == "cleanup.policy=compact", "the checkpoint topic is compacted")
    check(arg_after(ck_cmd, "--bootstrap-server") == bootstrap, f"kafka-init-checkpoints uses {bootstrap}")
    check(ck_topic is not None and ck_topic != topic, "the checkpoint topic is not the events topic")

    # funnelstream and the producer.
    print("funnelstream / producer")
    fs = services["funnelstream"]
    expose = dockerfile_checks("funnelstream", fs["build"])
    run = as_list(fs["command"])
    check(run[0] == "run", "funnelstream runs `funnelstream run`")
    check(arg_after(run, "--brokers") == bootstrap, f"funnelstream --brokers {bootstrap}")
    check(arg_after(run, "--topics") == topic, f"funnelstream --topics {topic} (created by kafka-init)")
    check(arg_after(run, "--checkpoint-topic") == ck_topic,
          f"funnelstream --checkpoint-topic {ck_topic} (created by kafka-init-checkpoints)")
    deps = fs.get("depends_on") or {}
    check(all(deps.get(s, {}).get("condition") == "service_completed_successfully"
              for s in ("kafka-init", "kafka-init-checkpoints")),
          "funnelstream starts after both topics exist")
    listen = arg_after(run, "--listen") or "0.0.0.0:9490"
    fs_port = int(listen.rsplit(":", 1)[1])
    check(listen.rsplit(":", 1)[0] in ("0.0.0.0", "[::]"), f"funnelstream listens on all interfaces ({listen})")
    check(expose is not None and fs_port in expose, f"port {fs_port} is EXPOSEd by the Dockerfile")
    check([cp for _, cp in published(fs)] == [fs_port], f"funnelstream publishes {fs_port}")
    hc = " ".join(as_list(fs.get("healthcheck", {}).get("test")))
    check(f"/{fs_port}" in hc and "/healthz" in hc, "funnelstream healthcheck GETs /healthz on its port")
    check(fs.get("read_only") is True and "/tmp" in (fs.get("tmpfs") or []), "funnelstream: read-only root, tmpfs /tmp (as in the chart)")

    prod = services["producer"]
    pcmd = as_list(prod["command"])
    check(prod.get("image") == fs.get("image") and "build" not in prod, "producer uses the image funnelstream builds")
    check(pcmd[0] == "produce", "producer runs `funnelstream produce`")
    check(arg_after(pcmd, "--brokers") == bootstrap, f"producer --brokers {bootstrap}")
    check(arg_after(pcmd, "--topic") == topic, f"producer --topic {topic}")
    check(arg_after(pcmd, "--rate") == "200" and arg_after(pcmd, "--count") == "100000000", "producer --rate 200 --count 100000000")

    if args.bin:
        for sub, cmd in (("run", run), ("produce", pcmd)):
            h = subprocess.run([args.bin, sub, "--help"], capture_output=True, text=True)
            flags = {a.split("=")[0] for a in cmd if a.startswith("--")}
            known = set(re.findall(r"(--[a-z][a-z-]*)", h.stdout))
            check(flags <= known, f"`funnelstream {sub}` knows {sorted(flags)}")
        penv = {k: v for k, v in os.environ.items() if not k.startswith("FUNNELSTREAM_")}
        penv.update({k: str(v) for k, v in (fs.get("environment") or {}).items()})
        r = subprocess.run([args.bin, "check-config"] + run[1:], capture_output=True, text=True, env=penv)
        check(r.returncode == 0, "funnelstream check-config accepts the compose settings"
              + ("" if r.returncode == 0 else ": " + r.stderr.strip()))
    else:
        print("  skip flag and check-config checks (no --bin / FUNNELSTREAM_BIN)")

    # Prometheus.
    print("prometheus")
    prom = services["prometheus"]
    pargs = as_list(prom["command"])
    cfg_path = arg_after(pargs, "--config.file")
    host_cfg = container_to_host(prom, cfg_path)
    check(host_cfg is not None and os.path.isfile(host_cfg), f"--config.file {cfg_path} is mounted from the repository")
    check([cp for _, cp in published(prom)] == [9090], "prometheus publishes 9090")
    with open(host_cfg, encoding="utf-8") as f:
        pcfg = yaml.safe_load(f)
    with open(os.path.join(DEPLOY, "prometheus", "prometheus.yml"), encoding="utf-8") as f:
        ref = yaml.safe_load(f)
    cfg_dir = os.path.dirname(cfg_path)
    rule_hosts = []
    for rf in pcfg.get("rule_files") or []:
        h = container_to_host(prom, rf if rf.startswith("/") else os.path.join(cfg_dir, rf))
        check(h is not None and os.path.isfile(h), f"rule file {rf} mounted from the repository")
        rule_hosts.append(os.path.realpath(h) if h else None)
    ref_rules = [os.path.realpath(os.path.join(DEPLOY, "prometheus", r)) for r in ref.get("rule_files") or []]
    check(sorted(filter(None, rule_hosts)) == sorted(ref_rules),
          "the same rule files as deploy/prometheus/prometheus.yml: "
          + ", ".join(os.path.relpath(r, ROOT) for r in ref_rules))
    targets = [t for sc in pcfg["scrape_configs"] for st in sc.get("static_configs", []) for t in st["targets"]]
    check(f"funnelstream:{fs_port}" in targets, f"scrapes funnelstream:{fs_port}")
    fjob = [sc for sc in pcfg["scrape_configs"] if any(f"funnelstream:{fs_port}" in st["targets"] for st in sc.get("static_configs", []))]
    rjob = [sc for sc in ref["scrape_configs"] if sc.get("job_name") == (fjob[0]["job_name"] if fjob else None)]
    if check(len(fjob) == 1 and len(rjob) == 1, "the funnelstream job exists in both configs"):
        same = {k: (fjob[0].get(k), rjob[0].get(k)) for k in ("scrape_interval", "scrape_timeout", "metrics_path")
                if fjob[0].get(k) != rjob[0].get(k)}
        check(not same, f"scrape settings as in deploy/prometheus/prometheus.yml{'' if not same else ': ' + str(same)}")
    check(pcfg.get("global") == ref.get("global"), "global settings as in deploy/prometheus/prometheus.yml")
    if shutil.which("promtool"):
        with tempfile.TemporaryDirectory() as tmp:
            for host, target, _ in bind_mounts(prom):
                dst = os.path.join(tmp, target.lstrip("/"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.symlink(host, dst)
            r = subprocess.run(["promtool", "check", "config", os.path.join(tmp, cfg_path.lstrip("/"))],
                               capture_output=True, text=True)
            check(r.returncode == 0, "promtool check config (on the container's file tree)"
                  + ("" if r.returncode == 0 else ": " + (r.stdout + r.stderr).strip()))
    else:
        print("  skip promtool check config (promtool not installed: Debian package prometheus)")

    # Grafana.
    print("grafana")
    graf = services["grafana"]
    check([cp for _, cp in published(graf)] == [3000], "grafana publishes 3000")
    def provisioned(kind):
        """Host files Grafana reads from /etc/grafana/provisioning/<kind>/."""
        target_dir = f"/etc/grafana/provisioning/{kind}"
        files = []
        for host, target, _ in bind_mounts(graf):
            if target == target_dir and os.path.isdir(host):
                files += [os.path.join(host, f) for f in sorted(os.listdir(host)) if f.endswith((".yml", ".yaml"))]
            elif os.path.dirname(target) == target_dir and target.endswith((".yml", ".yaml")):
                files.append(host)
        return files

    ds_files, db_files = provisioned("datasources"), provisioned("dashboards")
    if check(ds_files != [], f"data source provisioning mounted ({[os.path.relpath(f, ROOT) for f in ds_files]})"):
        urls = []
        for fn in ds_files:
            with open(fn, encoding="utf-8") as f:
                urls += [d.get("url") for d in (yaml.safe_load(f) or {}).get("datasources", []) if d.get("type") == "prometheus"]
        prom_port = [cp for _, cp in published(prom)][0]
        check(f"http://prometheus:{prom_port}" in urls, f"a Prometheus data source at http://prometheus:{prom_port} ({urls})")
    if check(db_files != [], f"dashboard provisioning mounted ({[os.path.relpath(f, ROOT) for f in db_files]})"):
        paths = []
        for fn in db_files:
            with open(fn, encoding="utf-8") as f:
                paths += [p["options"]["path"] for p in (yaml.safe_load(f) or {}).get("providers", []) if p.get("type") == "file"]
        dashboards = [(h, t) for h, t, _ in bind_mounts(graf) if t.endswith(".json")]
        check(dashboards != [], "a dashboard JSON is mounted")
        for host, target in dashboards:
            check(os.path.dirname(target) in paths, f"dashboard {target} is in a provider's folder {paths}")
            with open(host, encoding="utf-8") as f:
                dash = json.load(f)
            check(bool(dash.get("uid")) and bool(dash.get("panels")), f"{os.path.relpath(host, ROOT)}: a dashboard with a uid and panels")
        home = (graf.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        if home:
            check(home in [t for _, t in dashboards], f"home dashboard {home} is mounted")

    # yamllint, when installed (check.sh requires it; this script does not).
    try:
        import yamllint  # noqa: F401
    except ImportError:
        print("  skip yamllint (pip install yamllint)")
    else:
        files = [COMPOSE] + [os.path.join(d, f) for d, _, fs in os.walk(HERE) for f in fs if f.endswith((".yml", ".yaml"))]
        r = subprocess.run([sys.executable, "-m", "yamllint", "--strict", "-f", "parsable",
                            "-c", os.path.join(DEPLOY, "helm-check", "yamllint.yaml"), *sorted(files)],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"yamllint --strict on {len(files)} files" + ("" if r.returncode == 0 else ":\n" + r.stdout + r.stderr))

    if failures:
        print(f"compose check: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("compose check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
