"""The real service stack for one benchmark: its own PostgreSQL database, its own redis-server, gunicorn
and Celery workers started with docker-compose.yml's commands, and Django set up in this process on
the same database and broker (to enrol people and read the results).

Nothing shared is stopped or reused: the PostgreSQL server at ``BENCH_POSTGRES_URL`` (default
``postgres://postgres@127.0.0.1:5432``) gets a database ``bench_<name>_<pid>`` that is dropped
afterwards, and Redis is a private ``redis-server`` on a free port, without persistence.

``code_dir`` lets a benchmark run the web and worker processes from another checkout of the project
(``git archive <commit> | tar -x -C DIR``) to measure "before" figures with today's scripts.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
BENCH_LIMITS = {
    # One benchmark device posts hundreds of check-ins a minute; the production limits would throttle or
    # lock it out and the figures would measure refusals instead of verification.
    "API_RATE_LIMIT": "1000000/min",
    "LOCKOUT_PERSON_MAX_FAILURES": "1000000",
    "LOCKOUT_DEVICE_MAX_FAILURES": "1000000",
    # Each post has new bytes (``_scenario.new_frame``) but the same face: the near-duplicate probe check
    # would refuse it ``replayed`` (1 turns that check off; it still runs its query).
    "REPLAY_SIMILARITY_MAX": "1",
}
"""Settings every benchmark's service runs with (bench/_stack.py's processes, bench/profile_worker.py)."""
WORKER_READY_TIMEOUT_S = 240
WEB_READY_TIMEOUT_S = 90


def compose_command(service: str, code_dir: Path = REPO_ROOT) -> list[str]:
    """The exec-form command ``code_dir``'s docker-compose.yml runs for ``service``."""
    spec = yaml.safe_load((Path(code_dir) / "docker-compose.yml").read_text())
    return [str(part) for part in spec["services"][service]["command"]]


def replace_option(command: Sequence[str], option: str, value: str) -> list[str]:
    """``command`` with the value after ``option`` replaced, or the pair appended when absent."""
    result = list(command)
    if option in result:
        result[result.index(option) + 1] = value
    else:
        result += [option, value]
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A server subprocess in its own process group, logging to a file."""

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.command = list(command)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            self.command, cwd=cwd, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_logged(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log_text():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited ({self.popen.returncode}):\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.command[0]} not ready after {timeout:.0f}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60.0) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (prefork pool processes, gunicorn workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(value) for value in text)
    return children


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024.0, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def memory_mib(pid: int) -> dict[str, float]:
    """Resident (RSS), proportional (PSS) and private (USS) memory of ``pid`` in MiB.

    RSS counts every page of the shared libraries (TensorFlow's were ~490 MiB; the LiteRT worker's are
    ~90 MiB), read-only and shared by every process that maps them; USS is what one more worker
    process on the same host adds."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0])
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": round(fields["Rss"] / 1024.0, 1), "pss": round(fields["Pss"] / 1024.0, 1),
            "uss": round(private / 1024.0, 1), "shared": round(fields.get("Shared_Clean", 0) / 1024.0, 1)}


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` so far, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))


def maps_tensorflow(pid: int) -> bool:
    """Whether TensorFlow's native library is loaded in ``pid`` (i.e. it imported TensorFlow)."""
    return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()


class Stack:
    """PostgreSQL database + redis-server + gunicorn + Celery workers for one benchmark run."""

    def __init__(self, name: str, *, code_dir: Path = REPO_ROOT, extra_env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.code_dir = Path(code_dir).resolve()
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.database = f"bench_{name}_{os.getpid()}"
        self.redis_port = free_port()
        self.web_port = free_port()
        self.redis: Process | None = None
        self.web: Process | None = None
        self.workers: list[Process] = []
        self.env = {
            **os.environ,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"{POSTGRES_URL}/{self.database}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "MEDIA_ROOT": str(self.run_dir / "media"),
            **BENCH_LIMITS,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(self.code_dir),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DJANGO_SETTINGS_MODULE": "accesscontrol.settings",
            **(extra_env or {}),
        }
        self.env.pop("PYTEST_VERSION", None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.print_logs()
        self.close()

    def print_logs(self, lines: int = 30) -> None:
        """The last lines of every server log, for a run that failed (the run directory is removed)."""
        for process in (self.redis, self.web, *self.workers):
            if process is not None:
                tail = "\n".join(process.log_text().splitlines()[-lines:])
                print(f"--- {process.log_path.name} ---\n{tail}", file=sys.stderr)

    def _start(self) -> None:
        import psycopg

        with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.redis = Process(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            env=self.env, cwd=self.run_dir, log_path=self.run_dir / "redis.log",
        )
        self.redis.wait_logged("Ready to accept connections", 30)
        subprocess.run(
            [str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=self.code_dir, env=self.env, check=True,
        )
        self._setup_django()
        # The code's own web command: a "before" tree (``code_dir``) runs the server it was written for.
        command = replace_option(compose_command("web", self.code_dir), "--bind", f"127.0.0.1:{self.web_port}")
        command = [part for part in command if part not in ("--access-logfile", "-")]  # no per-request log lines
        self.web = Process(command, env=self.env, cwd=self.code_dir, log_path=self.run_dir / "web.log")
        self.web.wait_logged("Booting worker", WEB_READY_TIMEOUT_S)

    def _setup_django(self) -> None:
        # This process talks to the same database and broker as the servers (settings read the env).
        for key in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT",
                    "DJANGO_SETTINGS_MODULE"):
            os.environ[key] = self.env[key]
        if str(self.code_dir) not in sys.path:
            sys.path.insert(0, str(self.code_dir))
        import django

        django.setup()

    def start_worker(self, *, concurrency: int, tf_threads: int | None = None, label: str = "worker",
                     cpus: str | None = None) -> Process:
        """One ``celery worker`` (compose's command) with ``concurrency`` pool processes, each idle and waiting.

        ``cpus`` (``taskset -c`` syntax, e.g. ``"1"``) confines it to those CPUs, as a container's CPU limit
        or a host of its own would; Celery and the TensorFlow split then count only those."""
        command = replace_option(compose_command("worker", self.code_dir), "--concurrency", str(concurrency))
        if cpus is not None:
            command = ["taskset", "-c", cpus, *command]
        command = replace_option(command, "--loglevel", "info")
        command += ["--hostname", f"{label}-{len(self.workers)}-{os.getpid()}@%h"]
        env = dict(self.env)
        if tf_threads is not None:
            env["WORKER_TF_THREADS"] = str(tf_threads)
        worker = Process(command, env=env, cwd=self.code_dir, log_path=self.run_dir / f"{label}-{len(self.workers)}.log")
        self.workers.append(worker)
        worker.wait_logged(" ready.", WORKER_READY_TIMEOUT_S)
        self._wait_pool_settled(worker)
        return worker

    def _wait_pool_settled(self, worker: Process, quiet_s: float = 1.0) -> None:
        """Wait until every pool process has stopped using CPU: model loaded (and warmed, where the code
        does that) and blocked waiting for a task.

        Celery logs "ready." once the pool is forked, while each pool process may still be loading
        TensorFlow and the model; a task sent then waits for that load. Watching CPU time rather than
        a log line works for any version of the code (``code_dir``).
        """
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        pool = child_pids(worker.pid)
        last = {pid: cpu_ticks(pid) for pid in pool}
        while True:
            time.sleep(quiet_s)
            now = {pid: cpu_ticks(pid) for pid in pool}
            if all(now[pid] - last[pid] <= 2 for pid in pool):  # at most 20 ms of CPU in a second: idle
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker pool still busy after {WORKER_READY_TIMEOUT_S}s")
            last = now

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def close(self) -> None:
        self.stop_workers()
        for process in (self.web, self.redis):
            if process is not None:
                process.stop()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may never have been set up
            pass
        try:
            import psycopg

            with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - report, never mask the benchmark's own error
            print(f"warning: could not drop database {self.database}: {exc}", file=sys.stderr)
        shutil.rmtree(self.run_dir, ignore_errors=True)
