"""deploy/ holds what the README says of it: a Kubernetes sidecar and a compose file that work as written.

There is no Docker engine or cluster where the tests run: the YAML files are read as Kubernetes
and compose read them and held to the image (the Dockerfile), the daemon and the configs they
carry; and the compose file's services are run as the processes they start (its demo data, its
sandbox, `funnelsync run` with its environment, a real PostgreSQL standing for its postgres).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from funnelsync.cli.commands import main as cli
from funnelsync.config import ENVIRONMENT_OVERRIDES, Config, load_config
from funnelsync.connectors.sql_settings import SqlSource
from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from tests.conftest import TOKEN
from tests.test_cli import free_port, http_get, wait_for
from tests.test_packaging import Dockerfile

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = ROOT / "deploy/kubernetes/funnelsync-sidecar.yaml"
COMPOSE = ROOT / "deploy/compose.yaml"
DEPLOY_CONFIG = ROOT / "deploy/config.toml"
IMAGE = Dockerfile.read(ROOT / "Dockerfile")
# what deploy/.env would hold (compose reads it); never real secrets
DOT_ENV = {"POSTGRES_PASSWORD": "not-a-real-password-0", "SANDBOX_TOKEN": TOKEN}


# -- Kubernetes -------------------------------------------------------------------------------

def sidecar_documents() -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in yaml.safe_load_all(SIDECAR.read_text())}


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = sidecar_documents()["Deployment"]["spec"]["template"]["spec"]
    return spec


def funnelsync_container() -> dict[str, Any]:
    [container] = [c for c in pod_spec()["containers"] if c["name"] == "funnelsync"]
    return container


def container_env() -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in funnelsync_container()["env"]}


def mounts() -> dict[str, dict[str, Any]]:
    """mount path -> the pod's volume mounted there."""
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    return {mount["mountPath"]: volumes[mount["name"]] for mount in funnelsync_container()["volumeMounts"]}


@pytest.fixture
def sidecar_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The ConfigMap's config.toml, loaded with the container's environment (a stand-in for a
    value that comes from a Secret)."""
    for variable in ENVIRONMENT_OVERRIDES:
        monkeypatch.delenv(variable, raising=False)
        entry = container_env().get(variable)
        if entry is not None:
            monkeypatch.setenv(variable, entry.get("value", "postgresql+psycopg://stand-in@db/analytics"))
    path = tmp_path / "config.toml"
    path.write_text(sidecar_documents()["ConfigMap"]["data"]["config.toml"])
    return load_config(path)


def test_the_sidecar_runs_as_the_images_user_on_a_read_only_root_filesystem_without_privileges() -> None:
    security = funnelsync_container()["securityContext"]
    uid, gid = IMAGE.user()
    assert security["runAsNonRoot"] is True and pod_spec()["securityContext"]["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod_spec()["securityContext"]["fsGroup"] == gid  # so the image's user can write the volume


def test_the_sidecar_mounts_the_config_the_state_and_a_tmpfs_where_the_image_looks_for_them() -> None:
    image_env = IMAGE.env()
    found = mounts()
    config_folder, config_name = os.path.split(image_env["FUNNELSYNC_CONFIG"])
    config_map = sidecar_documents()["ConfigMap"]
    assert found[config_folder]["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_name in config_map["data"]
    [state_folder] = json.loads(IMAGE.args("VOLUME")[0])
    claim = found[state_folder]["persistentVolumeClaim"]["claimName"]
    assert claim == sidecar_documents()["PersistentVolumeClaim"]["metadata"]["name"]
    state_file = make_url(container_env()["FUNNELSYNC_STATE_URL"]["value"]).database or ""
    assert os.path.dirname(state_file) == state_folder
    assert "emptyDir" in found[image_env["TMPDIR"]]
    [config_mount] = [m for m in funnelsync_container()["volumeMounts"] if m["mountPath"] == config_folder]
    assert config_mount["readOnly"] is True


def test_the_sidecar_takes_the_token_from_a_secret_under_the_name_its_config_reads(sidecar_config: Config) -> None:
    env = container_env()
    token = env[sidecar_config.hubspot.token_env]
    assert "value" not in token and token["valueFrom"]["secretKeyRef"]["name"]
    assert "value" not in env["FUNNELSYNC_SOURCE_URL"], "a source URL carries its password: from a Secret"
    assert sidecar_config.hubspot.base_url == "https://api.hubapi.com"


def test_the_sidecar_is_given_longer_to_stop_than_funnelsync_takes(sidecar_config: Config) -> None:
    assert pod_spec()["terminationGracePeriodSeconds"] > sidecar_config.daemon.stop_grace_seconds


def test_the_sidecar_probes_and_scrapes_the_daemons_port() -> None:
    container = funnelsync_container()
    http = container_env()["FUNNELSYNC_HTTP"]["value"]
    host, _, port = http.rpartition(":")
    assert host == "0.0.0.0"  # reachable by the kubelet, not only from inside the pod
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == int(port)
    annotations = sidecar_documents()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == port and annotations["prometheus.io/path"] == "/metrics"


def _bytes(quantity: str) -> int:
    """A Kubernetes quantity of memory (`384Mi`) in bytes."""
    found = re.fullmatch(r"(\d+)([KMG]i?)?", quantity)
    assert found, quantity
    scale = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(found[1]) * scale[found[2]]


def test_the_sidecar_memory_holds_the_peak_the_benchmarks_measured() -> None:
    benchmarks = re.search(r"peak RSS < (\d+) MB met \((\d+) MB\)", (ROOT / "BENCHMARKS.md").read_text())
    assert benchmarks, "BENCHMARKS.md no longer says the peak memory of a sync of 100,000 contacts"
    target, measured = int(benchmarks[1]) * 10**6, int(benchmarks[2]) * 10**6
    resources = funnelsync_container()["resources"]
    assert _bytes(resources["limits"]["memory"]) >= target
    assert measured <= _bytes(resources["requests"]["memory"]) <= _bytes(resources["limits"]["memory"])


# -- compose ----------------------------------------------------------------------------------

def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def interpolated(value: str) -> str:
    """As compose fills `${VAR:?message}` from the environment or deploy/.env."""
    return _VARIABLE.sub(lambda match: DOT_ENV[match.group(1)], value)


def test_compose_runs_funnelsync_in_the_sandboxs_network_so_that_its_base_url_is_loopback() -> None:
    found = services()
    assert set(found) >= {"postgres", "sandbox", "funnelsync"}
    assert found["funnelsync"]["network_mode"] == "service:sandbox"
    command = found["sandbox"]["command"]
    sandbox_options = {opt for param in cli.commands["sandbox"].params for opt in param.opts}
    assert {word for word in command if word.startswith("--")} <= sandbox_options
    base_url = urlsplit(load_config(DEPLOY_CONFIG).hubspot.base_url)
    assert base_url.hostname == "127.0.0.1" and base_url.port == int(command[command.index("--port") + 1])
    published = {p.rsplit(":", 1)[1] for p in found["sandbox"]["ports"]}
    assert {str(base_url.port), IMAGE.env()["FUNNELSYNC_HTTP"].rpartition(":")[2]} <= published


def test_compose_takes_the_password_and_the_token_from_the_environment_only() -> None:
    found = services()
    config = load_config(DEPLOY_CONFIG)
    token_env = found["funnelsync"]["environment"][config.hubspot.token_env]
    assert token_env == found["sandbox"]["environment"]["FUNNELSYNC_SANDBOX_TOKEN"]
    assert re.fullmatch(r"\$\{SANDBOX_TOKEN:\?[^}]+\}", token_env)
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", found["postgres"]["environment"]["POSTGRES_PASSWORD"])
    written = found["funnelsync"]["environment"]["FUNNELSYNC_STATE_URL"]
    assert re.search(r"://\w+:\$\{POSTGRES_PASSWORD:\?[^}]+\}@", written), "the password is the variable's"
    state_url = make_url(interpolated(written))
    postgres = found["postgres"]["environment"]
    assert (state_url.host, state_url.username, state_url.database) == \
        ("postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert state_url.password == DOT_ENV["POSTGRES_PASSWORD"]
    assert "/deploy/.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_compose_gives_funnelsync_longer_to_stop_than_it_takes() -> None:
    grace = services()["funnelsync"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > load_config(DEPLOY_CONFIG).daemon.stop_grace_seconds


class Volumes:
    """compose's named volumes as folders: a container path of a service -> where it is here."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def host_path(self, service: str, container_path: str) -> str:
        for volume in services()[service].get("volumes", []):
            source, target = volume.split(":")[:2]
            if container_path == target or container_path.startswith(target + "/"):
                here = (ROOT / "deploy" / source).resolve() if source.startswith(".") else self.folder / source
                return str(here) + container_path.removeprefix(target)
        raise AssertionError(f"{service} mounts nothing at {container_path}")


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _funnelsync(*args: str) -> list[str]:
    return [sys.executable, "-m", "funnelsync", *args]


def _run_demo_data(service: dict[str, Any], volumes: Volumes, env: dict[str, str]) -> None:
    """The demo-data service: its entrypoint, writing into its volume."""
    *python, code = service["entrypoint"]
    [written_to] = re.findall(r"'(/[^']+)'", code)
    (volumes.folder / "demo-data").mkdir(parents=True)
    code = code.replace(written_to, volumes.host_path("demo-data", written_to))
    subprocess.run([sys.executable, *python[1:], code], check=True, env=env, timeout=120)


def _mounted_config(volumes: Volumes, path: Path, sandbox_port: int) -> tuple[Path, Path]:
    """deploy/config.toml as the services mount it: its source where funnelsync's mount of the
    demo data is, its sandbox on this test's port. Returns it and the analytics database."""
    config = load_config(DEPLOY_CONFIG)
    assert isinstance(config.source, SqlSource)
    source = make_url(config.source.url).database or ""
    analytics = Path(volumes.host_path("funnelsync", source))
    text = DEPLOY_CONFIG.read_text().replace(source, str(analytics))
    path.write_text(text.replace(config.hubspot.base_url, f"http://127.0.0.1:{sandbox_port}"))
    return path, analytics


@pytest.mark.slow
def test_the_compose_services_sync_the_demo_data_into_the_sandbox_with_a_postgresql_state(
    tmp_path: Path, postgres_url: str
) -> None:
    found = services()
    volumes = Volumes(tmp_path / "volumes")
    base = {k: v for k, v in os.environ.items() if not k.startswith("FUNNELSYNC_")}
    _run_demo_data(found["demo-data"], volumes, base)
    sandbox_port = free_port()
    config_path, analytics = _mounted_config(volumes, tmp_path / "config.toml", sandbox_port)

    command = found["sandbox"]["command"]
    command[command.index("--port") + 1] = str(sandbox_port)
    command[command.index("--host") + 1] = "127.0.0.1"  # the test's machine: loopback only
    sandbox_env = {**base, **{k: interpolated(v) for k, v in found["sandbox"]["environment"].items()}}
    http_port = free_port()
    daemon_env = {**base, **{k: interpolated(v) for k, v in found["funnelsync"]["environment"].items()},
                  "FUNNELSYNC_STATE_URL": postgres_url,  # this test's server stands for the postgres service
                  "FUNNELSYNC_HTTP": f"127.0.0.1:{http_port}"}
    with _process(_funnelsync("-c", str(config_path), *command), sandbox_env, tmp_path / "sandbox.log") as sandbox:
        wait_for(lambda: http_get(f"http://127.0.0.1:{sandbox_port}/_sandbox/contacts")[0] == 200)
        validated = subprocess.run(_funnelsync("-c", str(config_path), "validate"), env=daemon_env,
                                   capture_output=True, text=True, timeout=120)
        assert validated.returncode == 0, validated.stdout + validated.stderr
        with _process(_funnelsync("-c", str(config_path), *found["funnelsync"]["command"]), daemon_env,
                      tmp_path / "funnelsync.log") as daemon:
            state = StateStore(postgres_url)
            try:
                wait_for(lambda: bool(state.recent_runs()) and state.recent_runs()[0].outcome == RunOutcome.OK,
                         timeout=240)
                written = state.contact_count()
            finally:
                state.close()
            status, contacts = http_get(f"http://127.0.0.1:{sandbox_port}/_sandbox/contacts")
            assert status == 200 and len(json.loads(contacts)) == written == _developers(analytics)
            container = funnelsync_container()  # the sidecar's probes ask this daemon what they ask
            for probe in ("livenessProbe", "readinessProbe"):
                path = container[probe]["httpGet"]["path"]
                assert http_get(f"http://127.0.0.1:{http_port}{path}")[0] == 200, path
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        sandbox.send_signal(signal.SIGINT)
        sandbox.wait(timeout=30)
    logs = (tmp_path / "funnelsync.log").read_text()
    assert TOKEN not in logs


def _developers(analytics: Path) -> int:
    with contextlib.closing(sqlite3.connect(analytics)) as db:
        [(count,)] = db.execute("SELECT count(*) FROM usage").fetchall()
    return int(count)
