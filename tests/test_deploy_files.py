"""The deployment files (Dockerfile, compose.yaml, deploy/compose.*.yaml, deploy/systemd/*.service) cannot be built or
started here, so they are checked for what can go wrong without running them: each parses; every environment variable
they set for our program is a declared setting (config.catalog) or a
variable of the named library that reads it; every module they run exists and can be run with ``-m``; every
path they copy exists; volumes, GPUs, users and back ends are what docs/deploy.md says."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.connect import EXIT_LOGIN_REFUSED
from config.catalog import SETTINGS
from config.reader import EXIT_BAD_SETTINGS
from generator.worker_settings import EXIT_CONFIG
from jobs.db import normalize_url
from tests.store_reads import is_sqlite
from tests.test_env_example import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
GPU_HOST_COMPOSE = REPO_ROOT / "compose.yaml"  # the front door: docker compose up in the checkout
COMPOSE_FILES = [GPU_HOST_COMPOSE, *sorted((REPO_ROOT / "deploy").glob("compose.*.yaml"))]
UNIT_FILES = sorted((REPO_ROOT / "deploy" / "systemd").glob("*.service"))
DOCKER_INSTRUCTIONS = {
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}
UNIT_SECTIONS = {"Unit", "Service", "Install"}
VOLUMES = {"DATA_DIR": "/data", "OUTPUT_DIR": "/outputs", "HF_HOME": "/hf-cache"}
OUR_IMAGE = "i2v-bot:latest"


def _site_packages() -> Path:
    """The folder the installed libraries are in (huggingface_hub's, found without importing it)."""
    spec = importlib.util.find_spec("huggingface_hub")
    assert spec is not None and spec.origin is not None, "huggingface_hub is not installed"
    return Path(spec.origin).parent.parent


SITE_PACKAGES = _site_packages()


def _library_reads(relative: str, needle: str) -> bool:
    path = SITE_PACKAGES / relative
    return path.is_file() and needle in path.read_text(errors="replace")


# Variables of other programs that the files set, each with the check that the program really reads it.
FOREIGN = {
    "HF_HOME": lambda: _library_reads("huggingface_hub/constants.py", '"HF_HOME"'),
    "HF_TOKEN": lambda: _library_reads("huggingface_hub/utils/_auth.py", '"HF_TOKEN"'),
    "CUDA_VISIBLE_DEVICES": lambda: _library_reads("torch/cuda/__init__.py", "CUDA_VISIBLE_DEVICES"),
    "PIP_NO_CACHE_DIR": lambda: _library_reads("pip/_internal/cli/cmdoptions.py", '"--no-cache-dir"'),
    "PIP_DISABLE_PIP_VERSION_CHECK": lambda: _library_reads(
        "pip/_internal/cli/cmdoptions.py", '"--disable-pip-version-check"'
    ),
    # Read by apt's debconf and the shell; nothing in Python to look at.
    "DEBIAN_FRONTEND": lambda: True,
    "PATH": lambda: True,
}


def _our_settings() -> set[str]:
    """The declared settings (config.catalog), internal ones included (the supervisor sets those)."""
    return {s.name for s in SETTINGS}


def _assert_real_settings(names: set[str], where: str) -> None:
    ours = _our_settings()
    unknown = sorted(n for n in names if n not in ours and not (n in FOREIGN and FOREIGN[n]()))
    assert not unknown, f"{where} sets variables that nothing reads: {unknown}"


def _assert_runnable_module(argv: list[str], where: str) -> None:
    assert argv[0].endswith("python") or argv[0].endswith("python3"), f"{where} runs {argv[0]!r}, not python"
    assert argv[1] == "-m", f"{where}: expected 'python -m MODULE', got {argv}"
    module = argv[2]
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, f"{where} runs module {module!r}, which does not exist"
    if spec.submodule_search_locations:  # a package: needs __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{where}: {module} has no __main__"
    else:
        assert 'if __name__ == "__main__":' in Path(spec.origin).read_text(), f"{where}: {module} has no main guard"


# --- Dockerfile ----------------------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        instructions.append((word, rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def _docker_env(args: str) -> dict[str, str]:
    pairs = shlex.split(args)
    assert all("=" in p for p in pairs), f"ENV {args!r}: use KEY=value pairs"
    return dict(p.split("=", 1) for p in pairs)


def test_dockerfile_parses_and_builds_what_the_docs_say() -> None:
    steps = _dockerfile()
    words = [w for w, _ in steps]
    assert set(words) <= DOCKER_INSTRUCTIONS, f"unknown instructions: {set(words) - DOCKER_INSTRUCTIONS}"
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in steps if w == "ARG" and "=" in a}
    assert words[[i for i, w in enumerate(words) if w != "ARG"][0]] == "FROM", "the first instruction is not FROM"
    base = next(a for w, a in steps if w == "FROM")
    base = args.get(base.strip("${}"), base)
    assert base.startswith("nvidia/cuda:") and "-runtime-" in base, f"base image {base!r} is not a CUDA runtime"
    # The CUDA build of the pinned torch: the same pin as scripts/bootstrap (PyPI's Linux wheel is the CUDA one).
    bootstrap_pin = re.search(r"TORCH_SPEC=\$\{TORCH_SPEC-([^}]+)\}", (REPO_ROOT / "scripts/bootstrap").read_text())
    assert bootstrap_pin is not None and args["TORCH_SPEC"] == bootstrap_pin.group(1) == "torch==2.13.0"
    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert any(w == "RUN" and "useradd" in a and users[-1] in a for w, a in steps), "the USER is never created"
    volumes = set().union(*(set(yaml.safe_load(a)) for w, a in steps if w == "VOLUME"))
    assert volumes == set(VOLUMES.values())
    env: dict[str, str] = {}
    for word, arguments in steps:
        if word == "ENV":
            env.update(_docker_env(arguments))
    _assert_real_settings(set(env), "the Dockerfile")
    for name, folder in VOLUMES.items():
        assert env[name] == folder, f"{name} is not the {folder} volume"
    assert is_sqlite(env["DATABASE_URL"]) and env["DATABASE_URL"].endswith("////data/i2v.sqlite3")
    for word, arguments in steps:
        if word == "COPY":
            sources = [p for p in shlex.split(arguments) if not p.startswith("--")][:-1]
            missing = [s for s in sources if not (REPO_ROOT / s).exists()]
            assert not missing, f"COPY of paths that do not exist: {missing}"
        if word == "RUN" and "scripts/" in arguments:
            for script in re.findall(r"scripts/[\w-]+", arguments):
                assert (REPO_ROOT / script).is_file(), f"RUN uses {script}, which does not exist"
    cmd = yaml.safe_load(next(a for w, a in reversed(steps) if w == "CMD"))
    _assert_runnable_module(cmd, "the Dockerfile's CMD")
    # Every package the project installs (pyproject's packages.find) is copied into the image.
    includes = re.search(r"include = \[([^]]*)\]", (REPO_ROOT / "pyproject.toml").read_text())
    assert includes is not None
    packages = {name.strip().strip('"').rstrip("*") for name in includes.group(1).split(",")}
    copied = {p for w, a in steps if w == "COPY" for p in shlex.split(a) if not p.startswith("--")}
    assert packages <= copied, f"the image lacks the packages {sorted(packages - copied)}"


# --- Compose -------------------------------------------------------------------------------------------------


def _interpolate(value: Any) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, with a stand-in value, for the checks below."""
    if isinstance(value, str):
        return re.sub(r"\$\{([A-Z_]+)(?::?[-?][^}]*)?\}", lambda m: f"stand-in-{m.group(1).lower()}", value)
    return value


def _compose(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), f"{path.name}: no services"
    return data


def _gpus(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_runs_our_image_with_real_settings(path: Path) -> None:
    data = _compose(path)
    declared = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        where = f"{path.name}: service {name}"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in declared, f"{where} mounts undeclared volume {source}"
        if service.get("image") != OUR_IMAGE:
            continue  # PostgreSQL's own image: its variables are checked against the bot's URL below
        build = service["build"]
        assert (path.parent / build["context"]).resolve() == REPO_ROOT and build["dockerfile"] == "Dockerfile"
        for entry in service.get("env_file", []):
            env_file = (path.parent / (entry["path"] if isinstance(entry, dict) else entry)).resolve()
            assert env_file == REPO_ROOT / ".env", f"{where} reads settings from {env_file}, not the project's .env"
        env = {k: str(_interpolate(v)) for k, v in (service.get("environment") or {}).items()}
        _assert_real_settings(set(env), where)
        _assert_runnable_module(service["command"], where)
        worker_mode = env.get("WORKER")
        runs_worker = service["command"][2] == "generator.worker" or worker_mode == "embedded"
        assert worker_mode in (None, "embedded", "external"), f"{where}: WORKER={worker_mode}"
        assert bool(_gpus(service)) == runs_worker, f"{where}: a GPU exactly where a worker runs"
        normalize_url(env["DATABASE_URL"])  # raises on a URL the store refuses
        for key in ("OUTPUT_DIR", "HF_HOME", "DATA_DIR"):
            if key in env:
                assert (
                    any(m.split(":")[1] == env[key] for m in service.get("volumes", []) if ":" in m)
                    or env[key] in VOLUMES.values()
                ), f"{where}: {key}={env[key]} is neither mounted nor an image volume"
        if runs_worker:
            grace = 30  # I2V_GRACE_SECONDS' default
            assert int(service["stop_grace_period"].rstrip("s")) > grace, f"{where}: stop grace under the job grace"


def test_gpu_host_compose_is_one_bot_with_its_worker_on_sqlite() -> None:
    data = _compose(GPU_HOST_COMPOSE)
    assert set(data["services"]) == {"bot"}
    env = data["services"]["bot"]["environment"]
    assert env["WORKER"] == "embedded" and is_sqlite(env["DATABASE_URL"])
    # the page's public address comes from the .env next to the file (compose reads it for ${...}), and defaults
    # to the port published on this host
    assert env["WEB_PUBLIC_URL"] == "${WEB_PUBLIC_URL:-http://127.0.0.1:7860}", env
    assert "WEB_PUBLIC_URL=" in (REPO_ROOT / ".env.example").read_text()
    assert not (REPO_ROOT / "deploy" / "compose.gpu-host.yaml").exists(), "moved to compose.yaml, not copied"
    readme = (REPO_ROOT / "README.md").read_text()
    assert "docker compose up -d --build" in readme and "compose.gpu-host" not in readme


def test_scale_out_compose_is_bot_postgres_and_one_worker_per_gpu() -> None:
    data = _compose(REPO_ROOT / "deploy" / "compose.scale-out.yaml")
    services = data["services"]
    workers = {n: s for n, s in services.items() if s.get("command", [None, None, None])[2] == "generator.worker"}
    assert len(workers) >= 2 and {"bot", "postgres"} <= set(services)
    assert services["bot"]["environment"]["WORKER"] == "external" and not _gpus(services["bot"])
    devices = [tuple(_gpus(w)[0]["device_ids"]) for w in workers.values()]
    assert len(set(devices)) == len(devices), f"two workers share a GPU: {devices}"
    assert len({w["environment"]["WORKER_ID"] for w in workers.values()}) == len(workers)
    # Everyone's DATABASE_URL names the postgres service with the user and database it creates.
    pg = services["postgres"]["environment"]
    for name in ["bot", *workers]:
        url = _interpolate(services[name]["environment"]["DATABASE_URL"])
        assert url.startswith(f"postgresql+asyncpg://{pg['POSTGRES_USER']}:") and url.endswith(
            f"@postgres:5432/{pg['POSTGRES_DB']}"
        ), f"{name}: {url}"
        assert not any(m.startswith("data:") for m in services[name].get("volumes", []) if name != "bot")
    assert "DISCORD_TOKEN" not in str(workers) and all("env_file" not in w for w in workers.values())


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_bot_publishes_its_page_on_the_host_loopback_only(path: Path) -> None:
    """Inside the container the page listens on every address (else neither the published port nor a health check
    reaches it); the host publishes it on its own loopback only, and the health
    check asks /healthz on that port. Workers publish nothing."""
    from web.config import is_loopback

    services = _compose(path)["services"]
    ours = {name: s for name, s in services.items() if s.get("image") == OUR_IMAGE}
    bots = {name: s for name, s in ours.items() if s["command"][2] == "bot"}
    assert set(bots) == {"bot"}, f"{path.name}: bot services {sorted(bots)}"
    for name, service in ours.items():
        if name not in bots:
            assert "ports" not in service and "healthcheck" not in service, f"{path.name}: {name} publishes a port"
    bot = bots["bot"]
    env = {k: str(v) for k, v in bot["environment"].items()}
    assert env["WEB_HOST"] == "0.0.0.0" and not is_loopback(env["WEB_HOST"])  # the published port reaches it
    port = int(env["WEB_PORT"])
    assert bot["ports"] == [f"127.0.0.1:{port}:{port}"], f"{path.name}: published beyond the host's loopback"
    check = bot["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"], check
    compile(check[3], f"{path.name} healthcheck", "exec")  # the check's Python parses
    assert f"'http://127.0.0.1:{port}/healthz'" in check[3], check
    assert 'r.add_get("/healthz"' in (REPO_ROOT / "web" / "server.py").read_text(), "the web server has no /healthz"
    deploy_md = (REPO_ROOT / "docs" / "deploy.md").read_text()
    assert f"127.0.0.1:{port}:{port}" in deploy_md and "`/web`" in deploy_md, "docs/deploy.md does not say so"


# --- systemd -------------------------------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as lists of (key, value) in order (systemd allows a key more than once)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
            continue
        assert current is not None, f"{path.name}:{number}: a setting before any [Section]"
        key, sep, value = stripped.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z]+", key.strip()), f"{path.name}:{number}: not Key=value: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


@pytest.mark.parametrize("path", UNIT_FILES, ids=lambda p: p.name)
def test_systemd_unit_runs_an_existing_module_with_real_settings(path: Path) -> None:
    sections = _unit(path)
    assert set(sections) == UNIT_SECTIONS, f"{path.name}: sections {set(sections)}"
    service = sections["Service"]
    values = dict(service)
    assert values["User"] not in ("root", "0"), f"{path.name} runs as root"
    env = dict(v.split("=", 1) for k, v in service if k == "Environment")
    _assert_real_settings(set(env), path.name)
    argv = shlex.split(values["ExecStart"])
    assert argv[0] == f"{values['WorkingDirectory']}/.venv/bin/python", f"{path.name}: not the checkout's venv"
    _assert_runnable_module(argv, path.name)
    assert int(values["TimeoutStopSec"]) > 30, f"{path.name}: stop timeout under the worker's grace period"
    assert dict(sections["Install"])["WantedBy"] == "multi-user.target"
    if "generator.worker" in argv:
        assert "%i" in env["CUDA_VISIBLE_DEVICES"] and path.name.endswith("@.service"), "one instance per GPU"
        assert Path(values["EnvironmentFile"]).name != ".env", (
            "the worker reads its own settings file, never the bot's .env with the token"
        )


def test_the_units_restart_a_crash_but_not_a_bad_setting_or_a_refused_login() -> None:
    bot_unit = dict(_unit(REPO_ROOT / "deploy" / "systemd" / "i2v-bot.service")["Service"])
    assert bot_unit["Restart"] == "on-failure"  # a crash (exit 1, a signal) restarts
    prevented = {int(status) for status in bot_unit["RestartPreventExitStatus"].split()}
    assert prevented == {EXIT_BAD_SETTINGS, EXIT_LOGIN_REFUSED} == {2, 3}
    worker_unit = dict(_unit(REPO_ROOT / "deploy" / "systemd" / "i2v-worker@.service")["Service"])
    assert worker_unit["Restart"] == "on-failure"
    # the worker's 3 is a sticky CUDA error: a fresh process is the cure, so only a bad setting is not restarted
    assert {int(s) for s in worker_unit["RestartPreventExitStatus"].split()} == {EXIT_CONFIG} == {2}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_bounds_the_bots_restarts(path: Path) -> None:
    """Docker cannot skip a restart by exit status: the bot's restarts are bounded (a crash still restarts), so a
    rejected token or a bad setting does not loop forever."""
    policy = _compose(path)["services"]["bot"]["restart"]
    match = re.fullmatch(r"on-failure:(\d+)", policy)
    assert match and 1 <= int(match.group(1)) <= 10, policy
