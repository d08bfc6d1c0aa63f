"""A throwaway PostgreSQL server for the tests: one cluster per test session, one database per test.

`PostgresCluster` runs `initdb` and `pg_ctl` from the installed server binaries (Debian's
`postgresql` package; `make install` puts it there via scripts/ensure-postgres.sh) in a fresh
temporary directory, listening on 127.0.0.1 at a free port and on a Unix socket in that directory,
with trust authentication and without fsync. As root (CI), the binaries run as the `postgres`
system user, since initdb refuses to run as root. The cluster is stopped with `pg_ctl stop -m
immediate` and its directory removed at session end; a cluster left behind by a killed run is
reaped by the next one.

If the server cannot be started, the fixtures fail with the reason (the command's output and the
tail of the server log); they never skip.

Fixtures (import them into tests/conftest.py):

    postgres_cluster   session: the running PostgresCluster
    postgres_url       a fresh, empty database per test, as a SQLAlchemy URL
    state_url          parametrized [sqlite, postgresql]: a state database URL on either backend

PYTEST_DONT_REWRITE: this module is both imported (by conftest) and named as a plugin (by
test_postgres_fixture.py); the marker keeps pytest from warning that it cannot rewrite it.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "PostgresCluster",
    "PostgresUnavailable",
    "find_bindir",
    "postgres_cluster",
    "postgres_url",
    "reap_leftover_clusters",
    "state_url",
]

DIR_PREFIX = "funnelsync-pg-"
OWNER_FILE = "owner.pid"
SERVER_USER = "postgres"  # the system user the server runs as when the tests run as root
BINDIR_ENV = "FUNNELSYNC_TEST_PG_BINDIR"  # optional: where initdb and pg_ctl are
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_LOG_TAIL_LINES = 40


class PostgresUnavailable(RuntimeError):
    """The throwaway server could not be set up; the message says why."""


def find_bindir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The directory of the server binaries: `explicit` if given, else $FUNNELSYNC_TEST_PG_BINDIR,
    else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin; the first that holds
    both initdb and pg_ctl."""
    if explicit is None and os.environ.get(BINDIR_ENV):
        explicit = os.environ[BINDIR_ENV]
    candidates: list[str] = [os.fspath(explicit)] if explicit is not None else []
    pg_config = shutil.which("pg_config") if explicit is None else None
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(out.stdout.strip())

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.name
        return (
            tuple(int(n) for n in part.split(".")) if re.fullmatch(r"\d+(\.\d+)*", part) else (0,)
        )

    if explicit is None:
        candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for candidate in candidates:
        bindir = Path(candidate)
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb and pg_ctl) found; looked in: "
        + (", ".join(candidates) or "(pg_config not on PATH, no /usr/lib/postgresql/*/bin)")
        + ". Install them with `make install` (scripts/ensure-postgres.sh), i.e. Debian's "
        f"`postgresql` package, or point ${BINDIR_ENV} at them"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


def _traversable_by_others(path: Path) -> bool:
    """Whether another user can reach entries under `path` (every ancestor has o+x)."""
    for part in [path, *path.parents]:
        try:
            if not part.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


class PostgresCluster:
    """One throwaway PostgreSQL server: `start()`, `new_database(name)` -> URL, `stop()`."""

    def __init__(
        self,
        *,
        bindir: str | os.PathLike[str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._bindir = Path(bindir) if bindir is not None else None
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self.startup_timeout = startup_timeout
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "timezone": "UTC",  # the same on every machine, whatever its /etc/localtime
            **(settings or {}),
        }
        self.port: int | None = None
        self.directory: Path | None = None  # holds data/, server.log and the Unix socket
        self.startup_seconds: float | None = None
        self.server_version_num: int | None = None
        self._names = itertools.count(1)
        self._as: pwd.struct_passwd | None = None  # whom the binaries run as, when not ourselves

    # -- paths -----------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self.directory is not None, "the cluster is not started"
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        assert self.directory is not None, "the cluster is not started"
        return self.directory / "server.log"

    @property
    def socket_dir(self) -> Path:
        assert self.directory is not None, "the cluster is not started"
        return self.directory

    @property
    def running(self) -> bool:
        return self.port is not None

    # -- starting and stopping -------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        """initdb + pg_ctl start + a connection; PostgresUnavailable with the reason on failure."""
        if self.running:
            return self
        began = time.monotonic()
        bindir = self._bindir = find_bindir(self._bindir)
        self._as = self._server_user()
        base = self._pick_base_dir()
        reap_leftover_clusters(base)
        self.directory = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=base))
        (self.directory / OWNER_FILE).write_text(f"{os.getpid()}\n")
        atexit.register(self._stop_quietly)
        try:
            if self._as is not None:
                os.chown(self.directory, self._as.pw_uid, self._as.pw_gid)
            self._initdb(bindir)
            self._start_server(bindir, began + self.startup_timeout)
            self._wait_until_ready(began + self.startup_timeout)
        except BaseException:
            self._stop_quietly()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the server at once (-m immediate) and remove its directory; safe to call twice."""
        if self.directory is None:
            return
        directory, self.directory, self.port = self.directory, None, None
        with contextlib.suppress(Exception):
            atexit.unregister(self._stop_quietly)
        problem = _stop_data_dir(self._bindir_or_none(), directory / "data", self._as)
        shutil.rmtree(directory, ignore_errors=True)
        if problem:
            raise PostgresUnavailable(
                f"could not stop the test PostgreSQL server in {directory}: {problem}"
            )

    def _stop_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bindir_or_none(self) -> Path | None:
        try:
            return find_bindir(self._bindir)
        except PostgresUnavailable:
            return None

    def _server_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"the tests run as root, initdb refuses to run as root, and there is no "
                f"`{SERVER_USER}` system user to run it as (Debian's postgresql package creates it)"
            ) from None

    def _pick_base_dir(self) -> Path:
        if self._base_dir is not None:
            return self._base_dir
        base = Path(tempfile.gettempdir())
        if self._as is not None and not _traversable_by_others(base):
            base = Path("/tmp")  # the server user must reach its directory
        return base

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return _run_as(self._as, argv, timeout=timeout, cwd=self.directory)

    def _initdb(self, bindir: Path) -> None:
        argv = [
            str(bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        try:
            done = self._run(argv, timeout=max(self.startup_timeout * 2, 60))
        except subprocess.TimeoutExpired as exc:
            raise PostgresUnavailable(
                f"initdb did not finish in {exc.timeout:.0f}s: {argv}"
            ) from None
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed (exit {done.returncode}) running as {self._who()}:\n"
                f"$ {' '.join(argv)}\n{done.stdout.strip()}"
            )

    def _start_server(self, bindir: Path, deadline: float) -> None:
        conf = self.data_dir / "postgresql.conf"
        # A Unix socket beside the data, unless its path would be too long for one (~107 bytes).
        socket_dir = str(self.socket_dir) if len(str(self.socket_dir)) < 80 else ""
        settings = dict(self.settings, unix_socket_directories=socket_dir)
        for attempt in range(1, 6):
            self.port = _free_port()
            # Appended, so these win over initdb's defaults; the port again on each attempt.
            with conf.open("a") as out:
                out.write(f"\n# tests/postgres.py, attempt {attempt}\nport = {self.port}\n")
                for name, value in settings.items():
                    quoted = "'" + str(value).replace("'", "''") + "'"
                    out.write(f"{name} = {quoted}\n")
            wait = max(5, int(deadline - time.monotonic()))
            argv = [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(wait),
                "start",
            ]
            try:
                done = self._run(argv, timeout=wait + 15)
            except subprocess.TimeoutExpired:
                done = subprocess.CompletedProcess(
                    argv, -1, f"pg_ctl did not return in {wait + 15}s", ""
                )
            if done.returncode == 0:
                return
            log = _tail(self.log_file)
            if "could not bind" in log and "already in use" in log and time.monotonic() < deadline:
                # Another process took the port between our probe and the bind: a new port.
                _stop_data_dir(bindir, self.data_dir, self._as)
                self.log_file.unlink(missing_ok=True)
                continue
            raise PostgresUnavailable(
                f"pg_ctl could not start the server (exit {done.returncode}) as {self._who()} on "
                f"127.0.0.1:{self.port}:\n$ {' '.join(argv)}\n{done.stdout.strip()}\n"
                f"--- last lines of {self.log_file} ---\n{log}"
            )
        raise PostgresUnavailable(
            f"no free port to start PostgreSQL on after {attempt} tries:\n{_tail(self.log_file)}"
        )

    def _wait_until_ready(self, deadline: float) -> None:
        last: Exception | None = None
        while True:
            try:
                with self._admin() as conn:
                    row = conn.execute(
                        "SELECT current_setting('server_version_num')::int"
                    ).fetchone()
                    assert row is not None
                    self.server_version_num = int(row[0])
                    return
            except psycopg.OperationalError as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise PostgresUnavailable(
                    f"the server on 127.0.0.1:{self.port} did not accept connections within "
                    f"{self.startup_timeout:.0f}s: {last}\n--- last lines of {self.log_file} ---\n"
                    f"{_tail(self.log_file)}"
                )
            time.sleep(0.1)

    def _who(self) -> str:
        return self._as.pw_name if self._as is not None else f"uid {os.geteuid()}"

    # -- databases -------------------------------------------------------------------------------

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        assert self.port is not None, "the cluster is not started"
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def url(self, database: str = "postgres") -> str:
        assert self.port is not None, "the cluster is not started"
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def unique_name(self, prefix: str = "t") -> str:
        return f"{prefix}_{next(self._names)}"

    def new_database(self, name: str) -> str:
        """Create an empty database (from template0) and return its SQLAlchemy URL."""
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"database name {name!r}: use lowercase letters, digits and _ (max 63)"
            )
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
        if (self.server_version_num or 0) >= 150000:
            # Copying template0's few MB of files is a little quicker than WAL-logging them.
            statement = sql.SQL("{} STRATEGY FILE_COPY").format(statement)
        with self._admin() as conn:
            conn.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any connections a test left open to it."""
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _run_as(
    user: pwd.struct_passwd | None, argv: list[str], *, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a server binary as `user` (None: ourselves), in its own session (so a Ctrl-C to the
    test run does not reach the server before the fixture stops it), output captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    extra: dict[str, object] = {}
    if user is not None:
        env.update(HOME=str(cwd or "/"), USER=user.pw_name, LOGNAME=user.pw_name)
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.run(
        argv,
        cwd=cwd or "/",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        start_new_session=True,
        check=False,
        **extra,  # type: ignore[arg-type]
    )


def _stop_data_dir(bindir: Path | None, data_dir: Path, user: pwd.struct_passwd | None) -> str:
    """Stop the server of `data_dir` if one runs; '' when none runs any more, else the problem."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return ""
    output = ""
    if bindir is not None:
        argv = [
            str(bindir / "pg_ctl"),
            "-D",
            str(data_dir),
            "-m",
            "immediate",
            "-w",
            "-t",
            "30",
            "stop",
        ]
        try:
            done = _run_as(user, argv, timeout=45, cwd=data_dir.parent)
            output = done.stdout.strip()
            if done.returncode == 0 or not pid_file.exists():
                return ""
        except (OSError, subprocess.SubprocessError) as exc:
            output = str(exc)
    # pg_ctl could not do it: SIGQUIT is an immediate shutdown, then SIGKILL.
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return ""
    if not _looks_like_postgres(pid):
        return ""
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        for _ in range(50):
            if not _pid_alive(pid):
                return ""
            time.sleep(0.1)
    return f"postmaster pid {pid} still runs; pg_ctl stop said: {output or '(nothing)'}"


def _looks_like_postgres(pid: int) -> bool:
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _pid_alive(pid) and not Path("/proc").is_dir()


def reap_leftover_clusters(base: str | os.PathLike[str] | None = None) -> list[Path]:
    """Stop and remove clusters whose test run died without cleaning up (killed, SIGKILL, power
    cut): a `funnelsync-pg-*` directory whose owner process no longer exists. Returns them."""
    base = Path(base) if base is not None else Path(tempfile.gettempdir())
    reaped: list[Path] = []
    bindir: Path | None = None
    for directory in sorted(base.glob(DIR_PREFIX + "*")):
        try:
            owner = int((directory / OWNER_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            # No owner file (yet): being set up right now, or very old; only reap the latter.
            try:
                if time.time() - directory.stat().st_mtime < 3600:
                    continue
            except OSError:
                continue
            owner = 0
        if owner and _pid_alive(owner):
            continue
        data_dir = directory / "data"
        try:
            stat = data_dir.stat() if data_dir.exists() else directory.stat()
        except OSError:
            continue
        if os.geteuid() == 0:
            user = pwd.getpwuid(stat.st_uid) if stat.st_uid != 0 else None
        elif stat.st_uid == os.geteuid():
            user = None
        else:
            continue  # another user's: not ours to stop
        if bindir is None:
            with contextlib.suppress(PostgresUnavailable):
                bindir = find_bindir()
        with contextlib.suppress(Exception):
            _stop_data_dir(bindir, data_dir, user)
        shutil.rmtree(directory, ignore_errors=True)
        reaped.append(directory)
    return reaped


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the whole session; fails (never skips) when it cannot start."""
    cluster = PostgresCluster()
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database for this test: postgresql+psycopg://postgres@127.0.0.1:PORT/t_N."""
    name = postgres_cluster.unique_name()
    url = postgres_cluster.new_database(name)
    yield url
    postgres_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A state database URL on each backend: a SQLite file in tmp_path, or a fresh PostgreSQL
    database (the server starts only when a postgresql case runs)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state_url.db'}"
    return str(request.getfixturevalue("postgres_url"))
