"""Every example in README.md and docs/*.md runs as written, against a live ``credits serve``.

The rules:

- Every fenced block names its language. ``sh`` blocks run in bash under ``set -euo pipefail``,
  ``python`` blocks with this interpreter, ``sql`` blocks on the database; an untagged block
  fails the test, so no command hides from it.
- Blocks run in document order (README.md, then docs/*.md by name) on one brand-new, empty
  database (the first command migrates it and stores the shipped sample card, not the tests'
  frozen one), as a reader following along would: a later block may use what an earlier one made (docs/workers.md's
  producer charges the README's ``acme``). Where the docs first start ``credits serve`` (a
  skipped block, below), the test starts its own, in the default mode (API, relay, worker,
  scheduler) on a free port, and stops it at the end. The blocks' environment points at that
  server and database (``DATABASE_URL``, ``REDIS_URL``, ``CREDITS_BROKER_NAMESPACE``,
  ``CREDITS_DATA_DIR``, and ``PATH`` with this interpreter's ``credits`` first); the working
  directory is the checkout.
- The one rewrite: ``localhost:8000`` becomes the test server's address (:func:`as_run`).
- Every ``curl`` passes ``-f``, ``--fail`` or ``--fail-with-body``, so a 4xx fails its block.
- A block right after a ``<!-- not run: REASON -->`` line is skipped. That is for blocks that
  start long-running processes (this test's server is such a ``credits serve``), install things
  or run the suite, run for minutes (benchmarks), are a fragment of someone else's code, or are
  run by another test. :data:`NOT_RUN` lists them, so one more skip is a visible change here. Their
  commands are still parsed: ``credits ...`` with ``--help`` appended, ``python -m bench.<name>
  ...`` through that module's ``parse_args``, so a renamed command or option fails.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.cli.app import app
from ledger.rates import sample_rate_card
from tests.ledger.api.live import free_port, wait_until_ready
from tests.ledger.cli.test_cli import query

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
RUN = {"sh", "python", "sql"}
#: Languages of blocks that show data, not something to run.
DATA = {"json", "toml", "text"}

#: The skipped blocks, as (file, first line without its comment); each has its reason in the doc.
NOT_RUN = {
    ("README.md", "pip install -e . && credits demo"),
    ("README.md", "pip install -e '.[test]' && pytest"),
    ("README.md", "credits serve"),
    ("README.md", "from ledger.client import Client, PaymentRequiredError"),
    ("README.md", "credits worker"),
    ("README.md", "docker compose up -d --build"),
    ("README.md", "BROKER_URL=amqp://credits:credits@rabbitmq:5672/ docker compose --profile rabbitmq up -d"),
    ("README.md", "credits demo --live"),
    ("docs/api.md", "credits serve --host 0.0.0.0 --port 8000 --workers 2"),
    ("docs/api.md", "curl -sS --fail-with-body -X POST localhost:8000/v1/accounts/quill-ada/checkout"
                    ' -H "Authorization: Bearer $OP" \\'),
    ("docs/benchmarks.md", "python -m bench.write_path"),
    ("docs/benchmarks.md", "python -m bench.http"),
    ("docs/benchmarks.md", "python -m bench.workers"),
    ("docs/benchmarks.md", "python -m bench.projections"),
    ("docs/operations.md", "pg_basebackup -h db.internal -U replicator -D /backup/base/$(date -u +%Y%m%d) -Ft -z"
                           " -X stream --checkpoint=fast"),
    ("docs/operations.md", "tar -xzf /backup/base/20261207/base.tar.gz -C /var/lib/postgresql/16/main"),
    ("docs/scaling.md", "credits serve --api-only --host 0.0.0.0 --workers 4"),
    ("docs/scaling.md", "SELECT create_distributed_table('accounts', 'account_id');"),
    ("docs/stripe.md", "curl -sS --fail-with-body -X POST localhost:8000/v1/accounts/acme/checkout"
                       ' -H "Authorization: Bearer $ADMIN_KEY" \\'),
    ("docs/stripe.md", "credits refund acme 0193a6c8-5b7e-7c3a-9d2e-4f1a2b3c4d5e --amount 200"
                       ' --reason "asked within 30 days"'),
    ("docs/stripe.md", "credits stripe-standin --webhook-url http://localhost:8000/v1/stripe/webhook"
                       " --webhook-secret whsec_local"),
    ("docs/workers.md", "credits worker"),
    ("docs/workers.md", "from standardwebhooks import Webhook"),
}

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
NOT_RUN_MARK = re.compile(r"^\s*<!-- not run: (?P<reason>.+\S) -->\s*$")
CURL_FAILS = re.compile(r"\s(-[a-zA-Z]*f[a-zA-Z]*|--fail|--fail-with-body)(?=\s|$)")


@dataclass(frozen=True)
class Block:
    file: str  # relative to the checkout
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the reason, when marked

    @property
    def first(self) -> str:
        """Its first line without the comment: how NOT_RUN and CHECKS name it."""
        return re.sub(r"\s+#.*$", "", self.code.splitlines()[0]).strip() if self.code.strip() else ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def blocks() -> list[Block]:
    """Every fenced block of README.md and docs/*.md, in reading order."""
    found = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            opening = FENCE.match(lines[i])
            if not opening:
                i += 1
                continue
            indent = len(opening["indent"])
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            code = "\n".join(line[indent:] for line in lines[i + 1:end]) + "\n"
            mark = NOT_RUN_MARK.match(lines[i - 1]) if i else None
            found.append(Block(str(doc.relative_to(REPO_ROOT)), i + 1, opening["lang"], code,
                               mark["reason"] if mark else None))
            i = end + 1
    return found


def as_run(code: str, address: str) -> str:
    """The only rewrite: the docs' server address becomes the test server's."""
    return code.replace("localhost:8000", address)


def commands(code: str) -> Iterator[list[str]]:
    """The commands of a shell block, as argument lists (continuations joined, comments and ``&&`` split)."""
    for line in code.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words:
                yield words


# --- what the blocks print, checked where it is cheap -------------------------------------------

def json_documents(out: str) -> list[Any]:
    """The JSON bodies curl printed back to back."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while at < len(out.rstrip()):
        doc, at = decoder.raw_decode(out, at)
        docs.append(doc)
        while at < len(out) and out[at].isspace():
            at += 1
    return docs


def tour(out: str, database_url: str) -> None:
    assert re.fullmatch(r"verify: \d+ accounts, \d+ events, clean", out.strip().splitlines()[-1]), out


def service(out: str, database_url: str) -> None:
    int(out.strip().splitlines()[-1])  # a balance in µcr: an integer


def http_tour(out: str, database_url: str) -> None:
    account, charge, balance = json_documents(out)
    assert account["id"] == "acme", account
    assert charge["rate_card_version"] == sample_rate_card().version, "priced with the shipped card, as a reader's"
    # The sample card's gpt-4o: 1,200 × 250 / 1M + 350 × 1,000 / 1M = 0.65 credits.
    assert charge["id"] and charge["amount_ucr"] == 650_000, charge
    assert balance["balance_ucr"] == charge["balance_after_ucr"], (charge, balance)
    # Pro opens with 500 signup and 2,500 monthly credits; the README's SDK example shows what is left.
    assert balance["balance"] == "2999.350000", balance


def operator_key(out: str, database_url: str) -> None:
    assert out.strip().splitlines()[-1].startswith("cl_"), out


def producer(out: str, database_url: str) -> None:
    """The server's worker records the message's usage (it is asynchronous: wait for it)."""
    sql = "SELECT count(*) FROM events WHERE account_id = 'acme' AND idempotency_key = 'req-8812'"
    deadline = time.monotonic() + 30
    while (recorded := query(database_url, sql)[0][0]) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert recorded == 1, "the producer's usage was not recorded"


#: Checks of what a block printed, by (file, first line); every other block must only succeed.
CHECKS: dict[tuple[str, str], Callable[[str, str], None]] = {
    ("README.md", "credits demo"): tour,
    ("README.md", "import asyncio"): service,
    ("README.md", "KEY=$(credits keys create --role operator --name backend | tail -n 1)"): http_tour,
    ("docs/api.md", "credits keys create --role operator --name backend"): operator_key,
    ("docs/workers.md", "import os"): producer,
}


# --- the server ---------------------------------------------------------------------------------

def environment(database_url: str, redis_url: str, data_dir: Path, port: int) -> dict[str, str]:
    """The shell's environment minus its own ledger settings, pointed at the test's server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITS_") and k != "BROKER_URL"}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, CREDITS_DATA_DIR=str(data_dir),
               CREDITS_BROKER_NAMESPACE=f"credits-test-docs-{port}-{secrets.token_hex(3)}",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return tail(self.log.read_text(errors="replace"))


def start_server(env: dict[str, str], port: int, log: Path) -> Server:
    """``credits serve`` as a reader runs it, on ``port``; returned once it answers /readyz."""
    with log.open("wb") as out:
        proc = subprocess.Popen(["credits", "serve", "--port", str(port), "--log-level", "warning"], env=env,
                                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, log)
    wait_until_ready(proc, port, output=server.log_tail)
    return server


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_block(block: Block, env: dict[str, str], address: str, database_url: str) -> str | None:
    """Run one block; ``None`` when it worked, else what went wrong."""
    code = as_run(block.code, address)
    if block.lang == "sql":
        try:
            query(database_url, code)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None
    argv = ["bash", "-c", "set -euo pipefail\n" + code] if block.lang == "sh" else [sys.executable, "-"]
    done = subprocess.run(argv, input=code if block.lang == "python" else None, env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    printed = f"--- stdout (end)\n{tail(done.stdout)}\n--- stderr (end)\n{tail(done.stderr)}"
    if done.returncode != 0:
        return f"exit {done.returncode}\n{printed}"
    check = CHECKS.get((block.file, block.first))
    try:
        if check is not None:
            check(done.stdout, database_url)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}\n{printed}"
    return None


# --- the tests ----------------------------------------------------------------------------------

def test_every_block_is_tagged_and_few_are_skipped() -> None:
    found = blocks()
    assert [str(b) for b in found if b.lang not in RUN | DATA] == [], "tag every fenced block with its language"
    assert {(b.file, b.first) for b in found if b.not_run} == NOT_RUN
    assert [str(b) for b in found if b.not_run and b.lang not in RUN] == []
    run = [b for b in found if b.lang in RUN and not b.not_run]
    assert set(CHECKS) <= {(b.file, b.first) for b in run}, "a check names a block that is not run"
    no_fail = [str(b) for b in run if b.lang == "sh" for words in commands(b.code)
               if words[0] == "curl" and not CURL_FAILS.search(" " + " ".join(words))]
    assert no_fail == [], "every curl needs -f / --fail-with-body, so a 4xx fails the example"


def test_the_commands_of_skipped_blocks_parse() -> None:
    """What is not run still names commands and options that exist."""
    checked = 0
    for block in blocks():
        if block.not_run is None or block.lang != "sh":
            continue
        for words in commands(block.code):
            if words[0] == "credits":
                result = CliRunner().invoke(app, [*words[1:], "--help"])
                assert result.exit_code == 0, f"{block}: {shlex.join(words)}\n{result.output}"
                checked += 1
            elif words[:2] == ["python", "-m"] and words[2].startswith("bench."):
                try:
                    importlib.import_module(words[2]).parse_args(words[3:])
                except SystemExit:  # argparse's answer to a bad option
                    pytest.fail(f"{block}: {shlex.join(words)} does not parse")
                checked += 1
    assert checked >= 10


@pytest.mark.slow
def test_every_example_runs_as_written(empty_database_url: str, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = environment(empty_database_url, redis_url, tmp_path / "data", port)
    server: Server | None = None
    failures = []
    try:
        for block in blocks():
            if server is None and block.not_run and any(w[:2] == ["credits", "serve"] for w in commands(block.code)):
                server = start_server(env, port, tmp_path / "serve.log")  # where the reader starts theirs
            if block.lang in RUN and block.not_run is None:
                problem = run_block(block, env, f"127.0.0.1:{port}", empty_database_url)
                if problem is not None:
                    failures.append(f"{block} ({block.lang}): {problem}")
    finally:
        if server is not None:
            stop_server(server)
    assert server is not None, "no skipped block starts `credits serve`"
    assert not failures, "\n\n".join([*failures, f"--- the server's log\n{server.log_tail()}"])
