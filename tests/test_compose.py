"""``compose.yaml`` and ``Dockerfile``, without a Docker engine.

The compose file (with its ``${VAR:-default}`` defaults filled in, as Compose does with no .env) is
valid against the Compose specification's JSON schema (vendored under tests/data/compose-spec with
its licence); every ``credits`` command it runs exists in the installed package with those options;
every variable it gives the ledger's containers is a setting of ``ledger.settings.Settings`` and
parses; every service it waits for exists and has what the wait needs. The Dockerfile copies what
the package is built from and runs as an unprivileged user.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ledger.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = REPO_ROOT / "compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec" / "compose-spec.json"
#: The installed package's command (the venv running the tests).
CREDITS = Path(sys.executable).parent / "credits"

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}")


def interpolate(node: Any) -> Any:
    """``node`` with each ``${NAME:-default}`` as Compose reads it when NAME is unset (``${NAME}``: empty)."""
    if isinstance(node, str):
        return _VARIABLE.sub(lambda m: m["default"] or "", node)
    if isinstance(node, dict):
        return {k: interpolate(v) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v) for v in node]
    return node


def compose() -> dict[str, Any]:
    document: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))
    return document


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def ledger_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the package: their command is ``credits ...``."""
    return {name: s for name, s in document["services"].items() if (s.get("command") or [None])[0] == "credits"}


def setting_names() -> set[str]:
    """The environment variables ``Settings`` reads: ``CREDITS_<FIELD>``, or a field's alias."""
    prefix = Settings.model_config.get("env_prefix", "")
    return {field.validation_alias if isinstance(field.validation_alias, str) else f"{prefix}{name}".upper()
            for name, field in Settings.model_fields.items()}


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


# --- the Compose specification --------------------------------------------------------------------

def test_compose_yaml_is_valid_against_the_compose_specification() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(compose())]
    assert errors == []


@pytest.mark.parametrize("break_it", [
    lambda d: d["services"]["api"].update(comand=["credits", "serve"]),  # a misspelt key
    lambda d: d["services"]["worker"]["depends_on"]["migrate"].update(condition="service_finished"),
    lambda d: d["services"]["redis"]["healthcheck"].update(interval=5),  # a duration is a string
    lambda d: d["volumes"].update({"bad name!": None}),
])
def test_the_schema_refuses_a_broken_file(break_it: Any) -> None:
    document = compose()
    break_it(document)
    assert list(validator().iter_errors(document)) != []


# --- what the ledger's containers run and are given ---------------------------------------------

def test_each_process_of_the_ledger_has_a_service() -> None:
    commands = {shlex.join(s["command"][1:3]) for s in ledger_services(compose()).values()}
    assert {"migrate", "serve --api-only", "worker --no-projections", "scheduler", "projections run"} <= commands


def _help(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CREDITS), *args, "--help"], capture_output=True, text=True, timeout=120, check=False,
                          env={k: v for k, v in os.environ.items() if k != "COLUMNS"})


@pytest.mark.parametrize("service", sorted(ledger_services(compose())))
def test_each_credits_command_exists_with_its_options(service: str) -> None:
    command = ledger_services(compose())[service]["command"]
    done = _help(command[1:])
    assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stdout}\n{done.stderr}"


def test_a_command_or_option_that_does_not_exist_fails_that_check() -> None:
    assert _help(["serve", "--no-such-option"]).returncode != 0
    assert _help(["no-such-command"]).returncode != 0


def test_the_dockerfiles_default_command_exists() -> None:
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert cmd is not None
    command = json.loads(cmd[1])
    assert command[0] == "credits" and _help(command[1:]).returncode == 0, command


def test_every_variable_given_to_the_ledger_is_a_setting_and_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    known = setting_names()
    assert {"DATABASE_URL", "REDIS_URL", "BROKER_URL", "STRIPE_API_KEY", "CREDITS_POOL_SIZE"} <= known
    for name, service in ledger_services(compose()).items():
        env = environment(service)
        unknown = sorted(set(env) - known)
        assert unknown == [], f"{name}: not settings of ledger/settings.py: {unknown}"
        for key in [k for k in os.environ if k.startswith("CREDITS_") or k in known]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if value is not None:  # None: passed on from the host when set there
                monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.database_url == env["DATABASE_URL"], name


def test_a_variable_that_is_no_setting_is_caught() -> None:
    known = setting_names()
    assert "CREDITS_NO_SUCH_SETTING" not in known and "DATABASE_URI" not in known
    assert "CREDITS_DATABASE_URL" not in known  # an aliased field is read by its alias only


def test_every_service_waited_for_exists_and_can_be_waited_for() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for other, wait in (service.get("depends_on") or {}).items():
            assert other in services, f"{name} waits for {other}, which is no service"
            if wait["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other} to be healthy: it has no check"
            if wait["condition"] == "service_completed_successfully":
                assert services[other].get("restart") == "no", f"{other} runs once: it must not restart"
    for name in ledger_services(compose()):
        if name != "migrate":
            assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    assert "readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "rabbitmq" in services["rabbitmq"]["profiles"]
    # The services of the default profile wait for RabbitMQ only when its profile runs it.
    optional = [name for name, s in services.items() if "rabbitmq" in (s.get("depends_on") or {})]
    assert optional and all(services[n]["depends_on"]["rabbitmq"]["required"] is False for n in optional)


# --- the Dockerfile ------------------------------------------------------------------------------

def test_the_dockerfile_copies_what_the_package_is_built_from_and_drops_root() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    copied = {source for line in re.findall(r"^COPY (.+)$", text, re.M) for source in line.split()[:-1]}
    assert all((REPO_ROOT / source).exists() for source in copied), copied
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied
    assert re.search(r"^RUN pip install \.", text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in {"root", "0"}
