"""``yuekang verify`` as a technician uses it to find out why a device refuses a code: the verdict
and its reason as a checkpoint shows them, then the codec's exact account of what failed; and,
for a keys file it cannot use, the one line saying what is wrong with it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codec.forge import (
    DROP,
    EXP,
    IAT,
    ISSUER,
    NOW,
    Trust,
    b64,
    claims,
    flip_char,
    forge,
    header,
    high_s,
    parts,
    valid,
    with_parts,
)
from yuekang.cli import app
from yuekang.codec.healthcode import MAX_INPUT_CHARS
from yuekang.verifier import DEFAULT_LEEWAY, Verifier

# (how the code is spoilt, the checkpoint's reason, the technician's detail); {es}/{ed} are the
# key ids of our two keys.
DIAGNOSES: list[tuple[str, Callable[[Trust], str], str, str]] = [
    (
        "oversized",
        lambda t: "YK1:" + "A" * MAX_INPUT_CHARS,
        "malformed",
        "not a health code of a plausible size",
    ),
    (
        "next-version",
        lambda t: "YK2:" + valid(t.es)[4:],
        "unsupported_version",
        "unsupported health-code version 'YK2'",
    ),
    ("no-prefix", lambda t: valid(t.es)[4:], "malformed", "does not start with the YK1: prefix"),
    (
        "four-segments",
        lambda t: valid(t.es) + ".AAAA",
        "malformed",
        "expected three segments of base64url characters after YK1:",
    ),
    (
        "header-not-json",
        lambda t: forge(b"alg=ES256", claims(), t.es),
        "malformed",
        "the header is not base64url JSON",
    ),
    (
        "header-array",
        lambda t: forge([t.es.alg, t.es.kid], claims(), t.es),
        "malformed",
        "the header is not a JSON object",
    ),
    (
        "alg-none",
        lambda t: forge(header(t.es, alg="none"), claims(), None),
        "algorithm_not_allowed",
        "algorithm 'none' is not allowed",
    ),
    (
        "unknown-key",
        lambda t: valid(t.attacker),
        "unknown_key",
        "the signing key is not trusted here",
    ),
    (
        "eddsa-header-on-es256-key",
        lambda t: forge(header(t.es, alg="EdDSA"), claims(), t.ed),
        "algorithm_not_allowed",
        "key {es} is bound to ES256, not EdDSA",
    ),
    (
        "signature-one-char-short",
        lambda t: valid(t.es)[:-1],
        "malformed",
        "the signature is not base64url",
    ),
    (
        "high-s",
        lambda t: high_s(valid(t.es)),
        "bad_signature",
        "a high-s signature is not one we make",
    ),
    (
        "signature-flipped",
        lambda t: with_parts(*parts(valid(t.es))[:2], flip_char(parts(valid(t.es))[2], 40)),
        "bad_signature",
        "the signature does not match",
    ),
    (
        "payload-not-utf8",
        lambda t: forge(header(t.es), b'{"nm":"\xd5\xc5"}', t.es),
        "malformed",
        "the payload is not base64url JSON",
    ),
    (
        "payload-array",
        lambda t: forge(header(t.es), [claims()], t.es),
        "malformed",
        "the payload is not a JSON object",
    ),
    (
        "no-issuer",
        lambda t: valid(t.es, iss=DROP),
        "malformed",
        "claim 'iss' must be a non-empty string",
    ),
    (
        "iat-text",
        lambda t: valid(t.es, iat=str(IAT)),
        "malformed",
        "claim 'iat' must be integer UTC seconds",
    ),
    (
        "status-blue",
        lambda t: valid(t.es, st="blue"),
        "malformed",
        "claim 'st' must be green, yellow or red",
    ),
    (
        "source-of-two",
        lambda t: valid(t.es, src=["MO", "k"]),
        "malformed",
        "claim 'src' must be [issuer, kid, digest]",
    ),
    (
        "other-issuer",
        lambda t: valid(t.ed, iss="yk:other"),
        "untrusted_issuer",
        "key {ed} does not sign for issuer 'yk:other'",
    ),
]


@pytest.fixture
def keys_file(tmp_path: Path, jwks: dict[str, Any]) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["verify", *args])


@pytest.mark.parametrize(
    ("build", "reason", "detail"),
    [pytest.param(build, reason, detail, id=name) for name, build, reason, detail in DIAGNOSES],
)
def test_a_refused_code_is_explained(
    trust: Trust, keys_file: Path, build: Callable[[Trust], str], reason: str, detail: str
) -> None:
    result = run(build(trust), "--jwks", str(keys_file), "--now", str(NOW), "--language", "en")

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "verdict: invalid"
    assert lines[1].startswith(f"reason:  {reason}: ")
    assert lines[2:] == ["detail:  " + detail.format(es=trust.es.kid, ed=trust.ed.kid)]


@pytest.mark.parametrize(
    ("now", "reason", "detail"),
    [
        (
            IAT - DEFAULT_LEEWAY - 1,
            "not_yet_valid",
            "the code was issued in the future; check the clock",
        ),
        (EXP + DEFAULT_LEEWAY, "expired", "the code has expired"),
    ],
    ids=["device-clock-behind", "expired"],
)
def test_a_code_out_of_time_is_explained(
    trust: Trust, keys_file: Path, now: int, reason: str, detail: str
) -> None:
    result = run(valid(trust.es), "--jwks", str(keys_file), "--now", str(now))

    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].startswith(f"reason:  {reason}: ")
    assert result.stdout.splitlines()[2] == f"detail:  {detail}"


def test_json_output_carries_the_detail_and_a_valid_code_has_none(
    trust: Trust, keys_file: Path
) -> None:
    refused = run(valid(trust.attacker), "--jwks", str(keys_file), "--now", str(NOW), "--json")
    accepted = run(valid(trust.es), "--jwks", str(keys_file), "--now", str(NOW), "--json")

    assert json.loads(refused.stdout)["detail"] == "the signing key is not trusted here"
    assert accepted.exit_code == 0
    assert "detail" not in json.loads(accepted.stdout)
    assert "detail:" not in run(valid(trust.es), "--jwks", str(keys_file), "--now", str(NOW)).stdout


def test_the_online_verdict_shape_leaves_the_detail_out(trust: Trust, verifier: Verifier) -> None:
    # Checkpoints show reasons in the traveller's language; the English detail is the CLI's.
    verdict = verifier.verify(valid(trust.attacker), now=NOW)

    assert verdict.detail == "the signing key is not trusted here"
    assert "detail" not in verdict.to_dict()


def test_key_validity_problems_are_explained(trust: Trust) -> None:
    compromised = Verifier(
        {trust.es.kid: replace(trust.es.public(), issuer=ISSUER, compromised=True)}
    )
    retired_early = Verifier(
        {trust.es.kid: replace(trust.es.public(), issuer=ISSUER, not_after=EXP - 3600)}
    )

    assert (
        compromised.verify(valid(trust.es), now=NOW).detail == f"key {trust.es.kid} is compromised"
    )
    assert (
        retired_early.verify(valid(trust.es), now=NOW).detail
        == f"the code lies outside the validity of key {trust.es.kid}"
    )


def _jwk(trust: Trust, **changes: Any) -> dict[str, Any]:
    jwk = {**trust.es.public().to_jwk(), **changes}
    return {k: v for k, v in jwk.items() if v is not DROP}


# A keys file the device cannot use: refused whole, with one line saying why (exit status 2).
BAD_KEYS: list[tuple[str, Callable[[Trust], dict[str, Any]], str]] = [
    (
        "kid-of-another-key",
        lambda t: _jwk(t, kid=t.ed.kid),
        "JWK kid is not the thumbprint of its key",
    ),
    (
        "alg-of-another-type",
        lambda t: _jwk(t, alg="EdDSA"),
        "JWK alg 'EdDSA' does not match its key type",
    ),
    (
        "x-padded",
        lambda t: _jwk(t, x=_jwk(t)["x"] + "="),
        "malformed JWK: not canonical unpadded base64url",
    ),
    ("x-not-ascii", lambda t: _jwk(t, x="坐标"), "malformed JWK: not base64url"),
    ("x-short", lambda t: _jwk(t, x=b64(bytes(31))), "malformed JWK: coordinate is not 32 bytes"),
    ("x-number", lambda t: _jwk(t, x=7), "malformed JWK: coordinate is not a string"),
    ("y-missing", lambda t: _jwk(t, y=DROP), "malformed JWK: 'y'"),
]


@pytest.mark.parametrize(
    ("jwk", "message"),
    [pytest.param(jwk, message, id=name) for name, jwk, message in BAD_KEYS],
)
def test_an_unusable_keys_file_is_named(
    trust: Trust, tmp_path: Path, jwk: Callable[[Trust], dict[str, Any]], message: str
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"issuer": ISSUER, "keys": [jwk(trust)]}))

    result = run(valid(trust.es), "--jwks", str(path), "--now", str(NOW))

    assert result.exit_code == 2
    assert result.stdout == ""
    kid = jwk(trust).get("kid", "no kid")
    assert result.stderr == f"error: key 1 ({kid}): {message}\n"


def test_a_keys_file_that_is_not_json_is_named(trust: Trust, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": [')

    result = run(valid(trust.es), "--jwks", str(path), "--now", str(NOW))

    assert result.exit_code == 2
    assert result.stderr.startswith("error: the keys file is not JSON: ")


def test_a_valid_code_says_when_it_expires_in_words(trust: Trust, keys_file: Path) -> None:
    result = run(valid(trust.es), "--jwks", str(keys_file), "--now", str(NOW))

    assert result.exit_code == 0
    expires = dt.datetime.fromtimestamp(EXP, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"expires: {expires}" in result.stdout.splitlines()


def test_what_a_keys_file_names_is_printed_harmlessly(trust: Trust, tmp_path: Path) -> None:
    # A kid that would retitle the terminal and rewrite the line, and a very long one.
    hostile = "\x1b]0;pwned\x07\x1b[2K\rerror: none"
    for kid, shown in (
        (hostile, "\\x1b]0;pwned\\x07\\x1b[2K\\rerror: none"),
        ("k" * 5000, "k" * 64),
    ):
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps({"issuer": ISSUER, "keys": [_jwk(trust, kid=kid)]}))

        result = run(valid(trust.es), "--jwks", str(path), "--now", str(NOW))

        assert result.exit_code == 2
        assert "\x1b" not in result.stderr and "\r" not in result.stderr
        assert (
            result.stderr == f"error: key 1 ({shown}): JWK kid is not the thumbprint of its key\n"
        )


@pytest.mark.parametrize(
    "content",
    [b'{"keys":' + b"[" * 100_000, b"\xff\xfe not text"],
    ids=["nested-past-the-parser", "not-utf8"],
)
def test_a_keys_file_the_parser_cannot_read_is_an_input_error(
    trust: Trust, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(content)

    result = run(valid(trust.es), "--jwks", str(path), "--now", str(NOW))

    assert result.exit_code == 2
    assert result.stderr.startswith("error: the keys file is not JSON: ")


def test_an_image_that_cannot_be_decoded_is_an_input_error(
    trust: Trust, keys_file: Path, tmp_path: Path
) -> None:
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(bomb.read_bytes()[:60])

    for image in (bomb, truncated):
        result = CliRunner().invoke(
            app, ["verify", "--image", str(image), "--jwks", str(keys_file)]
        )
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: cannot read {image} as an image: ")


def test_a_code_valid_until_beyond_any_calendar_prints_its_seconds(
    trust: Trust, keys_file: Path
) -> None:
    far = 10**17
    result = run(valid(trust.es, exp=far), "--jwks", str(keys_file), "--now", str(NOW))

    assert result.exit_code == 0, result.output
    assert f"expires: {far}" in result.stdout.splitlines()


def test_keys_from_a_server_are_refused_past_their_size(trust: Trust) -> None:
    import http.server
    import threading

    served = json.dumps({"keys": [], "pad": "x" * (2 << 20)}).encode()

    class Oversized(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(served)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Oversized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        result = run(valid(trust.es), "--jwks", url, "--now", str(NOW))
    finally:
        server.shutdown()
        server.server_close()

    assert result.exit_code == 2
    assert result.stderr == "error: the keys are over 1048576 bytes: not a JWKS\n"


def test_a_valid_code_shows_its_times_as_rfc_3339_utc(trust: Trust, keys_file: Path) -> None:
    # The times a technician compares with a clock or a log: 2025-11-25T19:46:40Z, not seconds.
    at = dt.datetime.fromtimestamp(NOW, dt.UTC).isoformat().replace("+00:00", "Z")
    for now in (str(NOW), at, dt.datetime.fromtimestamp(NOW, dt.UTC).astimezone().isoformat()):
        result = run(valid(trust.es), "--jwks", str(keys_file), "--now", now)

        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == "verdict: valid"
        assert "issued:  2025-11-25T19:46:40Z" in lines
        assert "expires: 2025-11-25T20:46:40Z" in lines
    refused = run(valid(trust.es), "--jwks", str(keys_file), "--now", "2025-11-25 19:46")
    assert refused.exit_code == 2
    assert "is not a time like 2026-12-07T08:17:19Z" in refused.stderr


def test_a_keys_file_without_end_is_refused_at_the_size_of_any_jwks(trust: Trust) -> None:
    # /dev/zero: read to the end first, it filled the memory.
    result = run(valid(trust.es), "--jwks", "/dev/zero", "--now", str(NOW))

    assert result.exit_code == 2
    assert result.stderr == "error: the keys are over 1048576 bytes: not a JWKS\n"


@pytest.mark.parametrize("leeway", ["-1", "901", "100000000"])
def test_the_leeway_is_bounded_as_the_service_bounds_it(
    trust: Trust, keys_file: Path, leeway: str
) -> None:
    # A day's leeway would pass a code that expired yesterday.
    late = str(EXP + 86_000)
    result = run(valid(trust.es), "--jwks", str(keys_file), "--now", late, "--leeway", leeway)

    assert result.exit_code == 2
    assert "Invalid value for '--leeway'" in result.stderr
    assert "verdict" not in result.stdout
