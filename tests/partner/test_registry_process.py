"""The reference identity registry as a real process, as the main service meets it: filled by the
``load`` command while it runs (one SQLite file, two processes), its secret read with
``credentials``, checked with ``HttpProofing`` over a socket, down, and back on the same port."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import httpx
import pytest

from support.servers import cli, serve
from yuekang.codec.proofing import Person
from yuekang.residents.documents import mod11_2_check
from yuekang.residents.proofing import HttpProofing, ProofingResult, ProofingUnavailable

pytestmark = pytest.mark.e2e

REGISTRY = ("partner", "registry", "serve")
ZHANG = Person("张小三", "prc_id", "11010519491231002X", dt.date(1949, 12, 31))
WANG = Person(
    "王五",
    "prc_id",
    "44010419900101123" + mod11_2_check("44010419900101123"),
    dt.date(1990, 1, 1),
)
WANG_PHONE = "+8613911112222"


async def check(
    base: str, credentials: dict[str, str], person: Person, phone: str | None
) -> ProofingResult:
    async with httpx.AsyncClient() as client:
        proofing = HttpProofing(
            client=client,
            url=base,
            client_id=credentials["client_id"],
            secret=credentials["client_secret"].encode(),
            timeout=1.0,
            budget=2.0,
            backoff=0.1,
        )
        return await proofing.check(person=person, phone=phone, purpose="bind")


async def test_registry_process(tmp_path: Path) -> None:
    env = {**os.environ, "REGISTRY_DATA_DIR": str(tmp_path / "registry")}
    records = tmp_path / "records.ndjson"
    records.write_text(
        json.dumps(
            {"kind": "person", "name": WANG.name, "doc_type": WANG.doc_type,
             "doc_number": WANG.doc_number, "birth_date": WANG.birth_date.isoformat()},
            ensure_ascii=False,
        ) + "\n" + json.dumps(
            {"kind": "subscription", "phone": WANG_PHONE, "doc_type": WANG.doc_type,
             "doc_number": WANG.doc_number, "name": WANG.name, "carrier": "China Mobile"},
            ensure_ascii=False,
        ) + "\n"
    )  # fmt: skip

    with serve(env, tmp_path, "registry", command=REGISTRY) as server:
        assert cli(env, tmp_path, "partner", "registry", "load", str(records)) == (
            "people=1 subscriptions=1 errors=0"
        )
        output = cli(env, tmp_path, "partner", "registry", "credentials")
        credentials = dict(line.split("=", 1) for line in output.splitlines())
        assert credentials["client_id"] == "yk-gd"

        loaded = await check(server.base, credentials, WANG, WANG_PHONE)
        assert (loaded.identity_matches, loaded.phone) == (True, "match")
        # The samples were seeded at start, beside what was loaded.
        sample = await check(server.base, credentials, ZHANG, WANG_PHONE)
        assert (sample.identity_matches, sample.phone) == (True, "no_match")
        log = server.log.read_text()
        assert "yk-gd" in log
        assert WANG.name not in log and WANG.doc_number not in log

    with pytest.raises(ProofingUnavailable):
        await check(server.base, credentials, WANG, WANG_PHONE)

    with serve(env, tmp_path, "registry-again", port=server.port, command=REGISTRY):
        again = await check(server.base, credentials, WANG, WANG_PHONE)
        assert (again.identity_matches, again.phone) == (True, "match")
