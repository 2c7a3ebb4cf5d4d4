"""deploy/kubernetes, checked offline as code: every manifest against the Kubernetes API schemas,
strictly; the kustomization complete; every setting one the service knows, in every Redis topology;
the pods locked down, pinned to this release, and given what their drain and probes need."""

from __future__ import annotations

import re
from decimal import Decimal

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from common.environment import load_settings, unknown_variables
from common.settings import ENV_PREFIX, Settings
from tests.deploy import kit
from tests.support.processes import REPO_ROOT
from worker.schedule import JOB_COMPLETION_WAIT_SECONDS

# The Kubernetes release whose schemas the manifests must meet (kubernetes-validate bundles them).
KUBERNETES_VERSION = "1.32"
# docs/scaling.md: the Postgres connections the target load is planned with (max_connections 200).
POSTGRES_MAX_CONNECTIONS = 200
API = "roomservice-api"
WORKER = "roomservice-worker"


@pytest.mark.parametrize("path", kit.kubernetes_files(), ids=lambda p: str(p.relative_to(kit.KUBERNETES)))
def test_every_manifest_meets_the_kubernetes_schemas_strictly(path) -> None:
    if path.name == "kustomization.yaml":
        assert kit.kustomization(path.parent)["kind"] in ("Kustomization", "Component")
        return
    docs = kit.documents(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']} at {where}: {exc.message}")


def test_the_schemas_refuse_an_unknown_field() -> None:
    """The validation above is strict: a misspelt field is an error, not ignored."""
    (job,) = kit.documents(kit.KUBERNETES / "migrate-job.yaml")
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolicyy"):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_accounts_for_every_file() -> None:
    """Each manifest is applied by the kustomization, patched in by a component, or an example of a
    Secret to create by hand: none is forgotten, and none of the examples is applied."""
    used = {kit.KUBERNETES / "kustomization.yaml"}
    used.update(kit.KUBERNETES / resource for resource in kit.kustomization(kit.KUBERNETES)["resources"])
    for component in filter(None, kit.VARIANTS.values()):
        directory = kit.KUBERNETES / component
        used.add(directory / "kustomization.yaml")
        used.update(directory / patch["path"] for patch in kit.kustomization(directory)["patches"])
    examples = {path for path in kit.kubernetes_files() if path.name.endswith(".example.yaml")}
    assert used.isdisjoint(examples), "an example Secret is applied: it would overwrite the real one"
    assert set(kit.kubernetes_files()) == used | examples
    components = {p.relative_to(kit.KUBERNETES).as_posix() for p in kit.KUBERNETES.glob("components/*") if p.is_dir()}
    assert components == {c for c in kit.VARIANTS.values() if c}


def test_every_rooms_name_in_the_kit_is_a_setting() -> None:
    known = {ENV_PREFIX + field.upper() for field in Settings.__struct_fields__}
    files = [*kit.kubernetes_files(), *kit.PROMETHEUS.rglob("*.yaml"), kit.DASHBOARD, kit.DEPLOY_DOC]
    unknown = {f"{path.relative_to(REPO_ROOT)}: {name}" for path in files for name in kit.rooms_names(path) - known}
    assert not unknown
    assert "ROOMS_DB_POOL_MAX_SIZE" in kit.rooms_names(kit.KUBERNETES / "configmap.yaml")  # the scan reads


@pytest.mark.parametrize("variant", kit.VARIANTS)
def test_every_container_starts_from_its_environment(variant) -> None:
    """The service reads each container's environment, ConfigMap and Secrets included, without a
    complaint, in each Redis topology: no unknown variable, no bad value, nothing missing its mode needs."""
    for container in kit.resolved_containers(variant):
        assert unknown_variables(container.env) == [], container.spec["name"]
        settings = load_settings(container.env)  # a SettingsError names the variable
        if container.spec["name"] in ("api", "worker"):
            assert settings.redis_mode == variant
            assert settings.redis_configured


def test_the_ticket_keys_are_the_mounted_files() -> None:
    (api,) = [c for c in kit.resolved_containers("standalone") if c.spec["name"] == "api"]
    pod = kit.find(kit.objects("standalone"), "Deployment", API)["spec"]["template"]["spec"]
    secret_volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    files = {
        f"{mount['mountPath']}/{key}"
        for mount in api.spec["volumeMounts"]
        if mount["name"] in secret_volumes
        for key in kit.example_secrets("standalone")[secret_volumes[mount["name"]]]["stringData"]
    }
    keys = api.env["ROOMS_TICKET_KEYS"].split(",")
    assert keys
    assert set(keys) <= files


def test_the_pods_are_locked_down() -> None:
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_user is not None
    for workload, pod in kit.pod_specs(kit.objects("standalone")):
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, workload
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True, workload
        assert (str(context["runAsUser"]), str(context["runAsGroup"])) == dockerfile_user.groups(), workload
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        for container in kit.containers(pod):
            own = container["securityContext"]
            where = f"{workload}/{container['name']}"
            assert own["allowPrivilegeEscalation"] is False, where
            assert own["readOnlyRootFilesystem"] is True, where
            assert own["runAsNonRoot"] is True, where
            assert own["capabilities"] == {"drop": ["ALL"]}, where
    (namespace,) = kit.documents(kit.KUBERNETES / "namespace.yaml")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def quantity(text: str | int) -> Decimal:
    """A Kubernetes quantity: 500m, 2, 128Mi."""
    units = {"m": Decimal("0.001"), "Ki": Decimal(1024), "Mi": Decimal(1024**2), "Gi": Decimal(1024**3)}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?", str(text))
    assert match is not None, f"not a quantity this test reads: {text}"
    return Decimal(match.group(1)) * units.get(match.group(2) or "", Decimal(1))


def test_every_container_has_requests_within_limits() -> None:
    for workload, pod in kit.pod_specs(kit.objects("standalone")):
        for container in kit.containers(pod):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                assert 0 < request <= quantity(resources["limits"][resource]), f"{workload}/{container['name']}"


def test_the_image_is_this_release() -> None:
    release = kit.version()
    images = {c["image"] for _, pod in kit.pod_specs(kit.objects("standalone")) for c in kit.containers(pod)}
    assert images == {f"roomservice:{release}"}
    assert kit.kustomization(kit.KUBERNETES)["images"] == [{"name": "roomservice", "newTag": release}]
    # A Job's pod template cannot change: each release's migration Job is a Job of its own.
    assert [doc["metadata"]["name"] for doc in kit.objects("standalone") if doc["kind"] == "Job"] == [
        f"roomservice-migrate-{release}"
    ]


def test_every_mention_of_the_release_is_this_release() -> None:
    """The image tags and Job names written in the kit, its guide and the Dockerfile's comment move with
    the version: a stale one would have someone build or wait for the wrong release."""
    files = [*kit.kubernetes_files(), kit.DEPLOY_DOC, REPO_ROOT / "Dockerfile"]
    mentions = {
        (path.name, found)
        for path in files
        for found in re.findall(r"roomservice(?::|-migrate-)(\d+\.\d+\.\d+)", path.read_text())
    }
    assert {name for name, _ in mentions} >= {"kustomization.yaml", "deploy.md", "Dockerfile"}
    assert {found for _, found in mentions} == {kit.version()}


def probes(container: dict) -> dict[str, dict]:
    return {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in container}


def test_probe_ports_are_the_ports_the_settings_open() -> None:
    """Each probe names a container port, and that port is the one the container's settings listen on
    (the paths themselves are asked of running processes: test_running.py)."""
    listening = {"api": ("port", "metrics_port"), "worker": ("worker_metrics_port",)}
    for container in kit.resolved_containers("standalone"):
        name = container.spec["name"]
        if name not in listening:
            continue
        settings = load_settings(container.env)
        ports = {p["name"]: p["containerPort"] for p in container.spec["ports"]}
        assert set(ports.values()) == {getattr(settings, field) for field in listening[name]}, name
        assert probes(container.spec)
        for kind, probe in probes(container.spec).items():
            assert probe["httpGet"]["port"] in ports, f"{name} {kind}"


def test_the_services_and_policies_select_the_api_pods() -> None:
    objs = kit.objects("standalone")
    deployment = kit.find(objs, "Deployment", API)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service = kit.find(objs, "Service", API)
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    assert kit.find(objs, "PodDisruptionBudget", API)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = kit.find(objs, "HorizontalPodAutoscaler", API)["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", API)
    assert "replicas" not in deployment["spec"], "the HPA owns the API's replica count; an apply would reset it"
    for _, pod in kit.pod_specs(objs):
        annotations = pod["metadata"].get("annotations", {})
        if "prometheus.io/port" in annotations:
            metrics = {
                p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"] if p["name"] == "metrics"
            }
            assert {int(annotations["prometheus.io/port"])} == metrics


def test_the_api_drains_within_its_grace_period() -> None:
    """preStop pause + the longest request (a PATCH: its marks and its statement, each within the
    database timeout, and two Redis round trips) + the close (the last marks, the pool) < the grace."""
    (api,) = [c for c in kit.resolved_containers("standalone") if c.spec["name"] == "api"]
    settings = load_settings(api.env)
    pod = kit.find(kit.objects("standalone"), "Deployment", API)["spec"]["template"]["spec"]
    pause = api.spec["lifecycle"]["preStop"]["sleep"]["seconds"]
    longest_request = 2 * settings.db_timeout_seconds + 2 * settings.redis_timeout_seconds
    close = 2 * settings.db_timeout_seconds
    assert pause >= 5, "endpoints need a few seconds to leave every proxy"
    assert pause + longest_request + close < pod["terminationGracePeriodSeconds"]
    # A readiness check takes up to the database and the Redis timeouts (docs/operations.md#health).
    readiness = api.spec["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/health/ready"
    assert readiness["timeoutSeconds"] > settings.db_timeout_seconds + settings.redis_timeout_seconds


def test_the_worker_finishes_its_jobs_within_its_grace_period() -> None:
    (worker,) = [c for c in kit.resolved_containers("standalone") if c.spec["name"] == "worker"]
    settings = load_settings(worker.env)
    pod = kit.find(kit.objects("standalone"), "Deployment", WORKER)["spec"]["template"]["spec"]
    assert JOB_COMPLETION_WAIT_SECONDS + settings.worker_db_timeout_seconds < pod["terminationGracePeriodSeconds"]


def test_the_postgres_connections_fit_the_planned_budget() -> None:
    """At the HPA's maximum, every API and worker pool full, plus the migration: within max_connections."""
    objs = kit.objects("standalone")
    pools = {
        c.workload: load_settings(c.env).db_pool_max_size
        for c in kit.resolved_containers("standalone")
        if c.spec["name"] in ("api", "worker")
    }
    api_pods = kit.find(objs, "HorizontalPodAutoscaler", API)["spec"]["maxReplicas"]
    api_processes = api_pods * int(kit.find(objs, "ConfigMap", "roomservice-config")["data"]["ROOMS_WORKERS"])
    workers = kit.find(objs, "Deployment", WORKER)["spec"]["replicas"]
    total = api_processes * pools[API] + workers * pools[WORKER] + 1
    assert total <= POSTGRES_MAX_CONNECTIONS
