"""The package as the Dockerfile installs it (`pip install .`): everything it needs at run time is in it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


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


def test_the_dockerfile_runs_the_daemon_as_a_non_root_user_with_the_documented_config_path() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FUNNELSYNC_CONFIG=/etc/funnelsync/config.toml" in dockerfile
    assert "USER funnelsync" in dockerfile
    assert 'ENTRYPOINT ["funnelsync"]' in dockerfile and 'CMD ["run"]' in dockerfile
    assert "/etc/funnelsync/config.toml" in (ROOT / "README.md").read_text()
