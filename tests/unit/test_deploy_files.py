"""The deployment files match the project: compose.yaml, deploy/nginx.conf, the Dockerfile.

No container engine runs where the tests run, so these are static checks of what an engine
would be handed: every setting the compose file gives a bot process is one Opsdeck reads and
parses; health checks target /healthz; build contexts, bind mounts and the services they name
exist; Docker waits longer than the shutdown grace before it kills; the Dockerfile runs as a
non-root user with its data in /data.
"""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

import core.settings
from core.settings import JobSettings, OutboxSettings, Settings
from storage.blobs import blob_store_from_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
# Variables the compose file itself uses that are not Opsdeck settings (the database's and
# the object store's own credentials).
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
# What `${VAR}` in compose.yaml stands for in these tests.
SAMPLE = {
    "TELEGRAM_BOT_TOKEN": "123456:SAMPLE-token",
    "OPSDECK_OWNER_IDS": "111111111,222222222",
    "OPSDECK_SECRET_KEY": "sample-secret-key-0123456789abcdef",
    "TELEGRAM_WEBHOOK_URL": "https://ops.example.com/telegram/webhook",
    "TELEGRAM_WEBHOOK_SECRET": "sample_webhook_secret",
    "PUBLIC_BASE_URL": "https://ops.example.com",
    "POSTGRES_PASSWORD": "pg-sample",
    "MINIO_ROOT_PASSWORD": "minio-sample",
}


# -- helpers -------------------------------------------------------------------------------------


def setting_names() -> set[str]:
    """Every environment variable Opsdeck reads: core.settings' classes."""
    classes = [
        cls
        for _, cls in inspect.getmembers(core.settings, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls is not BaseSettings
    ]
    return {
        f"{cls.model_config.get('env_prefix', '')}{name}".upper()
        for cls in classes
        for name in cls.model_fields
    }


_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$`, for these tests."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if name in env:
            return env[name]
        if op and op.endswith("-"):
            return arg
        raise AssertionError(f"${{{name}}} has no value in the test sample")

    return _VAR.sub(one, value).replace("$$", "$")


def variables(text: str) -> set[str]:
    return {m["name"] for m in _VAR.finditer(text)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "- NAME=value" form
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v), SAMPLE) for k, v in env.items()}


def opsdeck_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run this project's image (built from this repository)."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def bot_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in opsdeck_services(compose).items()
        if s.get("command") == ["python", "-m", "bot", "run"]
    }


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(amount) * units[unit]
    return total


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start : end if end != -1 else None]


# -- compose.yaml --------------------------------------------------------------------------------


def test_compose_has_a_database_a_store_a_migration_two_bots_and_one_endpoint(compose) -> None:
    services = compose["services"]
    assert {"postgres", "minio", "minio-init", "migrate", "lb"} <= set(services)
    assert len(bot_services(compose)) >= 2
    assert services["migrate"]["command"] == ["python", "-m", "bot", "migrate"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dep in service.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_every_variable_given_to_opsdeck_is_a_real_setting(compose) -> None:
    names = setting_names()
    assert {"DATABASE_URL", "VAULT_S3_ENDPOINT_URL", "TELEGRAM_WEBHOOK_URL"} <= names
    for name, service in opsdeck_services(compose).items():
        unknown = set(environment(service)) - names
        assert not unknown, f"{name} sets variables Opsdeck does not read: {sorted(unknown)}"


def test_the_compose_environment_loads_into_working_settings(compose, monkeypatch) -> None:
    """What a bot process would make of its environment: PostgreSQL, S3 in MinIO, webhook."""
    for name, service in bot_services(compose).items():
        for var in setting_names():
            monkeypatch.delenv(var, raising=False)
        env = environment(service)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        settings = Settings.load(env_file=None)
        settings.require_runtime()
        db = urlsplit(settings.database_url)
        assert db.scheme == "postgresql+asyncpg", name
        assert db.hostname in compose["services"], f"{name}: database host {db.hostname}"
        store = blob_store_from_url(
            settings.vault_storage_url,
            endpoint_url=settings.vault.s3_endpoint_url,
            access_key=settings.vault.s3_access_key_id,
            secret_key=settings.vault.s3_secret_access_key,
            region=settings.vault.s3_region,
        )
        assert type(store).__name__ == "S3BlobStore", name
        assert urlsplit(settings.vault.s3_endpoint_url or "").hostname in compose["services"]
        assert settings.telegram.webhook_url == SAMPLE["TELEGRAM_WEBHOOK_URL"]
        assert settings.webhook_secret() == SAMPLE["TELEGRAM_WEBHOOK_SECRET"]
        assert settings.public_base_url == SAMPLE["PUBLIC_BASE_URL"]
        # one key for all processes, never one generated into each container's volume
        assert settings.opsdeck.secret_key is not None
        assert settings.http.host == "0.0.0.0"


def test_the_bucket_the_bots_use_is_the_one_created_on_start(compose) -> None:
    init = " ".join(compose["services"]["minio-init"]["entrypoint"])
    created = set(re.findall(r"mc mb --ignore-existing \w+/([a-z0-9.-]+)", init))
    for name, service in bot_services(compose).items():
        bucket = urlsplit(environment(service)["VAULT_STORAGE_URL"]).netloc
        assert bucket in created, f"{name} uses bucket {bucket}, minio-init creates {created}"
        deps = service["depends_on"]
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_bot_health_checks_target_healthz_on_the_http_port(compose) -> None:
    for name, service in bot_services(compose).items():
        port = environment(service)["HTTP_PORT"]
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/healthz" in check, f"{name}: {check}"


def test_docker_waits_for_the_graceful_shutdown_before_killing(compose) -> None:
    """Docker's default is 10 s: it would SIGKILL jobs that still had their grace period."""
    outbox_grace = OutboxSettings.model_fields["shutdown_timeout_seconds"].default
    for name, service in bot_services(compose).items():
        env = environment(service)
        default_grace = JobSettings.model_fields["shutdown_timeout_seconds"].default
        jobs_grace = float(env.get("JOBS_SHUTDOWN_TIMEOUT_SECONDS", default_grace))
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM"
        # the update drain and the engine's grace (both this long) run one after the other,
        # then the outbox's (its loop, then its sends in flight: each up to its timeout)
        worst = 2 * jobs_grace + 2 * outbox_grace
        assert seconds(service["stop_grace_period"]) >= worst, name


def test_no_process_is_given_a_share_of_the_send_rate(compose) -> None:
    """The outbox budget is the bot's, shared through the database: a process given a
    fraction of it would leave the rest unused when it is alone (issue 11 item 3)."""
    whole = OutboxSettings.model_fields["global_per_second"].default
    for name, service in bot_services(compose).items():
        rate = int(environment(service).get("OUTBOX_GLOBAL_PER_SECOND", whole))
        assert rate == whole, f"{name} sends at {rate}/s, not the bot's {whole}/s"


def test_build_contexts_and_bind_mounts_exist(compose) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file(), name
        image = service.get("image")
        if image is not None:
            assert re.fullmatch(r"[a-z0-9./_-]+:[A-Za-z0-9._-]+", image), f"{name}: {image}"
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source}"


def test_the_load_balancer_forwards_to_every_bot_and_keeps_metrics_inside(compose) -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", conf, re.MULTILINE))
    wanted = {f"{name}:{environment(s)['HTTP_PORT']}" for name, s in bot_services(compose).items()}
    assert upstream == wanted
    assert re.search(r"location = /metrics \{\s*return 404;", conf)
    assert "proxy_pass http://opsdeck;" in conf
    # a draining process answers the webhook 503 without taking the update: retry elsewhere
    assert re.search(r"proxy_next_upstream[^;]*http_503[^;]*non_idempotent", conf)


def test_the_readme_names_every_variable_the_compose_file_needs(compose) -> None:
    section = readme_section("Deployment and scale-out")
    needed = variables(COMPOSE.read_text())
    assert needed - setting_names() <= COMPOSE_ONLY
    missing = {name for name in needed if f"`{name}`" not in section}
    assert not missing, f"README 'Deployment and scale-out' does not mention {sorted(missing)}"
    for name in bot_services(compose):
        assert name in section


# -- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_runs_opsdeck_as_non_root_with_data_in_a_volume() -> None:
    steps = dockerfile_instructions()
    kinds = [k for k, _ in steps]
    base = next(args for k, args in steps if k == "FROM")
    assert re.match(r"python:3\.(1[1-9])\b", base), base
    env: dict[str, str] = {}
    for k, args in steps:
        if k == "ENV":
            env.update(dict(part.split("=", 1) for part in shlex.split(args)))
    assert env["OPSDECK_DATA_DIR"] == "/data"
    assert env["HTTP_HOST"] == "0.0.0.0"
    opsdeck_env = {name for name in env if not name.startswith(("PYTHON", "PIP_"))}
    assert opsdeck_env <= setting_names()

    users = [args for k, args in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    last_user = max(i for i, k in enumerate(kinds) if k == "USER")
    assert last_user > max(i for i, k in enumerate(kinds) if k == "RUN"), "USER after RUN"
    assert any(k == "RUN" and "useradd" in a and users[-1] in a for k, a in steps)
    assert any(k == "RUN" and "chown" in a and "/data" in a for k, a in steps)
    assert ("VOLUME", '["/data"]') in steps

    expose = next(args for k, args in steps if k == "EXPOSE")
    assert expose == env["HTTP_PORT"]
    health = next(args for k, args in steps if k == "HEALTHCHECK")
    assert "/healthz" in health and "HTTP_PORT" in health
    assert ("STOPSIGNAL", "SIGTERM") in steps
    assert next(args for k, args in steps if k == "CMD") == '["python", "-m", "bot", "run"]'


def test_the_dockerfile_copies_what_the_package_needs() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = set()
    for k, args in dockerfile_instructions():
        if k == "COPY":
            *sources, _target = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                copied.add(source)
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {".env", ".venv/", "data/"} <= set(ignored)
    assert not set(copied) & {p.rstrip("/") for p in ignored}
