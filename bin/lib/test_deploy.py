"""bin/test-deploy's scenario: docker-compose.yml built, started and used as a user would, then removed.

Run by bin/test-deploy (which installs the engine and base images when missing); standard library only.
Every step prints its time; a failing step prints the containers' logs; the stack and its volumes are
removed whatever happened (--keep leaves them for a look). Podman 4.3 gaps it works around
(../shared/tools/PODMAN.md): healthchecks are run here at each poll instead of by the engine,
`depends_on` conditions are replaced by a staged start with --no-deps, and `down -v` is followed by
removing whatever carries the project's label (scaled containers, volumes, networks).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import html.parser
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FACES = REPO / "verification" / "demo" / "faces"
WEB_IMAGE, WORKER_IMAGE = "accesscontrol-web:latest", "accesscontrol-worker:latest"
WEB_BUDGET_MB, WORKER_BUDGET_MB = 400, 1500  # issue 12, item 2 (MB = 10^6 bytes, as the engines count)
PROJECT_LABEL, SERVICE_LABEL = "com.docker.compose.project", "com.docker.compose.service"
FINAL = {"decided", "failed"}


class StepFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"[test-deploy {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(argv: list[str], *, timeout: float, env: dict | None = None, check: bool = True, quiet: bool = False,
        stream: bool = False) -> subprocess.CompletedProcess:
    """A command with a deadline, in a process group of its own: on a timeout or an interruption the
    whole group goes (podman-compose leaves its `podman build` children running otherwise). Its output
    is returned, shown on failure, or passed through as it comes with ``stream``."""
    process = subprocess.Popen(argv, stdout=None if stream else subprocess.PIPE, stderr=None if stream else subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as exc:
        _kill_group(process)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise StepFailed(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
        raise
    result = subprocess.CompletedProcess(argv, process.returncode, stdout or "", stderr or "")
    if check and result.returncode != 0:
        if not quiet:
            sys.stdout.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise StepFailed(f"exit {result.returncode}: {' '.join(argv)}")
    return result


def _kill_group(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def retry(what: str, attempts: int, fn, *, pause: float = 5.0):
    """Known-flaky engine steps (podman 4.3 'depends on container ... not found', a registry-less pull
    race, a slow first healthcheck) get a few tries."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except StepFailed as exc:
            if attempt == attempts:
                raise
            log(f"{what}: attempt {attempt} failed ({exc}); retrying")
            time.sleep(pause)


class Stack:
    def __init__(self, engine: str, compose: list[str], project: str, env: dict) -> None:
        self.engine, self.compose_argv, self.project, self.env = engine, compose, project, env

    def compose(self, *args: str, timeout: float = 300, check: bool = True,
                stream: bool = False) -> subprocess.CompletedProcess:
        argv = [*self.compose_argv, "-p", self.project, "-f", str(REPO / "docker-compose.yml"), *args]
        return run(argv, timeout=timeout, env=self.env, check=check, stream=stream)

    def ids(self, service: str | None = None, *, running_only: bool = True) -> list[str]:
        argv = [self.engine, "ps", "-q", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={self.project}"]
        if not running_only:
            argv.insert(2, "--all")
        if service:
            argv += ["--filter", f"label={SERVICE_LABEL}={service}"]
        return run(argv, timeout=60).stdout.split()

    def one(self, service: str) -> str:
        ids = self.ids(service)
        if len(ids) != 1:
            raise StepFailed(f"expected one running {service} container, found {len(ids)}")
        return ids[0]

    def healthy(self, cid: str) -> bool:
        if self.engine == "podman":  # podman 4.3 schedules healthchecks with systemd, absent here
            return run(["podman", "healthcheck", "run", cid], timeout=90, check=False).returncode == 0
        status = run(["docker", "inspect", "-f", "{{.State.Health.Status}}", cid], timeout=30, check=False)
        return status.stdout.strip() == "healthy"

    def wait_healthy(self, service: str, *, count: int = 1, timeout: float = 300) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            ids = self.ids(service)
            if len(ids) >= count and all(self.healthy(cid) for cid in ids):
                return ids
            if time.monotonic() > deadline:
                raise StepFailed(f"{service}: {len(ids)} container(s), not {count} healthy within {timeout:.0f} s")
            time.sleep(3)

    def exec(self, service_or_id: str, *cmd: str, env: dict | None = None, timeout: float = 300,
             check: bool = True) -> subprocess.CompletedProcess:
        cid = self.one(service_or_id) if len(service_or_id) < 40 else service_or_id
        argv = [self.engine, "exec"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        return run([*argv, cid, *cmd], timeout=timeout, check=check)

    def django_shell(self, code: str, *, timeout: float = 120) -> str:
        return retry("manage.py shell", 3, lambda: self.exec(
            "web", "python", "manage.py", "shell", "-c", code, timeout=timeout).stdout.strip())

    def logs(self, cid: str, tail: int | None = None) -> str:
        argv = [self.engine, "logs", *(["--tail", str(tail)] if tail else []), cid]
        result = run(argv, timeout=60, check=False)
        return result.stdout + result.stderr

    def dump_logs(self) -> None:
        for cid in self.ids(running_only=False):
            name = run([self.engine, "inspect", "-f", "{{.Name}}", cid], timeout=30, check=False).stdout.strip()
            print(f"----- logs of {name} (last 60 lines) -----")
            print(self.logs(cid, tail=60))

    def teardown(self) -> None:
        """Everything the project made, volumes included, even what `down -v` misses (scaled containers)."""
        log("tearing down (containers, volumes, networks)")
        ids = self.ids(running_only=False)
        # Anonymous volumes too (an image's VOLUME that compose mounts nothing on, e.g. Caddy's /config).
        anonymous = []
        for cid in ids:
            mounts = run([self.engine, "inspect", "-f", "{{range .Mounts}}{{.Type}}:{{.Name}} {{end}}", cid],
                         timeout=30, check=False).stdout.split()
            anonymous += [m.split(":", 1)[1] for m in mounts if m.startswith("volume:") and len(m) > 60]
        if ids:
            run([self.engine, "rm", "-f", "-v", "-t", "10", *ids], timeout=180, check=False)
        self.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
        label = f"label={PROJECT_LABEL}={self.project}"
        volumes = run([self.engine, "volume", "ls", "-q", "--filter", label], timeout=60, check=False).stdout.split()
        volumes += [v for v in run([self.engine, "volume", "ls", "-q"], timeout=60, check=False).stdout.split()
                    if v.startswith(f"{self.project}_") and v not in volumes]
        existing = set(run([self.engine, "volume", "ls", "-q"], timeout=60, check=False).stdout.split())
        volumes += [v for v in anonymous if v in existing and v not in volumes]
        if volumes:
            run([self.engine, "volume", "rm", "-f", *volumes], timeout=120, check=False)
        networks = [n for n in run([self.engine, "network", "ls", "--format", "{{.Name}}"], timeout=60,
                                   check=False).stdout.split() if n.startswith(f"{self.project}_")]
        if networks:
            run([self.engine, "network", "rm", "-f", *networks], timeout=120, check=False)
        left = self.ids(running_only=False) + [
            v for v in run([self.engine, "volume", "ls", "-q"], timeout=60, check=False).stdout.split()
            if v.startswith(f"{self.project}_") or v in anonymous]
        if left:
            log(f"WARNING: left behind after teardown: {left}")
        else:
            log("teardown complete: no container, volume or network of the project is left")


# --- HTTP through the proxy --------------------------------------------------------------------------


class Client:
    """HTTPS to the published port, trusting only the proxy's own CA (as a door would be set up)."""

    def __init__(self, base: str, cafile: Path) -> None:
        self.base = base
        context = ssl.create_default_context(cafile=str(cafile))
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), urllib.request.HTTPCookieProcessor(self.cookies),
            _NoRedirect(),
        )

    def request(self, method: str, path: str, *, fields: dict | None = None, files: dict | None = None,
                headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
        """One request; a 502/504 from the proxy (it could not reach web: with podman 4.3's CNI network,
        name lookups time out for seconds while a container joins or leaves) is tried again, as a door
        would, up to four times, and said."""
        for attempt in range(1, 5):
            status, headers_out, body = self._request_once(method, path, fields, files, headers, timeout)
            if status not in (502, 504) or attempt == 4:
                return status, headers_out, body
            log(f"{method} {path}: the proxy answered {status} (attempt {attempt}); trying again in 5 s")
            time.sleep(5)
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, fields: dict | None, files: dict | None,
                      headers: dict | None, timeout: float) -> tuple[int, dict, bytes]:
        body, content_type = None, None
        if files is not None:
            body, content_type = _multipart(fields or {}, files)
        elif fields is not None:
            body, content_type = urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=dict(headers or {}))
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with self.opener.open(req, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def checkin(self, token: str, person: str, photo: Path, *, wait: float = 10) -> dict:
        status, _, body = self.request(
            "POST", "/api/v1/checkins/", fields={"person": person, "wait": str(wait)},
            files={"snapshot": photo}, headers={"Authorization": f"Token {token}"}, timeout=wait + 60,
        )
        if status not in (200, 202):
            raise StepFailed(f"check-in answered {status}: {body[:500]!r}")
        return json.loads(body)

    def checkin_status(self, token: str, checkin_id: str) -> dict:
        status, _, body = self.request("GET", f"/api/v1/checkins/{checkin_id}/",
                                       headers={"Authorization": f"Token {token}"})
        if status != 200:
            raise StepFailed(f"check-in {checkin_id} answered {status}: {body[:300]!r}")
        return json.loads(body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the admin's 302s are read, not followed
        return None


def _multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = "----test-deploy-" + secrets.token_hex(8)
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
                "Content-Type: image/jpeg\r\n\r\n")
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class _FormParser(html.parser.HTMLParser):
    """The fields of the page's main form as a browser would submit them untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.file_inputs: list[str] = []
        self._select: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("method", "").lower() == "post":
            self._in_form = True
        if not self._in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind == "file":
                self.file_inputs.append(name)
            elif kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields[name] = a.get("value", "on")
            elif kind not in ("submit", "button", "image", "reset"):
                self.fields[name] = a.get("value") or ""
        elif tag == "select" and name:
            self._select = name
            self.fields.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.fields[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self.fields[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        if tag == "form":
            self._in_form = False


def admin_enrol(client: Client, *, username: str, password: str, name: str, external_id: str, photo: Path) -> None:
    """Log in to the admin and add a person with one reference photo, through the forms themselves."""
    origin = {"Origin": client.base, "Referer": client.base + "/admin/login/"}
    status, _, page = client.request("GET", "/admin/login/?next=/admin/")
    if status != 200:
        raise StepFailed(f"admin login page answered {status}")
    form = _FormParser()
    form.feed(page.decode())
    form.fields.update(username=username, password=password)
    status, _, body = client.request("POST", "/admin/login/?next=/admin/", fields=form.fields, headers=origin)
    if status != 302:
        raise StepFailed(f"admin login answered {status} (expected a redirect): {_errors(body)}")
    add = "/admin/verification/person/add/"
    status, _, page = client.request("GET", add)
    if status != 200:
        raise StepFailed(f"{add} answered {status}")
    form = _FormParser()
    form.feed(page.decode())
    # The form's own photo upload if it has one, else a new row of the reference photo inline, added as
    # the admin's "Add another" button does (the row's __prefix__ template numbered, TOTAL_FORMS raised).
    photo_field = next((f for f in form.file_inputs if "__prefix__" not in f), None)
    if photo_field is None:
        template = next((f for f in form.file_inputs if "-__prefix__-" in f), None)
        if template is None:
            raise StepFailed(f"no reference photo upload on {add} (file inputs: {form.file_inputs})")
        prefix = template.split("-__prefix__-")[0]
        rows = int(form.fields.get(f"{prefix}-TOTAL_FORMS", "0"))
        photo_field = template.replace("__prefix__", str(rows))
        form.fields[f"{prefix}-TOTAL_FORMS"] = str(rows + 1)
    form.fields = {k: v for k, v in form.fields.items() if "__prefix__" not in k}
    form.fields.update(name=name, external_id=external_id)
    form.fields.pop("_addanother", None)
    form.fields.pop("_continue", None)
    status, _, body = client.request(
        "POST", add, fields=form.fields, files={photo_field: photo}, headers={**origin, "Referer": client.base + add}
    )
    if status != 302:
        raise StepFailed(f"adding the person answered {status} (expected a redirect): {_errors(body)}")


def _errors(body: bytes) -> str:
    text = body.decode(errors="replace")
    found = re.findall(r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', text, re.DOTALL)
    return " | ".join(re.sub(r"<[^>]+>", " ", f).strip() for f in found)[:800] or text[:400]


# --- The scenario ------------------------------------------------------------------------------------


class Scenario:
    def __init__(self, stack: Stack, workdir: Path, https_port: int) -> None:
        self.stack, self.workdir, self.https_port = stack, workdir, https_port
        self.results: list[tuple[str, float, str]] = []
        self.figures: dict[str, str] = {}

    def step(self, name: str, fn) -> None:
        log(f"--> {name}")
        start = time.monotonic()
        try:
            note = fn() or ""
        except Exception as exc:
            self.results.append((name, time.monotonic() - start, f"FAILED: {exc}"))
            log(f"FAILED {name} after {time.monotonic() - start:.0f} s: {exc}")
            raise
        self.results.append((name, time.monotonic() - start, note))
        log(f"ok   {name} ({time.monotonic() - start:.0f} s) {note}")

    # Steps ---------------------------------------------------------------------------------------------

    def build(self) -> str:
        # One image at a time: podman-compose builds every service at once (web, beat and migrate name
        # the same image), which on two cores means the same web stage three times over.
        start = time.monotonic()
        for service in ("web", "worker"):
            retry(f"build {service}", 2, lambda service=service: self.stack.compose("build", service, timeout=3600,
                                                                                  stream=True))
        self.figures["build_s"] = f"{time.monotonic() - start:.0f}"
        sizes = {}
        for image, budget in ((WEB_IMAGE, WEB_BUDGET_MB), (WORKER_IMAGE, WORKER_BUDGET_MB)):
            size = int(run([self.stack.engine, "image", "inspect", "-f", "{{.Size}}", image], timeout=60).stdout)
            sizes[image] = size / 1e6
            self.figures[f"{image.split(':')[0]}_MB"] = f"{size / 1e6:.0f}"
            if size / 1e6 > budget:
                raise StepFailed(f"{image} is {size / 1e6:.0f} MB, over its {budget} MB budget")
        return ", ".join(f"{k} {v:.0f} MB" for k, v in sizes.items())

    def image_contents(self) -> str:
        # Nothing local or secret is copied in; web has no model runtime/OpenCV; the worker runs LiteRT and
        # has no TensorFlow; neither has training packages. (tqdm is not checked: LiteRT depends on it.)
        check = ("test ! -e .env && test ! -e .git && test ! -e tests && test ! -e .venv "
                 "&& test ! -e deploy/caddy && test -f verification/demo/faces/person_a_1.jpg")
        probe = "import importlib.util as u; print(','.join(m for m in {mods} if u.find_spec(m)))"
        for image, want in ((WEB_IMAGE, ""), (WORKER_IMAGE, "ai_edge_litert,cv2")):
            mods = ("ai_edge_litert", "cv2", "tensorflow", "keras", "mtcnn", "matplotlib", "dlib")
            found = run([self.stack.engine, "run", "--rm", "--entrypoint", "sh", image, "-c",
                         f'{check} && python -c "{probe.format(mods=mods)}"'], timeout=300).stdout.strip()
            if found != want:
                raise StepFailed(f"{image} has {found or 'none'} of {mods}, expected {want or 'none'}")
        return "no .env/.git/tests/certs in either; web without LiteRT/cv2; worker without TensorFlow; no training packages"

    def start_backends(self) -> str:
        retry("up db redis", 3, lambda: self.stack.compose("up", "-d", "db", "redis", timeout=300))
        for service in ("db", "redis"):
            self.stack.wait_healthy(service, timeout=180)
        return "db and redis healthy"

    def migrate(self) -> str:
        retry("up migrate", 3, lambda: self.stack.compose("up", "-d", "--no-deps", "migrate", timeout=300))
        cid = self.stack.ids("migrate", running_only=False)
        if len(cid) != 1:
            raise StepFailed(f"expected one migrate container, found {len(cid)}")
        code = run([self.stack.engine, "wait", cid[0]], timeout=600).stdout.strip().splitlines()[-1]
        if code != "0":
            print(self.stack.logs(cid[0]))
            raise StepFailed(f"migrate exited {code}")
        return "migrations applied by the owner role"

    def start_app(self) -> str:
        retry("up web worker beat", 3,
              lambda: self.stack.compose("up", "-d", "--no-deps", "web", "worker", "beat", timeout=300))
        self.stack.wait_healthy("web", timeout=300)
        self.stack.wait_healthy("worker", timeout=600)  # the model loads and warms up first
        retry("up proxy", 3, lambda: self.stack.compose("up", "-d", "--no-deps", "proxy", timeout=300))
        cafile = self.workdir / "caddy-root.crt"
        proxy = self.stack.one("proxy")
        deadline = time.monotonic() + 120
        while run([self.stack.engine, "cp", f"{proxy}:/data/caddy/pki/authorities/local/root.crt", str(cafile)],
                  timeout=60, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise StepFailed("the proxy made no local CA within 120 s")
            time.sleep(2)
        self.client = Client(f"https://localhost:{self.https_port}", cafile)
        deadline = time.monotonic() + 120
        while True:
            try:
                status, _, _ = self.client.request("GET", "/healthz", timeout=10)
                if status == 200:
                    break
            except (OSError, ssl.SSLError) as exc:
                status = exc
            if time.monotonic() > deadline:
                raise StepFailed(f"https://localhost:{self.https_port}/healthz never answered 200 (last: {status})")
            time.sleep(2)
        return f"web, worker, beat up; proxy answers on https://localhost:{self.https_port} with its own CA"

    def superuser_and_device(self) -> str:
        self.admin_password = secrets.token_urlsafe(16)
        self.stack.exec("web", "python", "manage.py", "createsuperuser", "--noinput", "--username", "deploy-admin",
                        "--email", "deploy-admin@example.org", env={"DJANGO_SUPERUSER_PASSWORD": self.admin_password})
        # One device per phase: the load phases repeat snapshots, which the app refuses as replays, and
        # LOCKOUT_DEVICE_MAX_FAILURES refusals at one device lock it out (429), which is not under test.
        tokens = []
        for name in ("deploy-door", "deploy-door-load", "deploy-door-redis"):
            out = self.stack.exec("web", "python", "manage.py", "create_device", name).stdout.split()
            if not out:
                raise StepFailed(f"create_device {name} printed no token")
            tokens.append(out[0])
        self.token, self.load_token, self.redis_token = tokens
        return "superuser deploy-admin; devices deploy-door, deploy-door-load, deploy-door-redis"

    def demo_setup(self) -> str:
        out = self.stack.exec("web", "python", "manage.py", "setup_demo", "--base-url",
                              f"https://localhost:{self.https_port}").stdout
        people = re.findall(r"Person:\s+(\S+) \(genuine snapshot held back: (\S+)\)", out)
        if len(people) < 2:
            raise StepFailed(f"setup_demo listed {len(people)} people:\n{out}")
        self.demo = {pid: FACES / Path(path).name for pid, path in people}
        self.wait_references_ready(list(self.demo))
        return f"{len(people)} demo people, every reference photo ready"

    def wait_references_ready(self, external_ids: list[str], timeout: float = 300) -> None:
        code = ("from verification.models import ReferenceImage as R; import json; "
                f"q = R.objects.filter(person__external_id__in={external_ids!r}); "
                "print(json.dumps({s: q.filter(status=s).count() for s in ('pending', 'ready', 'rejected')}))")
        deadline = time.monotonic() + timeout
        while True:
            counts = json.loads(self.stack.django_shell(code).splitlines()[-1])
            if counts["rejected"]:
                raise StepFailed(f"reference photos rejected: {counts}")
            if counts["ready"] and not counts["pending"]:
                return
            if time.monotonic() > deadline:
                raise StepFailed(f"reference photos not ready within {timeout:.0f} s: {counts}")
            time.sleep(3)

    def _decided(self, answer: dict, token: str | None = None) -> dict:
        deadline = time.monotonic() + 120
        while answer["status"] not in FINAL:
            if time.monotonic() > deadline:
                raise StepFailed(f"check-in {answer['id']} not final within 120 s: {answer}")
            time.sleep(1)
            answer = self.client.checkin_status(token or self.token, answer["id"])
        return answer

    def _probes(self, count: int) -> list[tuple[str, Path]]:
        """``count`` check-ins spread over the demo people (each person's held-back photo; repeats are
        refused ``replayed``, which is still a decision a worker made)."""
        people = list(self.demo.items())
        return [people[i % len(people)] for i in range(count)]

    @staticmethod
    def _outcomes(answers: list[dict]) -> str:
        counts: dict[str, int] = {}
        for a in answers:
            key = "admitted" if a.get("decision") == 1 else f"refused {a.get('reason') or ''}".strip()
            counts[key] = counts.get(key, 0) + 1
        return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))

    def genuine_and_impostor(self) -> str:
        (person, own_photo), (_, other_photo) = list(self.demo.items())[:2]
        genuine = self._decided(self.client.checkin(self.token, person, own_photo))
        self.genuine_id = genuine["id"]
        impostor = self._decided(self.client.checkin(self.token, person, other_photo))
        if genuine.get("decision") != 1:
            raise StepFailed(f"genuine check-in of {person} with {own_photo.name} was not admitted: {genuine}")
        if impostor.get("decision") != 0:
            raise StepFailed(f"impostor check-in as {person} with {other_photo.name} was not refused: {impostor}")
        return f"{person}: own photo admitted, {other_photo.name} refused"

    def admin_enrolment(self) -> str:
        person, photo, probe = "DEPLOY-001", FACES / "person_c_1.jpg", FACES / "person_c_2.jpg"
        admin_enrol(self.client, username="deploy-admin", password=self.admin_password, name="Deploy Tester",
                    external_id=person, photo=photo)
        self.wait_references_ready([person])
        answer = self._decided(self.client.checkin(self.token, person, probe))
        if answer.get("decision") != 1:
            raise StepFailed(f"the person enrolled through the admin was not admitted: {answer}")
        return f"{person} added with {photo.name} over HTTPS, admitted with {probe.name}"

    def two_workers(self) -> str:
        retry("scale worker=2", 3, lambda: self.stack.compose(
            "up", "-d", "--no-deps", "--scale", "worker=2", "worker", timeout=300))
        workers = self.stack.wait_healthy("worker", count=2, timeout=600)
        self._proxy_settled()
        before = {cid: self._tasks_done(cid) for cid in workers}
        token = self.load_token

        def one(probe: tuple[str, Path]) -> dict:
            return self._decided(self.client.checkin(token, probe[0], probe[1]), token)

        answers: list[dict] = []
        # Rounds of concurrent check-ins until both containers have taken some (replays are decided in
        # milliseconds, so one round can, rarely, all land on one); three rounds at most.
        for _round in range(3):
            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                batch = list(pool.map(one, self._probes(8)))
            answers += batch
            if any(a["status"] != "decided" or a.get("decision") not in (0, 1) for a in batch):
                raise StepFailed(f"not every check-in was decided: {batch}")
            time.sleep(2)  # the log line follows the decision
            done = {cid[:12]: self._tasks_done(cid) - before[cid] for cid in workers}
            if all(done.values()):
                return f"{len(answers)} check-ins decided ({self._outcomes(answers)}); tasks per worker: {done}"
        raise StepFailed(f"tasks per worker container after {len(answers)} check-ins: {done} (one took no work)")

    def _proxy_settled(self, timeout: float = 180) -> None:
        """Three answers in a row through the proxy from web with the database: a container joining or
        leaving the network reloads its DNS (podman's dnsname plugin), and lookups of `web` (by the
        proxy) and of `db` (by web) can time out for seconds."""
        deadline, good = time.monotonic() + timeout, 0
        probe = f"/api/v1/checkins/{self.genuine_id}/"
        while good < 3:
            try:
                status = self.client._request_once("GET", probe, None, None,
                                                   {"Authorization": f"Token {self.token}"}, 15)[0]
                good = good + 1 if status == 200 else 0
            except OSError:
                good = 0
            if time.monotonic() > deadline:
                raise StepFailed(f"the proxy did not reach web steadily within {timeout:.0f} s")
            time.sleep(1)

    def _tasks_done(self, cid: str) -> int:
        return len(re.findall(r"Task verification\.tasks\.\S+ succeeded", self.stack.logs(cid)))

    def redis_restart(self) -> str:
        # Workers and beat stopped (beat's sweep would re-queue a lost check-in and hide the loss), check-ins
        # queued, Redis restarted: every queued check-in must still be decided once workers return.
        engine = self.stack.engine
        workers, beat = self.stack.ids("worker"), self.stack.ids("beat")
        run([engine, "stop", "-t", "30", *workers, *beat], timeout=180)
        self._proxy_settled()
        token = self.redis_token
        queued = [self.client.checkin(token, person, photo, wait=0) for person, photo in self._probes(4)]
        if any(a["status"] in FINAL for a in queued):
            raise StepFailed(f"a check-in was decided with no worker running: {queued}")
        run([engine, "restart", "-t", "30", self.stack.one("redis")], timeout=180)
        self.stack.wait_healthy("redis", timeout=120)
        self._proxy_settled()
        run([engine, "start", *workers, *beat], timeout=180)
        self.stack.wait_healthy("worker", count=len(workers), timeout=600)
        self._proxy_settled()
        answers = [self._decided(a, token) for a in queued]
        if any(a["status"] != "decided" or a.get("decision") not in (0, 1) for a in answers):
            raise StepFailed(f"after the Redis restart: {answers}")
        return f"{len(queued)} check-ins queued across a Redis restart, all decided ({self._outcomes(answers)})"

    def audit_log(self) -> str:
        out = retry("verify_audit_log", 3, lambda: self.stack.exec("web", "python", "manage.py", "verify_audit_log"))
        return (out.stdout.strip() or out.stderr.strip()).splitlines()[-1][:200]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["docker", "podman"], required=True)
    parser.add_argument("--compose", required=True, help="the compose command, e.g. 'docker compose'")
    parser.add_argument("--keep", action="store_true", help="leave the stack running after the test")
    args = parser.parse_args()

    project = f"acdeploy{os.getpid()}{secrets.token_hex(2)}"
    https_port, http_port = free_port(), free_port()
    # Passwords with the characters a URL would need escaped: settings build the URL from parts.
    env = {
        **os.environ,
        "SECRET_KEY": secrets.token_urlsafe(40),
        "POSTGRES_PASSWORD": "own@er:p/w#" + secrets.token_hex(6) + "?%&",
        "POSTGRES_APP_PASSWORD": "app@p:w/%" + secrets.token_hex(6) + "#?=",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "SITE_ADDRESS": "localhost",
        "TLS_CERTIFICATE": "internal",
        "HTTPS_PORT": str(https_port),
        "HTTP_PORT": str(http_port),
    }
    stack = Stack(args.engine, args.compose.split(), project, env)
    workdir = Path(tempfile.mkdtemp(prefix="test-deploy-"))
    scenario = Scenario(stack, workdir, https_port)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    log(f"engine {args.engine} ({args.compose}), project {project}, https port {https_port}, http port {http_port}")
    started = time.monotonic()
    failed = False
    try:
        scenario.step("build both images", scenario.build)
        scenario.step("image contents", scenario.image_contents)
        scenario.step("start db and redis", scenario.start_backends)
        scenario.step("migrate", scenario.migrate)
        scenario.step("start web, worker, beat and the proxy", scenario.start_app)
        scenario.step("create a superuser and a device", scenario.superuser_and_device)
        scenario.step("setup_demo", scenario.demo_setup)
        scenario.step("genuine and impostor check-ins through the proxy", scenario.genuine_and_impostor)
        scenario.step("enrol through the admin over HTTPS", scenario.admin_enrolment)
        scenario.step("two workers share the work", scenario.two_workers)
        scenario.step("Redis restart loses nothing", scenario.redis_restart)
        scenario.step("verify_audit_log", scenario.audit_log)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - any failure: logs, then the teardown
        failed = True
        log(f"stopped: {exc!r}")
        try:
            stack.dump_logs()
        except Exception as dump_exc:  # noqa: BLE001 - the teardown below matters more
            log(f"could not collect logs: {dump_exc}")
    finally:
        if args.keep and not failed:
            log(f"--keep: the stack is left running (project {project}); remove it with: "
                f"{args.compose} -p {project} down -v")
        else:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the teardown short
            stack.teardown()
        shutil.rmtree(workdir, ignore_errors=True)
    total = time.monotonic() - started
    print("\ntest-deploy summary")
    for name, seconds, note in scenario.results:
        print(f"  {seconds:6.0f} s  {name}: {note}")
    print(f"  figures: {json.dumps(scenario.figures)}; total {total:.0f} s")
    passed = sum(1 for r in scenario.results if not r[2].startswith("FAILED"))
    print(f"test-deploy: {passed} passed, {int(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
