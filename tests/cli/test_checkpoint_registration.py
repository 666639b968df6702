"""A checkpoint device's kind of place is its own registration's, whoever runs it: a registration
copied from another checkpoint's device is not believed, and once the device has synced with a
server that serves registrations, ``--place`` cannot stand in for a missing one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from support.api import registered_over_http
from support.servers import YUEKANG, cli, serve, server_env


def _scan(env: dict[str, str], workdir: Path, state: str, *args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [YUEKANG, "checkpoint", "scan", "--state", str(workdir / state), *args],
        capture_output=True, text=True, env=env, cwd=workdir, timeout=60,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


# The device's files decide here, not the database: once, on PostgreSQL (CI's time budget).
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_border_post_stays_one_whatever_registration_or_place_is_put_on_it(
    fresh_database_url: str, tmp_path: Path
) -> None:
    env = server_env(fresh_database_url, tmp_path / "keys")
    with serve(env, tmp_path, "serve") as server:
        anchor = json.loads(cli(env, tmp_path, "keys", "anchor"))["kid"]
        for state, name, kind in [("border", "Gongbei gate", "border"), ("venue", "Café", "venue")]:
            key = cli(env, tmp_path, "checkpoints", "create", name, "--kind", kind)
            synced = cli(
                env, tmp_path, "checkpoint", "sync", "--server", server.base, "--key", key,
                "--anchor", anchor, "--state", str(tmp_path / state),
            )  # fmt: skip
            assert f"registered as {kind}: {name}" in synced
        with httpx.Client(base_url=server.base, timeout=30) as client:
            resident = registered_over_http(client, "+8613700137011", registry=server.registry)
            # Green, with no recent test: a venue lets it in, a border turns it away.
            qr_text = client.post("/v1/codes", headers=resident.auth).json()["qr_text"]

    code, out, _ = _scan(env, tmp_path, "border", qr_text)
    assert code == 1 and out.startswith("DENY")

    # The café's registration, signed by the same anchor, copied onto the border post.
    shutil.copy(tmp_path / "venue" / "registration.jws", tmp_path / "border" / "registration.jws")
    code, out, err = _scan(env, tmp_path, "border", qr_text)
    assert (code, out) == (2, "")
    assert "no registration synced for this checkpoint" in err
    # Nor may whoever runs it say what it is, with the registration copied or gone.
    code, out, err = _scan(env, tmp_path, "border", "--place", "venue", qr_text)
    assert (code, out) == (2, "") and "no registration synced for this checkpoint" in err
    (tmp_path / "border" / "registration.jws").unlink()
    code, out, err = _scan(env, tmp_path, "border", "--place", "venue", qr_text)
    assert (code, out) == (2, "") and "no registration synced for this checkpoint" in err
    # The café itself still lets the code in: its registration is its own.
    code, out, _ = _scan(env, tmp_path, "venue", qr_text)
    assert code == 0 and out.startswith("ALLOW")
