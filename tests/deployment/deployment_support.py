"""The real ``openft serve`` run as an ordinary service user, with two organizations' keys.

Run as root (as CI is), the tier creates the system user ``openft-svc`` (once; later runs reuse it)
and starts the server with ``setpriv`` as that user, its ``OPENFT_HOME`` a directory the user owns.
Run as an ordinary user, the server simply runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from openft.store import open_store
from openft.store.keys import KeyStore

SERVICE_USER = "openft-svc"
AS_ROOT = os.geteuid() == 0
HERE = Path(__file__).parent
NO_NAMESPACES = HERE / "no_namespaces.py"
POSTGRES_ADMIN_URL = os.environ.get("OPENFT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@dataclass
class ServiceServer:
    base_url: str
    port: int
    home: Path
    log: Path
    process: subprocess.Popen[bytes]
    keys: dict[str, str] = field(default_factory=dict)
    """Organization id -> its API key."""

    def client(self, organization: str) -> OpenAI:
        return OpenAI(base_url=self.base_url, api_key=self.keys[organization], max_retries=0, timeout=120)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def healthy(self) -> bool:
        return httpx.get(self.base_url.removesuffix("/v1") + "/health", timeout=30).status_code == 200


def service_user() -> pwd.struct_passwd:
    """The ordinary user the server runs as: ``openft-svc`` (created if missing) as root, else oneself."""
    if not AS_ROOT:
        return pwd.getpwuid(os.getuid())
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        home = f"/var/lib/{SERVICE_USER}"
        options = ["--system", "--create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin"]
        subprocess.run(["useradd", *options, SERVICE_USER], check=True)
        return pwd.getpwnam(SERVICE_USER)


def _needs_traverse(user: pwd.struct_passwd) -> list[Path]:
    """Directories above the interpreter, the virtual environment and the code that ``user`` cannot pass."""
    import openft

    targets = [Path(os.path.realpath(sys.executable)), Path(sys.prefix), Path(openft.__file__).parent, HERE]
    blocked: list[Path] = []
    for target in targets:
        for directory in target.parents:
            mode = directory.stat()
            if not mode.st_mode & stat.S_IXOTH and mode.st_uid != user.pw_uid and directory not in blocked:
                blocked.append(directory)
    return blocked


@contextmanager
def traverse_granted(user: pwd.struct_passwd) -> Iterator[None]:
    """Let ``user`` pass through the directories above the interpreter and the code, for the test only.

    The venv's python links into /root/.pyenv and /root is mode 0700, so an ordinary user cannot start
    it. The narrowest grant is an ACL for that one user to traverse (not list) /root; without setfacl,
    o+x on the directories that lack it. Either is undone afterwards. Nothing under them becomes
    readable that was not already (files inside keep their own modes).
    """
    blocked = _needs_traverse(user) if AS_ROOT else []
    undo: list[Callable[[], object]] = []
    setfacl = shutil.which("setfacl")
    for directory in blocked:
        if setfacl:
            subprocess.run([setfacl, "-m", f"u:{user.pw_name}:x", str(directory)], check=True)
            undo.append(lambda d=directory: subprocess.run([setfacl, "-x", f"u:{user.pw_name}", str(d)], check=False))
        else:
            mode = stat.S_IMODE(directory.stat().st_mode)
            directory.chmod(mode | stat.S_IXOTH)
            undo.append(lambda d=directory, m=mode: d.chmod(m))
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one module's server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"openft_deploy_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def service_home(user: pwd.struct_passwd, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh directory owned by ``user`` (mode 0700), for OPENFT_HOME."""
    parent = Path(user.pw_dir) if AS_ROOT else tmp_path_factory.mktemp("deploy")
    home = parent / f"openft-{uuid.uuid4().hex[:8]}"
    home.mkdir(mode=0o700)
    if AS_ROOT:
        os.chown(home, user.pw_uid, user.pw_gid)
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_service_user(user: pwd.struct_passwd, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` (``setpriv`` execs it, so signals reach the program itself)."""
    if not AS_ROOT:
        return argv
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--", *argv]


def service_env(user: pwd.struct_passwd, home: Path, database_url: str, **settings: str) -> dict[str, str]:
    """A service's clean environment: no variable of the test process leaks into it."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": user.pw_dir, "USER": user.pw_name}
    env |= {"OPENFT_HOME": str(home), "OPENFT_DATABASE_URL": database_url, "OPENFT_STANDBY_TRAINING_PROCESS": "false"}
    return env | {f"OPENFT_{k.upper()}": v for k, v in settings.items()}


def start_service(
    user: pwd.struct_passwd, home: Path, database_url: str, *, without_namespaces: bool = False, **settings: str
) -> ServiceServer:
    """``openft serve --no-worker`` as ``user``, with keys for ``org-alpha`` and ``org-beta``; once /health answers.

    Args:
        without_namespaces: Start it under ``no_namespaces.py``, where no namespace can be created.
        settings: More ``OPENFT_*`` settings, by their lower-case names.
    """
    store = open_store(database_url)  # the schema is created here, as the test's user
    key_store = KeyStore(store)
    keys = {org: key_store.create(org, f"proj_{org[4:]}", "deployment")[1] for org in ("org-alpha", "org-beta")}
    store.engine.dispose()
    if AS_ROOT:
        for path in (home, *home.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)
    port = _free_port()
    prefix = [sys.executable, str(NO_NAMESPACES)] if without_namespaces else []
    argv = [*prefix, sys.executable, "-m", "openft", "serve", "--no-worker", "--port", str(port)]
    log = home.parent / f"{home.name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            as_service_user(user, argv),
            env=service_env(user, home, database_url, **settings),
            cwd=user.pw_dir if AS_ROOT else home,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServiceServer(f"http://127.0.0.1:{port}/v1", port, home, log, process, keys)
    deadline = time.time() + 180  # a busy machine can take a minute to import the server
    while True:
        try:
            if server.healthy():
                return server
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError(f"openft serve did not start as {user.pw_name}:\n{server.log_text()[-3000:]}")
        time.sleep(0.25)


def stop_service(server: ServiceServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    shutil.rmtree(server.home, ignore_errors=True)
    server.log.unlink(missing_ok=True)
