"""docs/OPERATIONS.md's shell blocks, run in order as an on-call engineer runs them.

Every fenced block of the runbook is a shell block that runs here, or one after the marker
``<!-- runbook-test: skip (reason) -->`` saying why not (the Kubernetes ``rollout``, a sync with
a checkpoint's own key). A block with no language fails the test.

How it runs them, and where that differs from production:

- against a throwaway PostgreSQL cluster of the test's own, on a database named ``yuekang`` that
  is empty when the runbook starts (the first deployment makes the schema and the keys), and with
  the reference Macao system running beside it as the partner;
- all blocks in one ``bash`` (``set -e -o pipefail``, so a failing command fails the test and
  names its block), in a directory of the test's own, with the suite's ``yuekang`` first on
  ``PATH`` and the production-style variables exported: ``YUEKANG_DATABASE_URL`` and every
  ``YUEKANG_SECRETS__*`` (PII key ``k1``), nothing from the suite's environment;
- ``rollout`` is the test's: it stops its ``yuekang serve`` (started by the first ``rollout``)
  and starts it again with the shell's environment as it is now, and waits for ``/readyz``;
  a one-process stand-in for a rolling restart;
- ``YUEKANG_ENV=dev``, so that the test can sign a resident in (the one-time code comes back in
  the answer) and prove their identity against the built-in registry, to have personal data,
  codes and revocations for the runbook to act on; ``serve --no-migrate`` still leaves the schema
  to the runbook's ``yuekang db upgrade``, and the runbook makes every key before the server
  first starts (so development's own key bootstrap finds them and makes none). The publish lead
  is 0 s (an hour in production: the runbook says when to wait), and code reuse is off with an
  Idempotency-Key on each request (so that each code the test asks for is signed then, with the
  keys and passphrase of that moment);
- the test's own steps (a resident, a checkpoint, their verdicts) run between the runbook's
  blocks, after the block holding a given line, and print ``TEST ...`` lines that the test
  reads with the runbook's own output.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.postgres import create_database, private_cluster
from support.servers import free_port, serve
from test_readme import SHELLS, blocks, run_script

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = ROOT / "docs" / "OPERATIONS.md"
SKIP = re.compile(r"<!-- runbook-test: skip \((?P<reason>[^)]+)\) -->")
SECONDS = 1200
"""About 40 commands, each a fresh process that builds its settings and engine: 3-4 s of CPU
apiece; the whole run took 13 minutes on the shared 2-core machine at a load of 8."""

PROLOGUE = r"""
set -E -e -o pipefail
trap 'echo "runbook block at line $BLOCK failed (exit $?)" >&2' ERR
SERVER_PID=
trap '[ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true' EXIT
# The test's rollout: the server again, with this shell's environment as it is now.
rollout() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID"; wait "$SERVER_PID" || true; fi
  yuekang serve --port "$PORT" --no-migrate >> server.log 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    if curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz"; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then tail -n 40 server.log >&2; return 1; fi
    sleep 0.2
  done
  echo "the server did not get ready" >&2
  return 1
}
field() { python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]: value = value[key]
print(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))' "$@"; }
"""

# The test's own steps, each after the first runbook block holding the given line.
STEPS = {
    'yuekang operators create "on-call admin"': r"""
# A resident (a sample person of the built-in registry) with a code, and a checkpoint.
curl -fsS -X POST $API/v1/auth/otp -H 'content-type: application/json' \
  -d '{"phone": "+8613800138000"}' > otp.json
TOKEN=$(curl -fsS -X POST $API/v1/auth/token -H 'content-type: application/json' \
  -d "{\"phone\": \"+8613800138000\", \"challenge_id\": \"$(field challenge_id < otp.json)\",
       \"code\": \"$(field dev_code < otp.json)\"}" | field access_token)
curl -fsS -o /dev/null -X PUT $API/v1/me/identity -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"name": "张小三", "doc_type": "prc_id",
  "doc_number": "11010519491231002X", "birth_date": "1949-12-31"}'
# With an Idempotency-Key, each request signs a new code (the batched path answers a live code
# again whatever YUEKANG_CODES__REUSE says).
new_code() { curl -fsS -X POST $API/v1/codes -H "authorization: Bearer $TOKEN" \
  -H "idempotency-key: runbook-$1" > "$1"; }
GATE_KEY=$(yuekang checkpoints create "test gate")
verdict() { curl -fsS -X POST $API/v1/verify -H "authorization: Bearer $GATE_KEY" \
  -H 'content-type: application/json' -d "{\"qr_text\": \"$(field qr_text < "$1")\"}"; }
new_code first.json
echo "TEST first code: $(verdict first.json)"
""",
    "STANDBY=$(yuekang keys generate": r"""
new_code rotated.json                          # signed by the new key, compromised below
""",
    'yuekang keys retire "$BAD" --compromised': r"""
echo "TEST first code after the compromise: $(verdict first.json)"
echo "TEST the compromised key's code: $(verdict rotated.json)"
new_code second.json
echo "TEST a new code after the compromise: $(verdict second.json)"
# What the alert section's sync does, with the test's checkpoint key.
echo "TEST bundle sync: $(curl -fsS -o /dev/null -w '%{http_code}' $API/v1/trust-bundle \
  -H "authorization: Bearer $GATE_KEY")"
""",
    'yuekang pii status >/dev/null && echo "every row readable"': r"""
echo "TEST identity under k2 alone: $(curl -fsS $API/v1/me/identity \
  -H "authorization: Bearer $TOKEN" | field masked_name)"
""",
    "rm new-passphrase": r"""
new_code third.json
echo "TEST a code signed after the new passphrase: $(verdict third.json)"
""",
    'pg_dump --format=custom --file="$BACKUP" "$PGURL"': r"""
# After the backup, the resident's status gets worse: their code is revoked.
yuekang status set --doc-type prc_id --doc-number 11010519491231002X --status red \
  --reason "close contact"
echo "TEST after the backup: $(verdict third.json)"
BUNDLE_BEFORE=$(curl -fsS -D - -o /dev/null $API/v1/trust-bundle \
  -H "authorization: Bearer $GATE_KEY" | tr -d '\r' | sed -n 's/^etag: "v\(.*\)"$/\1/Ip')
""",
    # The restore's block ends with its rollout.
    "yuekang trust advance": r"""
echo "TEST restored database: $(psql "$PGURL" -Atc 'SELECT current_database()')"
echo "TEST after the restore: $(verdict third.json)"
BUNDLE_AFTER=$(curl -fsS -D - -o /dev/null $API/v1/trust-bundle \
  -H "authorization: Bearer $GATE_KEY" | tr -d '\r' | sed -n 's/^etag: "v\(.*\)"$/\1/Ip')
echo "TEST bundle version: $BUNDLE_BEFORE before the restore, $BUNDLE_AFTER after"
""",
}


def runbook_blocks() -> list[tuple[int, str]]:
    """(line, text) of each block that runs."""
    return [
        (b.line, b.text)
        for b in blocks(RUNBOOK.read_text(), SKIP)
        if b.language in SHELLS and b.skip is None
    ]


def test_every_block_has_a_language_and_every_skip_a_reason() -> None:
    text = RUNBOOK.read_text()
    found = blocks(text, SKIP)
    assert [b.line for b in found if not b.language] == []
    assert [b.line for b in found if b.skip and b.language not in SHELLS] == []
    # A marker must sit right above its block; one anywhere else would skip nothing.
    assert text.count("runbook-test: skip") == sum(1 for b in found if b.skip)
    # Deliberately few: what only Kubernetes or a checkpoint's device can do.
    assert sum(1 for b in found if b.skip) <= 3
    assert len(runbook_blocks()) >= 15
    # Every test step finds its block.
    joined = "\n".join(t for _, t in runbook_blocks())
    assert [line for line in STEPS if line not in joined] == []


def test_every_alert_section_names_an_alert_and_every_alert_has_one() -> None:
    """deploy/prometheus's alerts link to docs/OPERATIONS.md#alert-<name>: each has its section,
    and no section is left for an alert that is gone."""
    yaml = pytest.importorskip("yaml")
    alerts = {
        rule["alert"]
        for path in (ROOT / "deploy" / "prometheus").glob("*.yml")
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", [])
        for rule in group.get("rules", [])
        if "alert" in rule
    }
    sections = set(re.findall(r"^### Alert: (\w+)$", RUNBOOK.read_text(), re.MULTILINE))
    assert alerts, "no alert rules found"
    assert sorted(alerts - sections) == [] and sorted(sections - alerts) == []


def _environment(database_url: str, work: Path) -> dict[str, str]:
    """What a production deployment gives every process, and no variable of the suite's."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("YUEKANG_", "MACAO_", "REGISTRY_", "PROMETHEUS_"))
    }
    venv_bin = str(Path(sys.executable).parent)
    pii_key = base64.b64encode(os.urandom(32)).decode()
    return keep | {
        "PATH": f"{venv_bin}:{keep.get('PATH', '/usr/bin:/bin')}",
        "TMPDIR": str(work),
        "YUEKANG_ENV": "dev",
        "YUEKANG_DATABASE_URL": database_url,
        "YUEKANG_KEYS_DIR": str(work / "keys"),
        "YUEKANG_PROOFING__BUILTIN_DIR": str(work / "registry"),
        "YUEKANG_KEYS__PUBLISH_LEAD_SECONDS": "0",
        "YUEKANG_CODES__REUSE": "false",
        "YUEKANG_SECRETS__KEY_PASSPHRASE": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__SESSION_SECRET": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__OTP_SECRET": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__PII_KEYS": f'{{"k1": "{pii_key}"}}',
        "YUEKANG_SECRETS__PII_ACTIVE_KEY_ID": "k1",
    }


@pytest.fixture
def cluster_url() -> Iterator[str]:
    with private_cluster() as cluster:
        yield create_database(cluster.server_url, "yuekang")


def test_the_runbook_runs_as_written(cluster_url: str, tmp_path: Path) -> None:
    work = tmp_path / "admin"
    work.mkdir()
    env = _environment(cluster_url, work)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    macao_dir = tmp_path / "macao"
    with serve(
        env,
        tmp_path,
        name="macao",
        command=("partner", "macao", "serve", "--guangdong-url", api, "--data-dir", str(macao_dir)),
        wait_seconds=60,
    ) as macao:
        kids = subprocess.run(
            ["yuekang", "partner", "macao", "keys", "--ids", "--data-dir", str(macao_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(kids) >= 2
        script = [PROLOGUE, f"PORT={port}"]
        pending = dict(STEPS)
        for line, text in runbook_blocks():
            text = text.replace("https://yuekang.example.org", api)
            text = text.replace("https://macao.example.org", macao.base)
            text = text.replace('"KID-1 KID-2 KID-3"', f'"{" ".join(kids)}"')
            # The partner's compromise notice names one of its keys (the last announced).
            text = text.replace("KID-FROM-THE-NOTICE", kids[-1])
            script += [f"BLOCK={line}", text]
            for marker in [m for m in pending if m in text]:
                script.append(pending.pop(marker))
        body = "\n".join(script)
        assert "example.org" not in body and "KID-" not in body
        returncode, text = run_script(
            body,
            cwd=work,
            env=env,
            transcript=tmp_path / "transcript.txt",
            seconds=SECONDS,
            what="the runbook",
        )
    log = (
        (work / "server.log").read_text(errors="replace") if (work / "server.log").exists() else ""
    )
    assert returncode == 0, text[-6000:] + "\n--- server.log\n" + log[-3000:]
    lines = text.splitlines()

    def line(prefix: str) -> str:
        found = [entry for entry in lines if entry.startswith(prefix)]
        assert found, f"no line starting {prefix!r} in:\n{text}"
        return found[-1]

    # What the runbook says each step shows.
    shown = [
        "database reachable",
        "database at head",
        "signing key published",
        '{"status":"ok"}',
        "active pending retired",  # after a rotation: the new key, the standby, the old one
        "withdrawn",
        "partner macao: issuer MO, format MO1",
        f"partner key {kids[-1]} retired",
        "rows under k1: 0 - under old keys: 0",
        "every row readable",
        "the new passphrase opens the keys",
        "every personal field readable",
    ]
    assert [s for s in shown if s not in text] == [], text
    assert "STILL PUBLISHED" not in text
    # The compromise: the key's code fails online at once, a new one is signed by the standby.
    assert '"verdict":"valid"' in line("TEST first code:")
    # A code of the retired key it replaced still verifies; the compromised key's does not.
    assert '"verdict":"valid"' in line("TEST first code after the compromise:")
    assert '"code":"key_not_valid"' in line("TEST the compromised key's code:")
    assert '"verdict":"valid"' in line("TEST a new code after the compromise:")
    assert line("TEST bundle sync:").endswith("200")
    # Personal data under the new key alone; codes signed under the new passphrase.
    assert line("TEST identity under k2 alone:").endswith("张*三")
    assert '"verdict":"valid"' in line("TEST a code signed after the new passphrase:")
    assert re.search(r"^signing_keys: \d+ rewrapped", text, re.MULTILINE), text
    # Each of the test's codes was signed when it was asked for, none answered again.
    ids = re.findall(r'^TEST [^:]+: \{"verdict":"valid".*?"code_id":"([^"]+)"', text, re.MULTILINE)
    assert len(ids) >= 4 and len(set(ids)) == 3, ids  # first (twice), second, third (twice)
    # Backup and restore: the revocation made after the backup is lost, as the runbook warns,
    # and the restored server's bundles are numbered past the ones checkpoints hold.
    assert '"code":"revoked"' in line("TEST after the backup:")
    assert line("TEST restored database:").endswith("yuekang_restored")
    assert '"verdict":"valid"' in line("TEST after the restore:")
    versions = re.fullmatch(
        r"TEST bundle version: (\d+) before the restore, (\d+) after", line("TEST bundle version:")
    )
    assert versions is not None
    assert int(versions.group(2)) > int(versions.group(1)) + 1000
    assert re.search(r"^trust bundle version \d+ \(was \d+\)$", text, re.MULTILINE), text
