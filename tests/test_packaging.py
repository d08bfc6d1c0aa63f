"""The package as the Dockerfile installs it (`pip install .`), and the image's steps run without Docker.

There is no Docker engine where the tests run, so the image test plays the Dockerfile's steps on
this machine: the files its COPY lines name, installed with its `pip install .` (a wheel, as pip
builds one) into a fresh venv, then `funnelsync validate` and `funnelsync run` (its ENTRYPOINT and
CMD) with its ENV (container paths moved under a folder that stands for the container's root), as
its USER when the tests run as root, with every folder read-only but the state volume and /tmp
(the tmpfs the README names). The fresh venv lends the third-party dependencies from the test
venv (a `.pth` file) so that no package index is needed; funnelsync itself is the installed wheel.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from funnelsync.cli.demo import seed_enrollment_targets
from funnelsync.config import load_config
from funnelsync.sandbox import SandboxServer
from funnelsync.sandbox.demo_data import build_demo_database
from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from tests.conftest import TOKEN
from tests.test_cli import free_port, http_get, wait_for

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

# The container paths the Dockerfile's ENV names, moved under the stand-in root by the image test.
CONTAINER_PATHS = ("/var/lib/funnelsync", "/etc/funnelsync", "/tmp")
UPSERT_PATHS = ("/crm/v3/objects/contacts/batch/upsert", "/crm/objects/*/contacts/batch/upsert")
DEVELOPERS = 300
IN_FLIGHT = 2  # contact batches of 100: two in flight leave the third to send after a stop


@dataclass(frozen=True)
class Dockerfile:
    instructions: list[tuple[str, str]]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        logical = re.sub(r"\\\n", " ", path.read_text())
        found = []
        for line in logical.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                word, _, rest = line.strip().partition(" ")
                found.append((word.upper(), rest.strip()))
        return cls(found)

    def args(self, instruction: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == instruction]

    def env(self) -> dict[str, str]:
        pairs = [item.split("=", 1) for rest in self.args("ENV") for item in shlex.split(rest)]
        return dict(pairs)

    def healthcheck(self) -> list[str]:
        [rest] = self.args("HEALTHCHECK")
        command: list[str] = json.loads(rest.partition(" CMD ")[2])
        return command

    def entrypoint(self) -> list[str]:
        [entrypoint] = self.args("ENTRYPOINT")
        found: list[str] = json.loads(entrypoint)
        return found

    def command(self) -> list[str]:
        [cmd] = self.args("CMD")
        return [*self.entrypoint(), *json.loads(cmd)]

    def user(self) -> tuple[int, int]:
        [user] = self.args("USER")
        uid, gid = user.split(":")
        return int(uid), int(gid)

    def copies(self) -> Iterator[tuple[list[str], str]]:
        """(sources, destination folder) of each COPY, the destination made absolute by WORKDIR."""
        workdir = "/"
        for word, rest in self.instructions:
            if word == "WORKDIR":
                workdir = rest
            elif word == "COPY":
                *sources, destination = rest.split()
                yield sources, os.path.normpath(os.path.join(workdir, destination))


def test_the_wheel_carries_the_migrations_and_the_command(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    [wheel] = tmp_path.glob("funnelsync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = {Path(n).name for n in names if "state/migrations/versions/" in n and n.endswith(".py")}
    shipped = {p.name for p in (ROOT / "funnelsync/state/migrations/versions").glob("*.py")}
    assert migrations == shipped
    assert "funnelsync/state/migrations/env.py" in names
    assert "funnelsync/py.typed" in names
    metadata = next(n for n in names if n.endswith("entry_points.txt"))
    assert "funnelsync = funnelsync.cli.commands:main" in zipfile.ZipFile(wheel).read(metadata).decode()
    assert not any(n.startswith("tests/") for n in names)


def test_the_dockerfile_runs_the_daemon_as_a_numeric_non_root_user_reachable_on_its_port() -> None:
    dockerfile = Dockerfile.read(ROOT / "Dockerfile")
    env = dockerfile.env()
    assert env["FUNNELSYNC_CONFIG"] == "/etc/funnelsync/config.toml"
    uid, gid = dockerfile.user()  # a number, which Kubernetes' runAsNonRoot can check
    assert uid != 0 and gid != 0
    assert dockerfile.command() == ["funnelsync", "run"]
    host, _, port = env["FUNNELSYNC_HTTP"].rpartition(":")
    assert host == "0.0.0.0" and dockerfile.args("EXPOSE") == [port]
    assert dockerfile.args("VOLUME") == ['["/var/lib/funnelsync"]']
    assert env["FUNNELSYNC_STATE_URL"].startswith("sqlite:////var/lib/funnelsync/")
    assert env["HOME"] == "/var/lib/funnelsync" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "/healthz" in " ".join(dockerfile.healthcheck())
    readme = (ROOT / "README.md").read_text()
    assert "/etc/funnelsync/config.toml" in readme
    assert "stop_grace_seconds" in readme and "terminationGracePeriodSeconds" in readme


class ImageRoot:
    """A folder standing for the container's root: the image's files, its venv, its volumes."""

    def __init__(self, dockerfile: Dockerfile) -> None:
        self.dockerfile = dockerfile
        # the image's user must be able to reach it: not below pytest's tmp_path, which is 0700
        self.path = Path(tempfile.mkdtemp(prefix="funnelsync-image-"))
        self.path.chmod(0o755)
        self.venv = self.path / "usr/local"
        self.state = self.path / "var/lib/funnelsync"
        self.tmp = self.path / "tmp"
        self.uid, self.gid = dockerfile.user()

    def inside(self, value: str) -> str:
        """A value of the Dockerfile's ENV with its container paths moved under this root."""
        pattern = "|".join(re.escape(p) for p in CONTAINER_PATHS)
        return re.sub(rf"(?<![\w.])({pattern})(?=/|$)", lambda m: f"{self.path}{m.group(1)}", value)

    def build(self, wheel_dir: Path) -> None:
        for sources, destination in self.dockerfile.copies():
            target = self.path / destination.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            for source in sources:  # as COPY does: a folder's contents into the destination
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(ROOT / source, target / Path(source).name)
        [install] = [rest for rest in self.dockerfile.args("RUN") if "pip install ." in rest]
        built_from = self.path / "opt/funnelsync"
        # `pip install .` builds a wheel and installs it: the same two steps, offline
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(wheel_dir), str(built_from)], check=True, capture_output=True)
        [wheel] = wheel_dir.glob("funnelsync-*.whl")
        subprocess.run([self._python(), "-m", "venv", "--without-pip", str(self.venv)], check=True,
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(self.venv / "bin/python"), "install", "--quiet",
                        "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                       env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
        assert "rm -rf /opt/funnelsync/build" in install
        site = Path(sysconfig.get_paths(vars={"base": str(self.venv), "platbase": str(self.venv)})["purelib"])
        # after the install: pip must not see (and replace) the test venv's funnelsync through it
        (site / "zz_lent_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        self.site_packages = site

    def _python(self) -> str:
        """A Python of this version that the image's user can run (pyenv's may sit in /root, 0700)."""
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        candidates = [os.path.realpath(sys.executable), shutil.which(version), f"/usr/bin/{version}"]
        for candidate in filter(None, candidates):
            if os.geteuid() != 0 or _runnable_by_others(Path(candidate)):
                return candidate
        pytest.fail(f"no {version} that user {self.uid} can run (tried {', '.join(filter(None, candidates))})")

    def add_volumes(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        self.tmp.chmod(0o1777)
        if os.geteuid() == 0:
            os.chown(self.state, self.uid, self.gid)
        else:
            self.state.chmod(0o755)

    def make_read_only(self) -> None:
        """Every folder but the state volume and /tmp, as a read-only root filesystem."""
        for folder, dirs, files in os.walk(self.path):
            here = Path(folder)
            if here in (self.state, self.tmp):
                dirs.clear()
                continue
            for name in files:
                file = here / name
                if not file.is_symlink():
                    file.chmod(file.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
            here.chmod(0o555)

    def remove(self) -> None:
        for folder, _, _ in os.walk(self.path):
            Path(folder).chmod(0o755)
        shutil.rmtree(self.path, ignore_errors=True)

    def as_user(self) -> dict[str, Any]:
        """Popen's arguments to run as the image's USER (as root), else as this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if os.geteuid() == 0 else {}


def _runnable_by_others(path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real.exists() and all(p.stat().st_mode & stat.S_IXOTH for p in [real, *real.parents])


@pytest.fixture
def image() -> Iterator[ImageRoot]:
    root = ImageRoot(Dockerfile.read(ROOT / "Dockerfile"))
    try:
        yield root
    finally:
        root.remove()


def _image_env(image: ImageRoot, http_port: int) -> dict[str, str]:
    env = {name: image.inside(value) for name, value in image.dockerfile.env().items()}
    host = env["FUNNELSYNC_HTTP"].rpartition(":")[0]
    return {
        "PATH": f"{image.venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8", **env,
        "FUNNELSYNC_HTTP": f"{host}:{http_port}",  # the Dockerfile's host; a free port here
        "FUNNELSYNC_SOURCE_URL": f"sqlite:///{image.path / 'srv/demo/analytics.db'}",
        "HUBSPOT_ACCESS_TOKEN": TOKEN,
    }


def _config_for(image: ImageRoot, sandbox: SandboxServer, *, concurrency: int) -> Path:
    """deploy/config.toml, the container's config, pointed at this sandbox's port, with
    `concurrency` requests in flight."""
    text = (ROOT / "deploy/config.toml").read_text().replace("http://127.0.0.1:8765", sandbox.url)
    assert "\n[hubspot]\n" in text, "deploy/config.toml has a [hubspot] table to set concurrency in"
    text = text.replace("\n[hubspot]\n", f"\n[hubspot]\nconcurrency = {concurrency}\n", 1)
    config = image.path / image.dockerfile.env()["FUNNELSYNC_CONFIG"].lstrip("/")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return config


def _run(image: ImageRoot, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=env, cwd=image.state, capture_output=True, text=True, timeout=120,
                          **image.as_user())


@contextlib.contextmanager
def _daemon(image: ImageRoot, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The image's ENTRYPOINT and CMD, as its USER, in its WORKDIR (the state volume)."""
    with log_path.open("w") as log:
        process = subprocess.Popen(image.dockerfile.command(), env=env, cwd=image.state, stdout=log,
                                   stderr=subprocess.STDOUT, **image.as_user())
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def test_the_image_runs_the_daemon_as_its_user_writing_only_the_state_volume_and_tmp(
    image: ImageRoot, sandbox: SandboxServer, tmp_path: Path
) -> None:
    image.build(tmp_path / "wheel")
    config = _config_for(image, sandbox, concurrency=IN_FLIGHT)
    build_demo_database(image.path / "srv/demo/analytics.db", developers=DEVELOPERS)
    seed_enrollment_targets(sandbox, load_config(config))
    image.add_volumes()
    image.make_read_only()
    env = _image_env(image, free_port())
    port = int(env["FUNNELSYNC_HTTP"].rpartition(":")[2])
    python = str(image.venv / "bin/python")

    # the stand-in holds: the image's user can write the volume and /tmp, and nothing else
    for place, writable in [(image.state, True), (image.tmp, True), (config.parent, False),
                            (image.site_packages, False), (image.path / "opt/funnelsync", False), (image.path, False)]:
        tried = _run(image, env, python, "-c", "import sys; open(sys.argv[1] + '/probe', 'x')", str(place))
        assert (tried.returncode == 0) is writable, (place, tried.stderr)
        if writable:
            (place / "probe").unlink()
    where = _run(image, env, python, "-c", "import funnelsync; print(funnelsync.__file__)")
    assert where.stdout.startswith(str(image.site_packages)), "the installed wheel, not the checkout"
    assert list((image.site_packages / "funnelsync/__pycache__").glob("*.pyc")), "bytecode compiled at install"

    validated = _run(image, env, *image.dockerfile.entrypoint(), "validate")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "validate: ok" in validated.stdout

    # SIGTERM while the answers to the batches in flight are on their way: they are waited for
    # and recorded, and no batch goes after them (every answer comes 3 s late, so the next batch
    # could go only 3 s after the first was applied)
    for path in UPSERT_PATHS:
        sandbox.inject_fault(method="POST", path_prefix=path, kind="late", delay=3.0, count=DEVELOPERS)
    with _daemon(image, env, tmp_path / "first.log") as daemon:
        wait_for(lambda: len(sandbox.store.contacts_by_email()) > 0)  # applied, not yet answered
        assert _stop(daemon) == 0
    sandbox.faults.clear()
    state_file = Path(env["FUNNELSYNC_STATE_URL"].removeprefix("sqlite:///"))
    assert state_file.parent == image.state
    written = len(sandbox.store.contacts_by_email())
    assert 0 < written <= IN_FLIGHT * 100 < DEVELOPERS
    state = StateStore(f"sqlite:///{state_file}")
    try:
        assert state.contact_count() == written
        assert state.recent_runs()[0].outcome == RunOutcome.STOPPED

        # started again, it carries on; the HEALTHCHECK passes on the daemon's port
        with _daemon(image, env, tmp_path / "second.log") as daemon:
            wait_for(lambda: state.recent_runs()[0].outcome == RunOutcome.OK, timeout=90)
            assert len(sandbox.store.contacts_by_email()) == DEVELOPERS
            wait_for(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200)
            healthcheck = _run(image, env, *image.dockerfile.healthcheck())
            assert healthcheck.returncode == 0, healthcheck.stderr
            assert _stop(daemon) == 0
    finally:
        state.close()
    assert _run(image, env, *image.dockerfile.healthcheck()).returncode != 0, "the check fails with no daemon"
    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert "Read-only file system" not in logs and "Permission denied" not in logs
    assert TOKEN not in logs
