"""Hong Kong, the second partner, added as an adapter (yuekang.exchange.adapters.hongkong), a code
format (yuekang.codec.hongkong) and a mapping table, with a reference system
(yuekang_reference.hongkong) that speaks to the service over HTTP: a 港康碼 is verified at a
checkpoint and converted into a 粤康码, one way, as the 2022 scheme ran. Each test has a database
of its own (its own rule set and trust bundle)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningApp, make_settings
from verifier.test_isolation import layering_violations
from yuekang.clock import ManualClock, epoch
from yuekang.codec import formats
from yuekang.codec.hongkong import HongKongCodeClaims, read_hongkong_code, sign_hongkong_code
from yuekang.codec.keys import SigningKey, b64url_encode
from yuekang.config import Settings
from yuekang.exchange import adapters, partners
from yuekang.principals import Actor, Role
from yuekang.residents.documents import hkid_check
from yuekang.rules import default_rule_set
from yuekang_reference.hongkong import HongKong, create_app

ROOT = Path(__file__).resolve().parents[2]
HK_TIME = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(fresh_database_url, tmp_path / "keys")


def hkid(serial: int) -> str:
    body = f"A{serial:06d}"
    return body + hkid_check(body)


@dataclasses.dataclass
class Setup:
    hongkong: HongKong
    client: httpx.AsyncClient
    """The Hong Kong system's own API."""
    gate: str


async def start(
    running: RunningApp,
    clock: ManualClock,
    *,
    terms: bool = True,
    hongkong_terms: dict[str, Any] | None = None,
) -> Setup:
    """The Hong Kong system, registered here as an operator would (from its key document), with
    the rule set in force naming its terms (``hongkong_terms``, or ones with its own table) when
    ``terms``."""
    hongkong = HongKong(guangdong=running.client, now=lambda: epoch(clock.now()))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(hongkong)), base_url="http://hk.test"
    )
    document = (await client.get("/v1/exchange/keys")).json()
    async with running.context.sessionmaker() as session, session.begin():
        await partners.save(
            session,
            partner_id="hongkong",
            base_url="http://hk.test",
            document=partners.parse_key_document(document),
            actor=Actor.cli(),
            now=clock.now(),
        )
    running.context.keyring.invalidate()
    if terms:
        rules = copy.deepcopy(default_rule_set().document())
        rules["version"] = "gd-2021-hk"
        rules["exchange"]["hongkong"] = hongkong_terms or {
            "mapping": "gd-hk-2022",
            "home_regions": ["44", "81"],
        }
        author = await running.operator_token(Role.EPIDEMIOLOGIST)
        published = await running.client.post(
            "/v1/admin/rule-sets",
            content=json.dumps(rules),
            headers={"Authorization": f"Bearer {author}", "Content-Type": "application/json"},
        )
        assert published.status_code == 201, published.text
    return Setup(hongkong, client, await running.checkpoint_key())


def person(clock: ManualClock, serial: int = 1, **changes: Any) -> dict[str, Any]:
    tested = clock.now().astimezone(HK_TIME).date() - dt.timedelta(days=1)
    return {
        "name": "陳大文",
        "doc_type": "hkid",
        "doc_number": hkid(serial),
        "birth_date": "1990-01-02",
        "phone": f"+8529{serial:07d}",
        "nat_negative_on": tested.isoformat(),
        **changes,
    }


async def declare(setup: Setup, body: dict[str, Any]) -> tuple[str, str]:
    response = await setup.client.post("/v1/people", json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    return answer["person_id"], answer["code"]


async def convert(setup: Setup, person_id: str) -> httpx.Response:
    return await setup.client.post(
        f"/v1/people/{person_id}/conversions",
        json={"accepted": True, "recipient": "yk:gd", "fields": list(FIELDS)},
    )


async def verify(running: RunningApp, gate: str, qr_text: str) -> dict[str, Any]:
    response = await running.client.post(
        "/v1/verify",
        headers={"Authorization": f"Bearer {gate}", "Accept-Language": "en"},
        json={"qr_text": qr_text},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


FIELDS = ("name", "document", "birth_date", "phone", "status", "nat", "travel")


# --- the adapter is found, not wired ----------------------------------------------------------


def test_hong_kong_is_registered_from_its_entry_points() -> None:
    adapter = adapters.get("hongkong")

    assert adapter is not None
    assert (adapter.code_format, adapter.outbound) == ("HK1", False)
    assert adapter.reader() is formats.registered()["HK1"]
    assert adapter.table(adapter.default_table).colours == {
        "green": "green",
        "amber": "yellow",
        "red": "red",
    }
    assert formats.format_of("HK1:a.b.c") is formats.registered()["HK1"]
    assert formats.format_of("HK7:a.b.c") is formats.registered()["HK1"]  # a later version
    assert formats.format_of("MO1:ABC") is formats.registered()["MO1"]
    assert formats.format_of("YK1:a.b.c") is None  # ours is not a partner's


def test_the_hong_kong_format_is_as_pure_as_the_codec() -> None:
    # The offline verifier loads it by entry point: it must import what the codec may.
    path = ROOT / "src" / "yuekang" / "codec" / "hongkong.py"
    assert layering_violations(path.read_text("utf-8"), "yuekang.codec.hongkong") == []


def test_no_shared_module_names_hong_kong() -> None:
    # The proof of the registry: Hong Kong lives in its own files; nothing shared knows it.
    own = {
        "codec/hongkong.py",
        "exchange/adapters/hongkong.py",
        "exchange/mappings/gd-hk-2022.toml",
    }
    package = ROOT / "src" / "yuekang"
    naming = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.relative_to(package).as_posix() not in own
        and "web/assets" not in path.as_posix()
        and any(word in path.read_text("utf-8") for word in ("hongkong", "HK1", "HongKong"))
    ]
    assert naming == []


# --- the format ---------------------------------------------------------------------------------


def _claims(now: int, **changes: Any) -> HongKongCodeClaims:
    base = HongKongCodeClaims(
        iss="HK",
        jti=b64url_encode(b"0123456789abcdef"),
        iat=now,
        exp=now + 3600,
        st="green",
        nm="陳*文",
        dt="HKID",
        nat="2026-12-06",
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda t: t, None),
        (lambda t: "HK2" + t[3:], "unsupported_version"),
        (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), "bad_signature"),
        (lambda t: t.replace(".", "..", 1), "malformed"),
        (lambda t: "HK1:" + "e30." + t.split(".", 1)[1], "malformed"),
    ],
)
def test_a_hong_kong_code_is_read_or_refused_with_a_reason(tamper: Any, reason: str | None) -> None:
    key = SigningKey.generate("ES256")
    now = 1_765_000_000
    text = tamper(sign_hongkong_code(_claims(now), key))
    keys = {key.kid: dataclasses.replace(key.public(), issuer="HK")}
    if reason is None:
        claims, kid = read_hongkong_code(text, keys, now=now)
        assert (claims.st, claims.nm, claims.nat, kid) == ("green", "陳*文", "2026-12-06", key.kid)
        return
    from yuekang.codec.errors import InvalidCode

    with pytest.raises(InvalidCode) as refused:
        read_hongkong_code(text, keys, now=now)
    assert refused.value.reason.value == reason


def test_a_code_signed_for_another_issuer_or_expired_is_refused() -> None:
    from yuekang.codec.errors import ExpiredCode, UntrustedIssuer

    key = SigningKey.generate("ES256")
    keys = {key.kid: dataclasses.replace(key.public(), issuer="HK")}
    with pytest.raises(UntrustedIssuer):
        read_hongkong_code(sign_hongkong_code(_claims(100, iss="MO"), key), keys, now=100)
    with pytest.raises(ExpiredCode):
        read_hongkong_code(sign_hongkong_code(_claims(100), key), keys, now=100 + 3600 + 61)


# --- over HTTP ----------------------------------------------------------------------------------


async def test_a_checkpoint_recognises_a_hong_kong_code_once_hong_kong_is_registered(
    running: RunningApp, clock: ManualClock
) -> None:
    gate = await running.checkpoint_key()
    setup = await start(running, clock, terms=False)
    _, green = await declare(setup, person(clock))
    _, amber = await declare(setup, person(clock, 2, colour="amber"))

    judged = await verify(running, gate, green)
    cautioned = await verify(running, gate, amber)

    assert (judged["verdict"], judged["status"], judged["issuer"]) == ("valid", "green", "HK")
    assert judged["origin"] == "issued_by_hongkong"
    assert judged["masked_name"] == "陳*文"
    assert (cautioned["status"], cautioned["decision"]) == ("yellow", "deny")


async def test_a_hong_kong_code_becomes_a_guangdong_code(
    running: RunningApp, clock: ManualClock
) -> None:
    setup = await start(running, clock)
    person_id, hk_code = await declare(setup, person(clock))

    answer = await convert(setup, person_id)

    assert answer.status_code == 201, answer.text
    code = answer.json()["code"]
    assert code["status"] == "green"
    assert code["source"]["issuer"] == "HK"
    converted = await verify(running, setup.gate, code["qr_text"])
    assert converted["verdict"] == "valid"
    assert converted["origin"] == "converted_from_hongkong"
    assert converted["source"]["issuer"] == "HK"
    # The converted code names the Hong Kong code it came from, and nothing more of it.
    assert (
        converted["source"]["digest"]
        == formats.registered()["HK1"]
        .read(
            hk_code,
            {setup.hongkong.code_key.kid: setup.hongkong.code_key.public()},
            now=epoch(clock.now()),
            leeway=0,
        )
        .digest
    )


async def test_hong_kong_conversions_are_held_to_the_same_conditions(
    running: RunningApp, clock: ManualClock
) -> None:
    setup = await start(running, clock)
    amber_id, _ = await declare(setup, person(clock, 3, colour="amber"))
    untested_id, _ = await declare(setup, person(clock, 4, nat_negative_on=None))
    macao_doc_id, _ = await declare(
        setup, person(clock, 5, doc_type="passport", doc_number="K1234567")
    )

    amber = await convert(setup, amber_id)
    untested = await convert(setup, untested_id)

    assert (amber.status_code, amber.json()["error"]["code"]) == (422, "source_not_green")
    assert (untested.status_code, untested.json()["error"]["code"]) == (422, "nat_missing")
    passport = await convert(setup, macao_doc_id)
    assert passport.status_code == 201, passport.text


async def test_without_terms_in_the_rule_set_hong_kong_is_not_configured(
    running: RunningApp, clock: ManualClock
) -> None:
    setup = await start(running, clock, terms=False)
    person_id, _ = await declare(setup, person(clock))

    answer = await convert(setup, person_id)

    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "partner_not_configured")


async def test_nothing_goes_back_to_hong_kong_and_unknown_partners_are_not_found(
    running: RunningApp, clock: ManualClock
) -> None:
    await start(running, clock)
    resident = await running.api.sign_in()

    back = await running.client.get("/v1/exchange/hongkong/consent", headers=resident.auth)
    nowhere = await running.client.get("/v1/exchange/atlantis/consent", headers=resident.auth)
    macao = await running.client.get("/v1/exchange/macao/consent", headers=resident.auth)

    assert (back.status_code, back.json()["error"]["code"]) == (404, "partner_not_found")
    assert (nowhere.status_code, nowhere.json()["error"]["code"]) == (404, "partner_not_found")
    assert macao.status_code == 200


async def test_a_hong_kong_code_with_a_character_outside_base64url_is_malformed_not_a_crash(
    running: RunningApp, clock: ManualClock
) -> None:
    setup = await start(running, clock, terms=False)
    _, green = await declare(setup, person(clock))
    head, body, signature = green[len("HK1:") :].split(".")

    judged = await verify(running, setup.gate, f"HK1:{head}.{body}\u00e9.{signature}")

    assert (judged["verdict"], judged["reasons"][0]["code"]) == ("invalid", "malformed")


async def test_terms_without_a_mapping_use_the_adapters_table_and_a_wrong_one_is_not_configured(
    running: RunningApp, clock: ManualClock
) -> None:
    setup = await start(running, clock, hongkong_terms={"home_regions": ["44", "81"]})
    person_id, _ = await declare(setup, person(clock))

    converted = await convert(setup, person_id)

    assert converted.status_code == 201, converted.text
    author = await running.operator_token(Role.EPIDEMIOLOGIST)
    rules = copy.deepcopy(default_rule_set().document())
    rules["version"] = "gd-2021-hk-misspelt"
    rules["exchange"]["hongkong"] = {"mapping": "gd-mo-2020"}  # Macao's table, not Hong Kong's
    published = await running.client.post(
        "/v1/admin/rule-sets",
        content=json.dumps(rules),
        headers={"Authorization": f"Bearer {author}", "Content-Type": "application/json"},
    )
    assert published.status_code == 201, published.text
    other_id, _ = await declare(setup, person(clock, 6))
    refused = await convert(setup, other_id)
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        503,
        "partner_not_configured",
    )


@pytest.mark.parametrize(
    "spelling", ["MACAO", "Macao", "\uff4dacao", "%20macao", "macao%0A", "m" * 40, "a.b"]
)
async def test_a_partner_id_no_adapter_knows_is_not_found_however_it_is_spelt(
    running: RunningApp, spelling: str
) -> None:
    resident = await running.api.sign_in()

    answer = await running.client.get(f"/v1/exchange/{spelling}/consent", headers=resident.auth)

    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "partner_not_found")
