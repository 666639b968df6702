"""The production image, run for real: built by ``scripts/container``, migrated by a run of its
own, serving on a throwaway PostgreSQL with production settings, and taken through the README's
tour as a resident and a checkpoint would take it.

Production refuses the development SMS sender and the built-in registry, so the image talks to
what a deployment has: an SMS gateway (a stub here that keeps what it is sent, which is how the
test reads the one-time code a phone would receive) and the reference identity registry over TLS
(its certificate signed by a test authority the container is told to trust). "postgresql" is in
the module's name so that ``scripts/test`` runs it beside the other PostgreSQL tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.containers import build_image, env_options, podman, podman_env, skip_without_podman
from support.postgres import create_database, postgres_server
from support.servers import cli, free_port

pytestmark = pytest.mark.e2e

PHONE = "+8613800138000"  # 张小三's, in the reference registry's sample people
SAMPLES = Path(__file__).resolve().parents[2] / "src/yuekang_reference/registry/samples.ndjson"


@dataclass
class SmsGateway:
    """An SMS gateway that keeps every message it is sent, for the token it was given."""

    token: str
    messages: list[dict[str, str]] = field(default_factory=list)

    def code_for(self, phone: str) -> str:
        texts = [m["text"] for m in self.messages if m["to"] == phone]
        assert texts, f"no SMS to {phone}"
        found = re.search(r"\b\d{6,8}\b", texts[-1])
        assert found, texts[-1]
        return found.group()


@pytest.fixture
def sms_gateway() -> Iterator[tuple[SmsGateway, str]]:
    gateway = SmsGateway(secrets.token_urlsafe(16))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.headers.get("authorization") != f"Bearer {gateway.token}":
                self.send_response(401)
            else:
                gateway.messages.append(json.loads(body))
                self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway, f"http://127.0.0.1:{server.server_address[1]}/sms"
    finally:
        server.shutdown()


def certificate_authority(directory: Path) -> tuple[Path, Path, Path]:
    """A test authority and a certificate it signed for 127.0.0.1: (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yuekang test authority")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = directory / "ca.pem", directory / "registry.pem", directory / "registry-key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path in files:
        path.chmod(0o644)  # read by the container's own user
    return files


# The reference registry, as `yuekang partner registry serve` runs it, but over TLS: production
# asks its registry over https only.
REGISTRY_OVER_TLS = """
import sys, uvicorn
from yuekang_reference.registry import create_app
uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            ssl_certfile=sys.argv[2], ssl_keyfile=sys.argv[3])
"""


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """The reference identity registry on https://127.0.0.1 with the sample people: its URL,
    credentials and the authority that signed its certificate."""
    ca, cert, key = certificate_authority(tmp_path)
    env = {**os.environ, "REGISTRY_DATA_DIR": str(tmp_path / "registry")}
    cli(env, tmp_path, "partner", "registry", "load", str(SAMPLES))
    credentials = dict(
        line.split("=", 1)
        for line in cli(env, tmp_path, "partner", "registry", "credentials").splitlines()
    )
    port = free_port()
    with (tmp_path / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", REGISTRY_OVER_TLS, str(port), str(cert), str(key)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/healthz", verify=ssl.create_default_context(cafile=ca), accept={200, 404})
        yield url, credentials, ca
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for(
    url: str,
    *,
    verify: ssl.SSLContext | bool = True,
    accept: set[int] | None = None,
    seconds: float = 60,
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2, verify=verify).status_code in (accept or {200}):
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer in {seconds} s"
        time.sleep(0.5)


def production_secrets() -> dict[str, str]:
    return {
        "YUEKANG_SECRETS__KEY_PASSPHRASE": secrets.token_urlsafe(24),
        "YUEKANG_SECRETS__SESSION_SECRET": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__OTP_SECRET": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__PII_KEYS": json.dumps({"k1": base64.b64encode(os.urandom(32)).decode()}),
        "YUEKANG_SECRETS__PII_ACTIVE_KEY_ID": "k1",
    }


@pytest.fixture(scope="module")
def image() -> str:
    skip_without_podman()
    return build_image()


def run(image: str, env: dict[str, str], *args: str, options: tuple[str, ...] = ()) -> str:
    """``yuekang ARGS`` in a container of its own, as an operator's one-off job would."""
    done = podman(
        "run", "--rm", "--network", "host", *options, *env_options(env), image, *args,
        env={**podman_env(), **env},
    )  # fmt: skip
    return done.stdout.strip()


def test_the_image_refuses_development_secrets(image: str) -> None:
    base = {"YUEKANG_DATABASE_URL": "postgresql+asyncpg://yuekang@127.0.0.1:1/yuekang"}
    missing = podman("run", "--rm", *env_options(base), image, check=False,
                     env={**podman_env(), **base})  # fmt: skip
    assert missing.returncode == 2
    assert "production needs its secrets set" in missing.stderr
    development = {
        **base,
        **production_secrets(),
        "YUEKANG_SECRETS__SESSION_SECRET": "dev:" + secrets.token_urlsafe(32),
    }
    refused = podman("run", "--rm", *env_options(development), image, check=False,
                     env={**podman_env(), **development})  # fmt: skip
    assert refused.returncode == 2
    assert "production refuses development settings" in refused.stderr
    assert "session_secret" in refused.stderr and "sms.backend=log" in refused.stderr
    # Named, never shown.
    assert development["YUEKANG_SECRETS__SESSION_SECRET"] not in refused.stderr


# A checkout's development secrets and data (keys/, var/, macao-data/), and any PEM private key.
LEFTOVERS = r"""
import pathlib, re
pem = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+[A-Za-z0-9+/=\s]{64,}-----END")
found = [str(p) for p in pathlib.Path("/app").iterdir()]
for path in pathlib.Path("/opt/yuekang").rglob("*"):
    if path.is_file() and (
        path.name in ("dev-secrets.json", "secrets.json") or path.suffix == ".db"
        or pem.search(path.read_bytes())
    ):
        found.append(str(path))
print(found)
"""


def test_the_image_holds_no_compiler_and_no_secret(image: str) -> None:
    found = run(image, {}, "--help")
    assert "health codes" in found  # the entry point is yuekang
    tools = podman(
        "run", "--rm", "--entrypoint", "python3", image, "-c",
        "import shutil; print([t for t in ('gcc', 'cc', 'c++', 'g++', 'clang', 'make', 'pip')"
        " if shutil.which(t)])",
    ).stdout.strip()  # fmt: skip
    assert tools == "[]"
    # Keys in an HSM need only the vendor's module mounted: the binding is in the image.
    binding = podman(
        "run", "--rm", "--entrypoint", "python3", image, "-c",
        "import pkcs11; print(pkcs11.Mechanism.ECDSA.name)",
    ).stdout.strip()  # fmt: skip
    assert binding == "ECDSA"
    # The test doubles stay in the reference stage.
    reference = podman("run", "--rm", image, "partner", "registry", "serve", check=False)
    assert reference.returncode == 2 and "reference" in reference.stderr, reference.stderr
    # No development secrets, data or private key came in with the build context.
    leftovers = podman(
        "run", "--rm", "--entrypoint", "python3", image, "-c", LEFTOVERS,
    ).stdout.strip()  # fmt: skip
    assert leftovers == "[]"
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    environment = "\n".join(inspected["Config"]["Env"])
    assert "YUEKANG_ENV=prod" in environment
    assert "SECRET" not in environment.upper() and "PASSPHRASE" not in environment.upper()
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert "SECRETS__" not in history and "dev:" not in history
    assert inspected["Config"]["User"] not in ("", "0", "root", "0:0")
    assert "/livez" in " ".join(inspected["Healthcheck"]["Test"])


def test_the_image_serves_the_tour_on_postgresql(
    image: str,
    tmp_path: Path,
    sms_gateway: tuple[SmsGateway, str],
    registry: tuple[str, dict[str, str], Path],
) -> None:
    gateway, gateway_url = sms_gateway
    registry_url, credentials, authority = registry
    port = free_port()
    with postgres_server() as server:
        env = {
            "YUEKANG_DATABASE_URL": create_database(server),
            **production_secrets(),
            "YUEKANG_SMS__BACKEND": "http",
            "YUEKANG_SMS__HTTP_URL": gateway_url,
            "YUEKANG_SMS__HTTP_TOKEN": gateway.token,
            "YUEKANG_PROOFING__BACKEND": "http",
            "YUEKANG_PROOFING__URL": registry_url,
            "YUEKANG_PROOFING__CLIENT_ID": credentials["client_id"],
            "YUEKANG_PROOFING__CLIENT_SECRET": credentials["client_secret"],
            # The test authority, for the registry's certificate (httpx reads SSL_CERT_FILE).
            "SSL_CERT_FILE": "/run/yuekang/ca.pem",
            "YUEKANG_PORT": str(port),
            # A key may sign as soon as it is made: the test cannot wait out the hour a fleet of
            # checkpoints needs to learn a new key.
            "YUEKANG_KEYS__PUBLISH_LEAD_SECONDS": "0",
        }
        mounts = ("-v", f"{authority}:/run/yuekang/ca.pem:ro")
        assert run(image, env, "db", "upgrade", options=mounts) == "database at head"
        kid = run(image, env, "keys", "generate", options=mounts).split()[0]
        run(image, env, "keys", "activate", kid, options=mounts)
        gate = run(image, env, "checkpoints", "create", "Gongbei port", options=mounts)
        gate = gate.splitlines()[-1]

        name = f"yuekang-test-{secrets.token_hex(4)}"
        podman(
            "run", "-d", "--name", name, "--network", "host", *mounts, *env_options(env), image,
            env={**podman_env(), **env},
        )  # fmt: skip
        try:
            api = f"http://127.0.0.1:{port}"
            try:
                wait_for(f"{api}/readyz")
            except AssertionError:
                raise AssertionError(podman("logs", name, check=False).stderr[-3000:]) from None
            with httpx.Client(base_url=api, timeout=30) as client:
                tour(client, gateway, gate)
                pages_and_assets(client)
            uids = process_uids(name)
            assert uids and 0 not in uids, uids
            # The HEALTHCHECK, as podman (or an orchestrator reading it) runs it.
            health = podman("healthcheck", "run", name, check=False)
            assert health.returncode == 0, health.stdout + health.stderr
        finally:
            logs = podman("logs", name, check=False)
            podman("rm", "--force", "--time", "5", name, check=False)
        # Nothing a resident typed reaches the log.
        for private in (PHONE, "11010519491231002X", "张小三"):
            assert private not in logs.stdout + logs.stderr


def tour(client: httpx.Client, gateway: SmsGateway, gate: str) -> None:
    # 1. Sign in: the code comes by SMS, not in the answer.
    sent = client.post("/v1/auth/otp", json={"phone": PHONE})
    assert sent.status_code == 200, sent.text
    assert sent.json().get("dev_code") is None
    token = client.post(
        "/v1/auth/token",
        json={
            "phone": PHONE,
            "challenge_id": sent.json()["challenge_id"],
            "code": gateway.code_for(PHONE),
        },
    )
    assert token.status_code == 200, token.text
    auth = {"authorization": f"Bearer {token.json()['access_token']}"}
    # 2. Bind an identity, proved by the registry over TLS.
    bound = client.put(
        "/v1/me/identity",
        headers=auth,
        json={"name": "张小三", "doc_type": "prc_id", "doc_number": "11010519491231002X",
              "birth_date": "1949-12-31"},
    )  # fmt: skip
    assert bound.status_code == 201, bound.text
    assert bound.json()["assurance"] == "proofed"
    # 3. A code, and its image.
    code = client.post("/v1/codes", headers=auth)
    assert code.status_code == 201, code.text
    png = client.get(code.json()["png_url"], headers=auth)
    assert (png.status_code, png.headers["content-type"]) == (200, "image/png")
    assert png.content.startswith(b"\x89PNG")
    # 4. The published keys, and 5. an online verification by a checkpoint.
    assert client.get("/.well-known/jwks.json").json()["keys"]
    verdict = client.post(
        "/v1/verify",
        headers={"authorization": f"Bearer {gate}", "accept-language": "en"},
        json={"qr_text": code.json()["qr_text"]},
    )
    assert verdict.status_code == 200, verdict.text
    assert (verdict.json()["verdict"], verdict.json()["status"]) == ("valid", "green")


_IMPORT = re.compile(
    r"""(?:\bimport|\bexport)\s*(?:[^"';]*?\bfrom\s*)?\(?\s*["']([^"']+)["']""", re.S
)
_STATIC = re.compile(r"""/static/[A-Za-z0-9_./-]+""")
_COMMENT = re.compile(r"/\*.*?\*/|^\s*//[^\n]*", re.S | re.M)
_CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)""")


def pages_and_assets(client: httpx.Client) -> None:
    """Every page, and every file it loads: its stylesheets, scripts and modules (followed
    through their imports, ours and the npm libraries') and the files they name."""
    queue: list[tuple[str, str]] = [
        (page, "page") for page in ("/", "/scanner", "/console", "/docs")
    ]
    seen: set[str] = set()
    libraries: set[str] = set()
    while queue:
        path, kind = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code}"
        assert response.content, path
        media = response.headers["content-type"]
        text = response.text if media.startswith(("text/", "application/json")) else ""
        if "/vendor/" in path:
            libraries.add(path.split("/vendor/")[1].split("/")[0])
            assert response.headers["cache-control"].endswith("immutable"), path
        if kind == "page":
            assert media.startswith("text/html")
        if kind in ("page", "module") or path.endswith(".css"):
            for found in _STATIC.findall(text):
                if not found.endswith("/"):  # a folder a module builds names in
                    queue.append((found, "module" if found.endswith(".js") else "file"))
        if kind == "module":
            # Not what JSDoc mentions: {import('../interface.js').X} is a type, never loaded.
            text = _COMMENT.sub("", text)
            for specifier in _IMPORT.findall(text):
                if specifier.startswith(("./", "../", "/")):
                    queue.append((urlsplit(urljoin(path, specifier)).path, "module"))
        if path.endswith(".css"):
            for reference in _CSS_URL.findall(text):
                if not reference.startswith("data:"):
                    queue.append((urlsplit(urljoin(path, reference)).path, "file"))
    # What `npm ci` put there: the old image had none of them.
    assert libraries == {"zxing", "chart", "cborg", "base45", "swagger-ui"}, sorted(seen)


def process_uids(name: str) -> list[int]:
    """The real user ids of the container's processes, read from the host's /proc."""
    pid = podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
    uids = []
    for candidate in [pid, *_children(int(pid))]:
        status = Path(f"/proc/{candidate}/status").read_text()
        uids.append(int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)))  # type: ignore[union-attr]
    return uids


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
                found.extend(_children(int(entry.name)))
    return found
