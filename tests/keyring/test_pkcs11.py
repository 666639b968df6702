"""Signing keys in a PKCS#11 token (SoftHSM2): made inside it and never exportable, published
and rotated like any key, verified offline and online, destroyed when compromised, and a token
that cannot sign is a clear refusal -- at start, and as a 503 at issuance.

One token for the module (SoftHSM2 finds its tokens once per process: tests/support/softhsm.py);
each test's keys are its own by kid, and each app test has a database of its own."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from conftest import TEST_SECRETS, RunningApp, make_settings, start_app
from support.softhsm import SoftToken, make_token
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock, epoch
from yuekang.codec.errors import InvalidKey
from yuekang.codec.keys import SigningKey, VerificationKey, b64url_decode, is_high_s
from yuekang.config import ConfigurationError, KeySettings, ResolvedSettings, Settings, resolve
from yuekang.context import AppContext
from yuekang.keyring import service
from yuekang.keyring.models import SigningKeyRecord
from yuekang.keyring.pkcs11 import Token, TokenError, is_token_key
from yuekang.operations import rewrap_private_keys
from yuekang.principals import Actor, Role
from yuekang.trust import service as trust
from yuekang.trust.models import AnchorKey
from yuekang.verifier import TrustStore, Verifier


@pytest.fixture(scope="module")
def soft() -> Iterator[SoftToken]:
    yield from make_token()


@pytest.fixture(scope="module")
def token(soft: SoftToken) -> Iterator[Token]:
    opened = Token(soft.module, soft.label, soft.pin)
    yield opened
    opened.close()


def hsm_settings(soft: SoftToken, database_url: str, keys_dir: Path, **keys: object) -> Settings:
    return make_settings(
        database_url,
        keys_dir,
        keys=KeySettings.model_validate(
            {
                "ring_refresh_seconds": 0,
                "publish_lead_seconds": 600,
                "backend": "pkcs11",
                "pkcs11_module": soft.module,
                "pkcs11_token_label": soft.label,
                **keys,
            }
        ),
        secrets=TEST_SECRETS.model_copy(update={"pkcs11_pin": soft.pin}),
    )


@pytest.fixture
async def hsm_app(
    soft: SoftToken, fresh_database_url: str, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[RunningApp]:
    settings = hsm_settings(soft, fresh_database_url, tmp_path / "keys")
    async for app in start_app(settings, clock, MemorySmsSender()):
        yield app


@pytest.fixture
def backend() -> str:
    # What these tests show is the token's, not the database's: SQLite only.
    return "sqlite"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_a_key_made_in_the_token_signs_and_never_leaves_it(token: Token, alg: str) -> None:
    key = SigningKey.from_private_key(token.generate(alg))  # type: ignore[arg-type]
    assert key.alg == alg
    signatures = [key.sign(b"message %d" % i) for i in range(32)]
    public = key.public()
    assert all(public.verify(s, b"message %d" % i) for i, s in enumerate(signatures))
    if alg == "ES256":
        # The codec refuses a high-S signature; the token's r || s is put in low-S form.
        assert not any(is_high_s(s) for s in signatures)
    # Found again by its label, the key id, as another process would find it.
    again = SigningKey.from_private_key(token.private_key(key.kid, alg))  # type: ignore[arg-type]
    assert again.kid == key.kid
    assert public.verify(again.sign(b"again"), b"again")

    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    with pytest.raises(TokenError, match="AttributeSensitive"):
        token.exportable(key.kid)
    with pytest.raises(InvalidKey, match="cannot be exported"):
        key.private_key.private_bytes(None, None, None)  # type: ignore[arg-type]
    session = token._session
    private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=key.kid)
    assert private[Attribute.TOKEN] is True
    assert private[Attribute.SENSITIVE] is True
    assert private[Attribute.EXTRACTABLE] is False
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        private[Attribute.VALUE]


async def _admin(app: RunningApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {await app.operator_token(Role.ADMIN)}"}


async def _record(app: RunningApp, kid: str) -> SigningKeyRecord:
    async with app.context.sessionmaker() as session:
        record = await session.get(SigningKeyRecord, kid)
    assert record is not None
    return record


async def test_a_token_key_is_published_rotated_verified_and_destroyed_when_compromised(
    hsm_app: RunningApp, clock: ManualClock, token: Token
) -> None:
    admin = await _admin(hsm_app)
    resident = await hsm_app.api.registered(name="王小明")
    gate = {"Authorization": f"Bearer {await hsm_app.checkpoint_key()}"}

    created = await hsm_app.client.post("/v1/admin/keys", json={"alg": "ES256"}, headers=admin)
    assert created.status_code == 201, created.text
    kid = created.json()["kid"]
    stored = await _record(hsm_app, kid)
    assert is_token_key(stored.private_pem)
    assert b"-----BEGIN" not in stored.private_pem
    assert token.holds(kid)

    # Published before it signs, exactly like a file key: a checkpoint syncing now knows it.
    jwks = (await hsm_app.client.get("/.well-known/jwks.json")).json()
    assert kid in {k["kid"] for k in jwks["keys"]}
    early = await hsm_app.client.post(f"/v1/admin/keys/{kid}/activate", headers=admin)
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "key_not_ready"
    clock.advance(601)
    activated = await hsm_app.client.post(f"/v1/admin/keys/{kid}/activate", headers=admin)
    assert activated.status_code == 200, activated.text

    code = await hsm_app.api.code(resident)
    assert code["qr_text"].startswith("YK1:")
    header = json.loads(b64url_decode(code["qr_text"].removeprefix("YK1:").split(".")[0]))
    assert header == {"alg": "ES256", "kid": kid}
    offline = Verifier.from_jwks(jwks).verify(code["qr_text"], now=epoch(clock.now()))
    assert offline.valid, offline
    online = await hsm_app.client.post(
        "/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate
    )
    assert online.json()["verdict"] == "valid"

    compromised = await hsm_app.client.post(
        f"/v1/admin/keys/{kid}/retire", json={"compromised": True}, headers=admin
    )
    assert compromised.status_code == 200, compromised.text
    assert not token.holds(kid)  # it cannot sign again, whatever a process has cached
    with pytest.raises(TokenError):
        token.sign(kid, b"\0" * 32, ecdsa=True)
    jwks = (await hsm_app.client.get("/.well-known/jwks.json")).json()
    assert kid not in {k["kid"] for k in jwks["keys"]}
    again = await hsm_app.client.post("/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate)
    assert again.json()["verdict"] != "valid"


async def test_issuance_answers_503_when_the_token_cannot_sign(
    hsm_app: RunningApp, clock: ManualClock, token: Token
) -> None:
    admin = await _admin(hsm_app)
    kid = (await hsm_app.client.post("/v1/admin/keys", json={}, headers=admin)).json()["kid"]
    clock.advance(601)
    assert (await hsm_app.client.post(f"/v1/admin/keys/{kid}/activate", headers=admin)).is_success
    first = await hsm_app.api.registered()
    assert (await hsm_app.api.issue(first)).status_code == 201

    # The key taken out of the token behind the service's back (a token swapped, an operator's
    # mistake): the key ring still names it, the token cannot sign with it.
    assert token.destroy(kid)
    second = await hsm_app.api.registered()
    refused = await hsm_app.api.issue(second)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "unavailable"


async def test_the_bundle_signed_by_a_token_anchor_verifies_at_a_checkpoint(
    soft: SoftToken, fresh_database_url: str, tmp_path: Path, clock: ManualClock, token: Token
) -> None:
    settings = hsm_settings(soft, fresh_database_url, tmp_path / "keys")
    async for app in start_app(settings, clock, MemorySmsSender()):
        async with app.context.sessionmaker() as session:
            anchor = await trust.anchor_key(
                session,
                passphrase=TEST_SECRETS.key_passphrase,
                now=clock.now(),
                create=False,
                token=app.context.keyring.token,
            )
            stored = await session.get(AnchorKey, anchor.kid) if anchor else None
        assert anchor is not None
        assert stored is not None
        # The development bootstrap made the anchor in the token, since the backend says so.
        assert is_token_key(stored.private_pem)
        assert token.holds(anchor.kid)
        pinned = VerificationKey.from_jwk(anchor.public().to_jwk())
        resident = await app.api.registered()
        code = await app.api.code(resident)
        gate = await app.checkpoint_key()
        bundle = await app.client.get(
            "/v1/trust-bundle", headers={"Authorization": f"Bearer {gate}"}
        )
        assert bundle.status_code == 200, bundle.text
        store = TrustStore(pinned).load(bundle.text, now=epoch(clock.now()))
        assert store.verify(code["qr_text"], now=epoch(clock.now())).valid


async def test_rewrap_leaves_token_keys_alone_and_says_so(
    hsm_app: RunningApp, clock: ManualClock
) -> None:
    async with hsm_app.context.sessionmaker() as session, session.begin():
        done = await rewrap_private_keys(
            session,
            current=TEST_SECRETS.key_passphrase,
            new="another-passphrase-0123456789",
            actor=Actor.cli(),
            now=clock.now(),
        )
    # The bootstrap made the signing key, the anchor and the exchange sig key in the token; the
    # exchange enc key stays a file, under the new passphrase now.
    assert done.in_token == {"signing_keys": 1, "anchor_keys": 1, "exchange_keys": 1}
    assert done.rewrapped == {"exchange_keys": 1}


def test_a_token_that_cannot_be_used_stops_the_start_in_one_line(
    soft: SoftToken, tmp_path: Path, token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"

    def start(**keys: object) -> str:
        settings = hsm_settings(soft, url, tmp_path / "keys", **keys)
        with pytest.raises(ConfigurationError) as refused:
            AppContext.build(ResolvedSettings(settings, settings.secrets or TEST_SECRETS))
        message = str(refused.value)
        assert "\n" not in message
        return message

    assert "no PKCS#11 module" in start(pkcs11_module=tmp_path / "missing.so")
    assert "no PKCS#11 token labelled 'absent'" in start(pkcs11_token_label="absent")
    settings = hsm_settings(soft, url, tmp_path / "keys")
    wrong = ResolvedSettings(
        settings, TEST_SECRETS.model_copy(update={"pkcs11_pin": "0000" + soft.pin})
    )
    with pytest.raises(ConfigurationError, match="PIN"):
        _fresh_login(token, wrong)
    monkeypatch.setitem(sys.modules, "pkcs11", None)
    assert "install yuekang[hsm]" in start()


def _fresh_login(token: Token, resolved: ResolvedSettings) -> None:
    """Open a token with the given settings while no session of this process is logged in: the
    login belongs to the process, so the module's open session would let any PIN through."""
    token.close()
    try:
        AppContext.build(resolved)
    finally:
        token._open()


def test_production_names_what_backend_pkcs11_lacks() -> None:
    settings = Settings.model_validate(
        {
            "env": "prod",
            "secrets": TEST_SECRETS,
            "keys": {"backend": "pkcs11", "pkcs11_token_label": "yuekang"},
        }
    )
    with pytest.raises(ConfigurationError) as refused:
        resolve(settings)
    message = str(refused.value)
    assert "YUEKANG_KEYS__PKCS11_MODULE" in message
    assert "YUEKANG_SECRETS__PKCS11_PIN" in message
    assert "TOKEN_LABEL" not in message


def test_a_file_process_refuses_a_token_key_with_a_503(token: Token) -> None:
    from yuekang.exceptions import ServiceUnavailable
    from yuekang.keyring.ring import KeyRing

    key = SigningKey.from_private_key(token.generate("ES256"))
    record = SigningKeyRecord(
        kid=key.kid, alg="ES256", private_pem=b"pkcs11:object=" + key.kid.encode()
    )
    ring = KeyRing(
        sessionmaker=None,  # type: ignore[arg-type]
        issuer="yk:gd",
        passphrase=TEST_SECRETS.key_passphrase,
        max_code_lifetime=dt.timedelta(hours=1),
        refresh_seconds=0,
        leeway=120,
    )
    with pytest.raises(ServiceUnavailable, match=r"keys\.backend=file"):
        ring.private_half(record)
    ring.token = token
    assert ring.private_half(record).kid == key.kid
    assert service.algorithm(record) == "ES256"


async def test_a_package_signed_by_a_token_exchange_key_opens_at_the_partner(
    hsm_app: RunningApp, clock: ManualClock, token: Token
) -> None:
    from yuekang.codec.exchange import EncryptionKey, new_jti, open_package, seal_package
    from yuekang.exchange import keys as exchange_keys
    from yuekang.exchange.models import ExchangeKey

    context = hsm_app.context
    async with context.sessionmaker() as session:
        ours = await exchange_keys.our_keys(
            session,
            passphrase=TEST_SECRETS.key_passphrase,
            cache=context.exchange_keys,
            now=clock.now(),
        )
        assert ours is not None
        stored = await session.get(ExchangeKey, ours.signer.kid)
    assert stored is not None
    # The development bootstrap made the sig key in the token; the enc key stays a file.
    assert is_token_key(stored.private_pem)
    assert token.holds(ours.signer.kid)
    # What the partner learns: our key document, as it fetches it.
    document = (await hsm_app.client.get("/v1/exchange/keys")).json()
    [sig] = [k for k in document["keys"] if k["kid"] == ours.signer.kid]
    macao = EncryptionKey.generate()
    now = epoch(clock.now())
    claims = {
        "iss": "yk:gd",
        "aud": "mo:ssm",
        "typ": "conversion",
        "jti": new_jti(),
        "iat": now,
        "exp": now + 60,
    }
    package = seal_package(claims, signer=ours.signer, recipient=macao.public())
    # The function the reference Macao's inbound opens packages with.
    opened = open_package(
        package,
        decryption_keys={macao.kid: macao},
        sender_keys={sig["kid"]: VerificationKey.from_jwk(sig, issuer="yk:gd")},
        issuer="yk:gd",
        audience="mo:ssm",
        now=now,
    )
    assert opened.sender_kid == ours.signer.kid
    assert opened.claims["jti"] == claims["jti"]


def test_the_key_commands_make_and_destroy_keys_in_the_token(
    soft: SoftToken, tmp_path: Path, token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from yuekang.cli import app
    from yuekang.db import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    migrate(url)
    for name, value in {
        "YUEKANG_DATABASE_URL": url,
        "YUEKANG_KEYS_DIR": str(tmp_path / "keys"),
        "YUEKANG_ENV": "dev",
        "YUEKANG_KEYS__PUBLISH_LEAD_SECONDS": "0",
        "YUEKANG_KEYS__BACKEND": "pkcs11",
        "YUEKANG_KEYS__PKCS11_MODULE": str(soft.module),
        "YUEKANG_KEYS__PKCS11_TOKEN_LABEL": soft.label,
        "YUEKANG_SECRETS": TEST_SECRETS.model_copy(
            update={"pkcs11_pin": soft.pin}
        ).model_dump_json(),
    }.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    code, out, _ = run("keys", "generate")
    assert code == 0, out
    kid = out.split()[0]
    assert f"pending in token {soft.label}" in out
    assert token.holds(kid)
    assert run("keys", "activate", kid)[0] == 0
    code, out, _ = run("keys", "anchor")
    assert code == 0
    assert token.holds(json.loads(out)["kid"])
    code, out, _ = run("keys", "retire", kid, "--compromised")
    assert code == 0
    assert f"{kid} destroyed in token {soft.label}" in out
    assert not token.holds(kid)

    # The token is lost (stolen, broken): its keys must still be withdrawable at once, from the
    # database, with a word that the token's copy is out of reach.
    code, out, _ = run("keys", "generate")
    second = out.split()[0]
    assert run("keys", "activate", second)[0] == 0
    monkeypatch.setenv("YUEKANG_KEYS__PKCS11_TOKEN_LABEL", "absent")
    code, out, err = run("keys", "retire", second, "--compromised")
    assert code == 0, err
    assert f"{second} compromised" in out
    assert "no PKCS#11 token labelled 'absent'; going on without the token" in err
    assert f"{second} is held in a PKCS#11 token this command could not reach" in err
    # The list reads rows only: it works without the token, and says where each key is held.
    code, out, err = run("keys", "list")
    assert code == 0, err
    assert {line.split()[0]: line.split()[3] for line in out.splitlines()}[second] == "token"
    # Anything else still needs the token, and says so in one line.
    code, _, err = run("keys", "retire", kid)
    assert code == 2 and err.strip() == "error: no PKCS#11 token labelled 'absent'"

    code, _, err = run("serve", "--port", "1")
    assert code == 2
    assert err.strip() == "error: no PKCS#11 token labelled 'absent'"


def test_a_pin_the_token_refused_is_never_tried_again(
    token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a PIN change, a process left on the old PIN must not keep logging in with it: an
    HSM locks the user PIN after a few wrong ones, locking out the processes rolled out with
    the new PIN too."""
    key = SigningKey.from_private_key(token.generate("ES256"))  # type: ignore[arg-type]
    opened: list[int] = []
    real_open = token._open

    def refused() -> None:
        opened.append(1)
        token._refused = f"the PIN of token {token.label!r} is wrong"
        raise TokenError(token._refused)

    monkeypatch.setattr(token, "_open", refused)
    token._session = None  # the session was lost: the next call logs in again
    from yuekang.exceptions import ServiceUnavailable

    for _ in range(3):
        # Each issuance is a 503 naming the cause; only the first asked the token.
        with pytest.raises(ServiceUnavailable, match="is wrong"):
            key.sign(b"after the PIN changed")
    assert opened == [1]
    monkeypatch.setattr(token, "_open", real_open)
    token._refused = None
