#!/usr/bin/env python3
"""Renders Downpour's Kubernetes manifests and checks them, as CI does.

For the base (1 server shard) and every overlay:
  1. `kubectl kustomize DIR` renders it;
  2. `kubernetes-validate --strict` validates every object against the Kubernetes API schema
     of each version in KUBERNETES_VERSIONS (unknown fields are errors);
  3. the objects are checked against each other: the shard count, the shard addresses, the
     worker count and the job file, the probes, the token, the metrics port, the resources.

`--self-test` also breaks a rendered copy in several ways and fails unless each break is
caught, so the checks themselves cannot silently pass.

Needs kubectl (Debian: kubernetes-client) and the Python packages kubernetes-validate and
PyYAML (.ci/run installs them into a venv).
"""

import copy
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
# The oldest version the manifests need (the pod-index label is 1.28+) and a recent one.
KUBERNETES_VERSIONS = ["1.30.0", "1.34.0"]
# Each rendering and the server shards it must have.
RENDERINGS = {"base": 1, "overlays/three-shards": 3}


def render(directory):
    out = subprocess.run(
        ["kubectl", "kustomize", str(HERE / directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out, [d for d in yaml.safe_load_all(out) if d]


def validate_schema(name, text):
    path = Path("/tmp") / f"downpour-k8s-{name.replace('/', '-')}.yaml"
    path.write_text(text)
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run(
            ["kubernetes-validate", "--strict", "--quiet", "-k", version, str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"{name}: kubernetes-validate --strict -k {version} failed:\n"
                f"{result.stdout}{result.stderr}"
            )


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind}, found {len(found)}")
    return found[0]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def flag(args, name):
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def check(docs, shards):
    """Raises AssertionError naming the first inconsistency."""
    service = one(docs, "Service")
    sts = one(docs, "StatefulSet")
    job = one(docs, "Job")
    config = one(docs, "ConfigMap")
    name, svc = sts["metadata"]["name"], service["metadata"]["name"]

    assert service["spec"].get("clusterIP") == "None", "the server Service must be headless"
    assert sts["spec"]["serviceName"] == svc, "StatefulSet.serviceName must name the Service"
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    for k, v in service["spec"]["selector"].items():
        assert pod_labels.get(k) == v, f"the Service selector {k}={v} misses the server pods"

    replicas = sts["spec"]["replicas"]
    assert replicas == shards, f"{shards} shards expected, the StatefulSet has {replicas}"
    (server,) = sts["spec"]["template"]["spec"]["containers"]
    env = env_of(server)
    servers = int(env["DOWNPOUR_SERVERS"]["value"])
    assert servers == replicas, f"DOWNPOUR_SERVERS={servers} but {replicas} replicas"
    shard_ref = env["DOWNPOUR_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert "pod-index" in shard_ref, f"the shard must be the pod's ordinal, got {shard_ref}"
    port = next(p["containerPort"] for p in server["ports"] if p["name"] == "grpc")
    expected = [f"{name}-{k}.{svc}:{port}" for k in range(1, replicas)]
    listed = env.get("DOWNPOUR_SHARD_ADDRESSES", {}).get("value", "")
    listed = [a for a in listed.split(",") if a]
    assert listed == expected, f"shard addresses {listed}, expected {expected}"

    if replicas > 1:
        key = env.get("DOWNPOUR_SESSION_KEY", {}).get("valueFrom", {}).get("secretKeyRef")
        assert key, "with several shards, every shard needs the shared session key from a Secret"

    job_file = tomllib.loads(config["data"]["job.toml"])
    workers = job_file["training"]["workers"]
    spec = job["spec"]
    assert spec.get("completionMode") == "Indexed", "workers must be an Indexed Job"
    assert spec["parallelism"] == spec["completions"] == workers, (
        f"worker Job parallelism {spec['parallelism']} / completions {spec['completions']} "
        f"must equal the job file's training.workers = {workers}"
    )
    (worker,) = spec["template"]["spec"]["containers"]
    target = flag(worker["args"], "server")
    assert target == f"{name}-0.{svc}:{port}", f"workers must reach shard 0, got {target}"

    pods = [(sts["spec"]["template"], server), (spec["template"], worker)]
    for template, container in pods:
        who = container["name"]
        token = env_of(container)["DOWNPOUR_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert token["name"] and token["key"], f"{who}: the token must come from a Secret"
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert container["resources"][kind][resource], f"{who}: no {kind}.{resource}"
        metrics = flag(container["args"], "metrics-listen")
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", f"{who}: not scraped"
        assert metrics and metrics.endswith(":" + annotations["prometheus.io/port"]), (
            f"{who}: --metrics-listen={metrics} but prometheus.io/port="
            f"{annotations['prometheus.io/port']}"
        )
    for probe in ("readinessProbe", "livenessProbe"):
        command = server[probe]["exec"]["command"]
        assert command[:2] == ["/downpour", "health"], f"{probe} must run downpour health"
        assert f"127.0.0.1:{port}" in command, f"{probe} must probe the gRPC port {port}"
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    claims = [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]]
    assert flag(server["args"], "checkpoint-dir") == mounts.get("checkpoints"), (
        "--checkpoint-dir must be the mounted checkpoints volume"
    )
    assert "checkpoints" in claims, "checkpoints must live on a PersistentVolumeClaim"
    assert flag(server["args"], "job") == mounts["job"] + "/job.toml", "--job must be mounted"


def breakages(docs):
    """Copies of a good rendering, each broken in one way check() must catch."""

    def broken(edit):
        d = copy.deepcopy(docs)
        edit(d)
        return d

    def sts(d):
        return one(d, "StatefulSet")

    def job(d):
        return one(d, "Job")

    def server(d):
        return sts(d)["spec"]["template"]["spec"]["containers"][0]

    yield "one replica more", broken(lambda d: sts(d)["spec"].update(replicas=sts(d)["spec"]["replicas"] + 1))
    yield "workers != job file", broken(lambda d: job(d)["spec"].update(parallelism=7, completions=7))
    yield "not headless", broken(lambda d: one(d, "Service")["spec"].update(clusterIP="10.0.0.1"))
    yield "no token", broken(lambda d: job(d)["spec"]["template"]["spec"]["containers"][0].update(env=[]))
    yield "metrics port", broken(
        lambda d: sts(d)["spec"]["template"]["metadata"]["annotations"].update({"prometheus.io/port": "1"})
    )
    yield "no limits", broken(lambda d: server(d)["resources"].pop("limits"))
    yield "probe", broken(lambda d: server(d)["readinessProbe"]["exec"].update(command=["/bin/true"]))
    if one(docs, "StatefulSet")["spec"]["replicas"] > 1:
        yield "no session key", broken(
            lambda d: server(d).update(env=[e for e in server(d)["env"] if e["name"] != "DOWNPOUR_SESSION_KEY"])
        )


def main():
    self_test = "--self-test" in sys.argv[1:]
    for directory, shards in RENDERINGS.items():
        text, docs = render(directory)
        validate_schema(directory, text)
        check(docs, shards)
        kinds = ", ".join(sorted(d["kind"] for d in docs))
        print(f"kubernetes: {directory}: {shards} shard(s) render and validate strictly ({kinds})")
        if self_test:
            for what, bad in breakages(docs):
                try:
                    check(bad, shards)
                except (AssertionError, KeyError) as caught:
                    print(f"  self-test: caught '{what}': {caught}")
                else:
                    raise SystemExit(f"{directory}: the check missed a break: {what}")


if __name__ == "__main__":
    main()
