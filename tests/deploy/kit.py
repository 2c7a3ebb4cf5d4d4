"""The deploy kit as the tests read it: the Kubernetes manifests of deploy/kubernetes, assembled as
`kubectl apply -k` would (the base, plus a Redis component), and each container's environment as the
kubelet would give it (the ConfigMap, then its own variables, the Secrets from the examples)."""

from __future__ import annotations

import copy
import functools
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from tests.support.processes import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "roomservice.json"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"

# The Redis topologies the kit supports: the base alone is standalone; the others add a component.
VARIANTS = {"standalone": None, "sentinel": "components/redis-sentinel", "cluster": "components/redis-cluster"}

Obj = dict[str, Any]


def version() -> str:
    """The package's version: the image tag the manifests run."""
    with (REPO_ROOT / "pyproject.toml").open("rb") as project:
        found: str = tomllib.load(project)["project"]["version"]
    return found


def documents(path: Path) -> list[Obj]:
    """The objects of a YAML file, a copy of them each time (a test may change what it is given)."""
    return copy.deepcopy(_parsed(path))


@functools.cache
def _parsed(path: Path) -> list[Obj]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML was built with it
    with path.open() as text:
        return [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]


def kustomization(directory: Path) -> Obj:
    (doc,) = documents(directory / "kustomization.yaml")
    return doc


def example_secrets(variant: str) -> dict[str, Obj]:
    """The Secrets by name: the base's examples, with the component's own examples in their place."""
    found = {doc["metadata"]["name"]: doc for doc in documents(KUBERNETES / "secrets.example.yaml")}
    component = VARIANTS[variant]
    if component and (KUBERNETES / component / "secrets.example.yaml").exists():
        found.update({d["metadata"]["name"]: d for d in documents(KUBERNETES / component / "secrets.example.yaml")})
    return found


def merged(base: Any, patch: Any) -> Any:
    """A strategic merge patch as it applies to maps (the only kind the components carry): keys are
    added or replaced, maps merged recursively."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{key: merged(base.get(key), value) for key, value in patch.items()}}
    return patch


def objects(variant: str) -> list[Obj]:
    """What `kubectl apply -k` applies for this variant (the namespace transformer aside)."""
    base = kustomization(KUBERNETES)
    built = [doc for resource in base["resources"] for doc in documents(KUBERNETES / resource)]
    component = VARIANTS[variant]
    if component is None:
        return built
    spec = kustomization(KUBERNETES / component)
    assert spec["kind"] == "Component", f"{component} is not a kustomize Component"
    for entry in spec["patches"]:
        for patch in documents(KUBERNETES / component / entry["path"]):
            targets = [i for i, doc in enumerate(built) if same_object(doc, patch)]
            assert len(targets) == 1, f"{component}/{entry['path']} patches no single object of the base"
            built[targets[0]] = merged(built[targets[0]], patch)
    return built


def same_object(one: Obj, other: Obj) -> bool:
    return bool(one["kind"] == other["kind"] and one["metadata"]["name"] == other["metadata"]["name"])


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [doc for doc in objs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def pod_specs(objs: list[Obj]) -> Iterator[tuple[str, Obj]]:
    """(workload name, pod template) of every Deployment and Job."""
    for doc in objs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]


def containers(pod: Obj) -> list[Obj]:
    containers: list[Obj] = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
    return containers


@dataclass(frozen=True)
class Container:
    workload: str
    spec: Obj
    env: dict[str, str]  # as the process sees it: ConfigMap, then its own variables, Secrets resolved


def resolved_containers(variant: str) -> list[Container]:
    objs = objects(variant)
    secrets = example_secrets(variant)
    return [
        Container(workload, spec, container_env(spec, objs, secrets))
        for workload, pod in pod_specs(objs)
        for spec in containers(pod)
    ]


def container_env(spec: Obj, objs: list[Obj], secrets: Mapping[str, Obj]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(secrets[source["secretRef"]["name"]]["stringData"])
    for variable in spec.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["name"] in secrets, f"{variable['name']}: no Secret {ref['name']} in the examples"
        data = secrets[ref["name"]]["stringData"]
        if ref["key"] in data:
            env[variable["name"]] = data[ref["key"]]
        else:
            assert ref.get("optional"), f"{variable['name']}: Secret {ref['name']} has no key {ref['key']}"
    return env


def kubernetes_files() -> list[Path]:
    return sorted(KUBERNETES.rglob("*.yaml"))


ROOMS_NAME = re.compile(r"\bROOMS_[A-Z0-9_]+")


def rooms_names(path: Path) -> set[str]:
    """Every ROOMS_* name a file mentions, comments included: a comment naming a setting that does
    not exist misleads as much as a variable does."""
    return set(ROOMS_NAME.findall(path.read_text()))
