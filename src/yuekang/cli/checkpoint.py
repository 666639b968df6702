"""``yuekang checkpoint``: a checkpoint device that keeps working with no network.

``sync`` fetches the signed trust bundle (a delta when it can) into a state directory, pinning
the anchor given out of band on the first sync; ``scan`` judges a code offline with that bundle
and the place's policy and queues a scan record; ``upload`` sends the queue (safe to repeat).

State directory (``--state``, default ``./checkpoint-state``), readable by this user only:
``anchor.json`` (the pinned anchor JWK), ``server.json`` (server URL and checkpoint key),
``bundle.jws`` and ``deltas/`` (the bundle as fetched), ``registration.jws`` (the checkpoint's
kind of place, signed by the anchor: it decides which policy ``scan`` applies), ``queue.jsonl``
(scans not yet uploaded), ``registration.none`` (the server serves no registration: only then
does ``scan`` take ``--place``). Imports the offline verifier, the registration reader and httpx
only: nothing of the server.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from yuekang.codec.bundle import MAX_BUNDLE_CHARS, BundleError, read_bundle
from yuekang.codec.errors import InvalidKey
from yuekang.codec.keys import VerificationKey
from yuekang.codec.reasons import LANGUAGES
from yuekang.verifier import TrustStore, Verdict, policy_decision

if TYPE_CHECKING:
    from yuekang.checkpoints.registration import Registration

checkpoint_app = typer.Typer(
    help="A checkpoint device, offline after one sync.", no_args_is_help=True
)

State = Annotated[Path, typer.Option("--state", help="The device's state directory")]
DEFAULT_STATE = Path("checkpoint-state")
UPLOAD_BATCH = 1000
MAX_ANCHOR_BYTES = 64 * 1024
FETCH_SECONDS = 120.0
"""A whole fetch, however the server drips it: a full bundle of 16 MiB over a slow link fits."""


class FetchRefused(ValueError):
    """A server that sends more than a bundle can be, or takes longer than any should."""


def _get(
    http: Any,
    url: str,
    *,
    limit: int,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Status and text at ``url``, read to at most ``limit`` bytes (decompressed) within
    :data:`FETCH_SECONDS`: a device must not fill its memory or wait for ever on whatever
    answers at the server's address."""
    deadline = time.monotonic() + FETCH_SECONDS
    body = bytearray()
    with http.stream("GET", url, headers=headers, params=params) as response:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise FetchRefused(f"{url} sent over {limit} bytes: refused")
            if time.monotonic() > deadline:
                raise FetchRefused(f"{url} took over {FETCH_SECONDS:.0f} s: refused")
        return response.status_code, body.decode("utf-8", errors="replace")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _private_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(path.suffix + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    temporary.replace(path)


def _pin(anchor: str, server: str, http: Any) -> VerificationKey:
    """The anchor from a JWK file, or -- given its fingerprint -- the server's, only if its
    thumbprint is that fingerprint (the key is then the one given out of band, whoever serves
    it)."""
    path = Path(anchor)
    if path.exists():
        return VerificationKey.from_jwk(json.loads(path.read_text()))
    status, text = _get(http, f"{server}/v1/trust-anchor", limit=MAX_ANCHOR_BYTES)
    if status != 200:
        _fail(f"the server answered {status} for its anchor", 1)
    key = VerificationKey.from_jwk(json.loads(text))
    if key.kid != anchor:
        _fail(f"the server's anchor is {key.kid}, not the pinned {anchor}: refusing it", 1)
    return key


def load_store(state: Path, *, now: int) -> TrustStore:
    try:
        anchor = VerificationKey.from_jwk(json.loads((state / "anchor.json").read_text()))
    except FileNotFoundError:
        _fail(f"{state} holds no pinned anchor: run `yuekang checkpoint sync` first")
    store = TrustStore(anchor)
    bundle = state / "bundle.jws"
    if bundle.exists():
        store = store.load(bundle.read_text(), now=now)
        for delta in sorted((state / "deltas").glob("*.jws")):
            store = store.load(delta.read_text(), now=now)
    return store


@checkpoint_app.command("sync")
def sync(
    server: Annotated[str | None, typer.Option(help="The service's URL (first sync)")] = None,
    key: Annotated[str | None, typer.Option(help="This checkpoint's API key (first sync)")] = None,
    anchor: Annotated[
        str | None, typer.Option(help="The anchor JWK file, or its fingerprint (first sync)")
    ] = None,
    state: State = DEFAULT_STATE,
) -> None:
    """Fetch the trust bundle (a delta when possible) and keep it in the state directory."""
    import httpx

    saved: dict[str, str] = {}
    if (state / "server.json").exists():
        saved = json.loads((state / "server.json").read_text())
    server = (server or saved.get("server") or "").rstrip("/")
    key = key or saved.get("key")
    if not server or not key:
        _fail("the first sync needs --server and --key")
    now = int(time.time())
    with httpx.Client(timeout=30) as http:
        try:
            if not (state / "anchor.json").exists():
                if anchor is None:
                    _fail("the first sync needs --anchor: the anchor JWK file or its fingerprint")
                pinned = _pin(anchor, server, http)
                _private_write(state / "anchor.json", json.dumps(pinned.to_jwk()))
            _private_write(state / "server.json", json.dumps({"server": server, "key": key}))
            store = load_store(state, now=now)
            headers = {"Authorization": f"Bearer {key}"}
            params = {}
            if store.bundle is not None:
                headers["If-None-Match"] = f'"v{store.bundle.version}"'
                params["since"] = str(store.bundle.version)
            status, text = _get(
                http,
                f"{server}/v1/trust-bundle",
                limit=MAX_BUNDLE_CHARS,
                headers=headers,
                params=params,
            )
        except httpx.HTTPError as exc:
            _fail(f"cannot reach {server}: {exc}", 1)
        except (InvalidKey, ValueError, BundleError) as exc:
            _fail(str(exc), 1)
    if status == 304:
        typer.echo(f"up to date: version {store.bundle.version if store.bundle else '?'}")
        _sync_registration(server, key, store.anchor, state)
        return
    if status != 200:
        _fail(f"the server answered {status}: {text[:200]!r}", 1)
    try:
        incoming = read_bundle(text, store.anchor)
        updated = store.apply(incoming, now=now)
    except BundleError as exc:
        _fail(f"refused the bundle: {exc}", 1)
    assert updated.bundle is not None
    is_delta = incoming.base is not None
    if is_delta:
        _private_write(state / "deltas" / f"{incoming.version:010d}.jws", text)
    else:
        _private_write(state / "bundle.jws", text)
        for old in (state / "deltas").glob("*.jws"):
            old.unlink()
    typer.echo(
        f"synced version {updated.bundle.version} ({'delta' if is_delta else 'full'}), "
        f"{len(updated.bundle.keys)} keys, {len(updated.revoked)} revoked codes, "
        f"fresh until {updated.bundle.expires_at}"
    )
    _sync_registration(server, key, store.anchor, state)


def _sync_registration(server: str, key: str, anchor: VerificationKey, state: Path) -> None:
    """The checkpoint's registration (its kind of place), signed by the anchor and naming the
    checkpoint whose key this is; kept if newer than the one held. A server too old to serve it
    leaves the device on ``--place``."""
    import httpx

    from yuekang import apikeys
    from yuekang.checkpoints import registration

    try:
        with httpx.Client(timeout=30) as http:
            status, text = _get(
                http,
                f"{server}/v1/checkpoint",
                limit=MAX_ANCHOR_BYTES,
                headers={"Authorization": f"Bearer {key}"},
            )
    except (httpx.HTTPError, ValueError) as exc:
        _fail(f"cannot fetch this checkpoint's registration: {exc}", 1)
    if status == 404:
        # Only this answer lets ``scan`` take --place: the server has no registration to give.
        _private_write(state / NO_REGISTRATION, "the server serves no registration\n")
        typer.echo("the server does not serve registrations: give the kind of place with --place")
        return
    if status != 200:
        _fail(f"the server answered {status} for this checkpoint's registration", 1)
    parsed = apikeys.parse(registration.KEY_PREFIX, key)
    try:
        fetched = registration.read(text, anchor)
    except registration.RegistrationError as exc:
        _fail(f"refused the registration: {exc}", 1)
    if parsed is None or fetched.checkpoint != parsed[0]:
        _fail("refused the registration: it names another checkpoint", 1)
    held = _registration(state, anchor)
    if held is None or fetched.issued_at >= held.issued_at:
        _private_write(state / "registration.jws", text)
        held = fetched
    (state / NO_REGISTRATION).unlink(missing_ok=True)
    typer.echo(f"registered as {held.kind}: {held.name}")


NO_REGISTRATION = "registration.none"
"""Written by a sync whose server answered 404 for the registration: the one case in which the
kind of place may come from ``--place``."""


def _own_checkpoint(state: Path) -> uuid.UUID | None:
    """The checkpoint id in this device's own key (server.json), or None before a sync."""
    from yuekang import apikeys
    from yuekang.checkpoints import registration

    try:
        saved = json.loads((state / "server.json").read_text())
        parsed = apikeys.parse(registration.KEY_PREFIX, str(saved["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if parsed is None else parsed[0]


def _registration(state: Path, anchor: VerificationKey) -> Registration | None:
    """The registration held, if the anchor signed it and it names this device's own checkpoint
    (the id in its key): one copied from another checkpoint's device, signed as well, would
    otherwise turn a border post into a venue."""
    from yuekang.checkpoints import registration

    path = state / "registration.jws"
    if not path.exists():
        return None
    try:
        held = registration.read(path.read_text(), anchor)
    except registration.RegistrationError:
        return None
    return held if held.checkpoint == _own_checkpoint(state) else None


@checkpoint_app.command("scan")
def scan(
    qr_text: Annotated[str | None, typer.Argument(help="The text of the QR code")] = None,
    image: Annotated[Path | None, typer.Option(help="Read the code from a PNG/JPEG")] = None,
    place: Annotated[
        str | None,
        typer.Option(
            help="venue, transport or border: only for a checkpoint whose server serves no "
            "registration (a synced registration decides, and a different --place is refused)"
        ),
    ] = None,
    at: Annotated[
        int | None,
        typer.Option(help="Re-judge as of this UTC second (no scan record is queued)"),
    ] = None,
    language: Annotated[str, typer.Option(help="zh-Hans, zh-Hant, en or pt")] = "zh-Hans",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    state: State = DEFAULT_STATE,
) -> None:
    """Judge a code offline, apply the place's policy, queue a scan record.

    Exit status: 0 allow, 1 deny (or an invalid code), 3 manual check, 4 cannot verify (no,
    expired or untrusted bundle; wrong clock), 2 usage error."""
    from yuekang.cli.verify import read_qr_image
    from yuekang.rules.ruleset import RuleSetError

    if (qr_text is None) == (image is None):
        _fail("give either QR_TEXT or --image PNG")
    if place not in (None, "venue", "transport", "border") or language not in LANGUAGES:
        _fail("--place is venue, transport or border; --language one of " + ", ".join(LANGUAGES))
    now = at if at is not None else int(time.time())
    try:
        text = read_qr_image(image) if image is not None else str(qr_text)
        store = load_store(state, now=now)
    except (OSError, ValueError, BundleError) as exc:
        _fail(str(exc))
    # The kind of place is the checkpoint's registration, not whoever runs the command.
    registered = _registration(state, store.anchor)
    if registered is not None:
        if place is not None and place != registered.kind:
            _fail(f"this checkpoint is registered as {registered.kind}; --place cannot change it")
        place = registered.kind
    elif not (state / NO_REGISTRATION).exists():
        # Synced with a server that serves registrations, but none of this checkpoint's is held
        # (deleted, altered, or another checkpoint's copied in): whoever runs the device must
        # not choose the kind of place instead.
        _fail(
            "no registration synced for this checkpoint: run `yuekang checkpoint sync` "
            "(--place is only for a server that serves none)"
        )
    elif place is None:
        _fail("this checkpoint's server serves no registration: give --place")
    verdict = store.verify(text, now=now)
    if verdict.verdict == "cannot_verify":
        decision = "cannot_verify"
        decision_reason = verdict.reasons[0].value
    else:
        try:
            outcome = policy_decision(verdict, store.policy(place))  # type: ignore[arg-type]
        except RuleSetError as exc:
            _fail(f"the bundle's policies do not validate: {exc}", 4)
        decision, decision_reason = outcome.verdict, outcome.reason
    if at is None:
        _queue(state, verdict, now, decision)
    result = {**verdict.to_dict(language), "decision": decision, "decision_reason": decision_reason}
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        typer.echo(f"{decision.upper()}  ({decision_reason})")
        typer.echo(
            f"verdict: {verdict.verdict}  status: {verdict.status}  name: {verdict.masked_name}"
        )
        for item in result["reasons"] + result["warnings"]:
            typer.echo(f"  {item['code']}: {item['message']}")
    raise typer.Exit({"allow": 0, "manual_check": 3, "cannot_verify": 4}.get(decision, 1))


def _queue(state: Path, verdict: Verdict, now: int, decision: str) -> None:
    from datetime import UTC, datetime

    record = {
        "scan_id": uuid.uuid4().hex,
        "code_id": verdict.code_id,
        "scanned_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "verdict": verdict.verdict,
        "reason": verdict.reasons[0].value if verdict.reasons else None,
        # What the gate decided, counted apart from the verdict; none when it could not decide.
        "decision": decision if decision in ("allow", "deny", "manual_check") else None,
    }
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (state / "queue.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")


@checkpoint_app.command("upload")
def upload(state: State = DEFAULT_STATE) -> None:
    """Send the queued scan records; safe to repeat (the server stores each scan once)."""
    import httpx

    queue = state / "queue.jsonl"
    if not queue.exists() or not queue.read_text().strip():
        typer.echo("nothing to upload")
        return
    saved = json.loads((state / "server.json").read_text())
    records = [json.loads(line) for line in queue.read_text().splitlines() if line.strip()]
    stored = duplicates = 0
    refused: list[str] = []
    with httpx.Client(timeout=30) as http:
        for start in range(0, len(records), UPLOAD_BATCH):
            try:
                response = http.post(
                    f"{saved['server']}/v1/scans",
                    headers={"Authorization": f"Bearer {saved['key']}"},
                    json={"scans": records[start : start + UPLOAD_BATCH]},
                )
            except httpx.HTTPError as exc:
                _fail(f"cannot reach {saved['server']}: {exc}; the queue is kept", 1)
            if response.status_code != 200:
                _fail(f"the server answered {response.status_code}: {response.text[:200]}", 1)
            stored += response.json()["stored"]
            duplicates += response.json()["duplicates"]
            refused += response.json().get("refused", [])
    _private_write(queue, "")
    typer.echo(f"uploaded {len(records)} scan(s): {stored} new, {duplicates} already there")
    if refused:
        # Kept aside for whoever looks after the device: usually its clock was wrong.
        with (state / "refused.jsonl").open("a") as handle:
            for record in records:
                if record["scan_id"] in refused:
                    handle.write(json.dumps(record) + "\n")
        typer.echo(
            f"{len(refused)} scan(s) refused (dated in the future or too old; check the clock), "
            f"kept in {state / 'refused.jsonl'}",
            err=True,
        )
