"""Settings: one object, built once per entry point (``serve``, a CLI command, a test).

Everything comes from ``YUEKANG_*`` environment variables (nested sections use ``__``, e.g.
``YUEKANG_OTP__TTL_SECONDS=300``). In development (``YUEKANG_ENV=dev``, the default) missing
secrets are generated on first run into ``keys/dev-secrets.json``; in production every secret must
be given and none may be a development secret, or the process refuses to start.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_PREFIX = "dev:"
"""Generated development secrets start with this, so production can recognise and refuse them."""


def database_url_problem(url: str) -> str | None:
    """What SQLAlchemy would refuse in ``url`` when an engine is made from it, in words that
    quote nothing of it (a password), or None.

    Checked with the settings, so that a multi-host URL whose hosts and ports do not pair up
    is one line naming the variable from every command, not a traceback from the first engine
    made (after start-up logging, in every worker)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "not a database URL (e.g. postgresql+asyncpg://user:password@host:5432/database)"
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return (
            "names a database SQLAlchemy does not know "
            "(postgresql+asyncpg:// or sqlite+aiosqlite://)"
        )
    if parsed.get_backend_name() != "postgresql":
        return None
    try:
        dialect().create_connect_args(parsed)
    except (ArgumentError, ValueError) as exc:
        # SQLAlchemy's words, matched rather than shown: one of them quotes the ports given.
        said = str(exc)
        reason = next(
            (why for words, why in _MULTI_HOST_REFUSALS if words in said),
            "its hosts and ports cannot be read",
        )
        return (
            f"{reason}: a multi-host URL gives every host its port, "
            "?host=h1:5432&host=h2:5432&target_session_attrs=read-write"
        )
    return None


_MULTI_HOST_REFUSALS = (
    ("All ports are required", "a host is listed without its port"),
    ("All hosts are required", "a port is listed without its host"),
    ("number of hosts and ports", "the hosts and the ports do not pair up"),
    ("Can't mix", "port= cannot go with host=h:port or with host= given more than once"),
    ("non-integer port", "a port is not a number"),
)


def _usable_url(url: str) -> str:
    problem = database_url_problem(url)
    if problem is not None:
        # A custom error: pydantic's own would prefix "Value error, " and may quote the input.
        raise PydanticCustomError("database_url", problem)
    return url


class OtpSettings(BaseModel):
    """Sign-in codes. Each request makes its own challenge and none replaces another, so a
    stranger asking for codes for someone's phone does not spoil the code its owner is typing;
    guesses are counted per challenge, whose id only its requester holds. Guesses at one phone
    are bounded by ``per_phone_limit * max_attempts`` per (sliding) window: docs/API.md."""

    ttl_seconds: int = Field(300, ge=30, le=3600)
    max_attempts: int = Field(5, ge=1, le=20, description="guesses per challenge")
    length: int = Field(6, ge=6, le=8)
    resend_seconds: int = Field(
        60, ge=0, le=600, description="wait between two codes for one phone from one address"
    )
    per_phone_limit: int = Field(
        20, ge=1, description="codes sent to one phone per window, whoever asks"
    )
    per_phone_client_limit: int = Field(
        5,
        ge=1,
        description="codes sent to one phone per window at the request of one address (IPv6: "
        "/64): one address cannot use up a phone's allowance",
    )
    per_phone_window_seconds: int = Field(3600, ge=1, description="both per-phone limits slide")
    per_client_limit: int = Field(
        30, ge=1, description="OTP requests per client address (IPv6: per /64) per window"
    )
    per_client_window_seconds: int = Field(3600, ge=1)
    verify_per_client_limit: int = Field(
        60, ge=1, description="code checks per client address (IPv6: per /64) per window"
    )
    verify_per_client_window_seconds: int = Field(3600, ge=1)


class CodeSettings(BaseModel):
    lifetime_seconds: int = Field(3600, ge=60)
    max_lifetime_seconds: int = Field(
        86400,
        ge=60,
        description="upper bound of any code lifetime; retired keys stay published this long",
    )
    clock_leeway_seconds: int = Field(120, ge=0, le=900)
    reuse: bool = Field(
        True,
        description="answer a resident's live code again while more than half its lifetime is "
        "left and nothing it shows has changed, instead of making another (off: a new code for "
        "every request, as the issuance benchmark measures)",
    )
    image_cache_entries: int = Field(2048, ge=0)

    @model_validator(mode="after")
    def _lifetime_within_max(self) -> CodeSettings:
        if self.lifetime_seconds > self.max_lifetime_seconds:
            raise ValueError("codes.lifetime_seconds exceeds codes.max_lifetime_seconds")
        return self


class KeySettings(BaseModel):
    default_algorithm: Literal["ES256", "EdDSA"] = "ES256"
    validity_days: int = Field(90, ge=1, description="how long a signing key may sign")
    publish_lead_seconds: int = Field(
        3600,
        ge=0,
        description="a key must be published this long before it may sign (one sync interval)",
    )
    jwks_max_age_seconds: int = Field(300, ge=0)
    ring_refresh_seconds: float = Field(
        5.0, ge=0, description="how stale a process's view of key states may get"
    )
    backend: Literal["file", "pkcs11"] = Field(
        "file",
        description="where new signing keys are made and used: encrypted in the database "
        "(file), or generated inside a PKCS#11 token, never exportable, used by label (pkcs11)",
    )
    pkcs11_module: Path | None = Field(
        None, description="the token's PKCS#11 library (backend=pkcs11), e.g. SoftHSM2's"
    )
    pkcs11_token_label: str | None = Field(
        None, max_length=32, description="the label of the token holding the keys"
    )

    def pkcs11_missing(self, secrets: Secrets | None) -> list[str]:
        """What ``backend=pkcs11`` lacks to open its token (nothing for ``backend=file``)."""
        if self.backend != "pkcs11":
            return []
        missing = [
            name
            for name, value in (
                ("YUEKANG_KEYS__PKCS11_MODULE", self.pkcs11_module),
                ("YUEKANG_KEYS__PKCS11_TOKEN_LABEL", self.pkcs11_token_label),
                ("YUEKANG_SECRETS__PKCS11_PIN", secrets.pkcs11_pin if secrets else None),
            )
            if not value
        ]
        return missing


class SmsSettings(BaseModel):
    backend: Literal["log", "http"] = "log"
    http_url: str | None = None
    http_token: str | None = None

    @model_validator(mode="after")
    def _http_needs_url(self) -> SmsSettings:
        if self.backend == "http" and not (self.http_url and self.http_token):
            raise ValueError("sms.backend=http needs sms.http_url and sms.http_token")
        return self


class RuleSettings(BaseModel):
    refresh_seconds: float = Field(
        5.0,
        ge=0,
        description="how long a process may use its cached rule set before looking for a newer one",
    )


class FeedSettings(BaseModel):
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="largest feed batch body (100,000 rows fit)"
    )
    max_rows: int = Field(100_000, ge=1, le=1_000_000)
    max_reported_errors: int = Field(
        1000, ge=1, description="row errors listed in a batch result (all are counted)"
    )


class TrustSettings(BaseModel):
    bundle_lifetime_seconds: int = Field(
        86_400, ge=300, description="a trust bundle is fresh this long (re-signed at half of it)"
    )
    bundle_grace_seconds: int = Field(
        3 * 86_400, ge=0, description="after expiry, checkpoints keep verifying (with a warning)"
    )
    serve_cached_seconds: float = Field(
        5.0,
        ge=0,
        description="a process serves the bundle it last checked this long without asking the "
        "database again: how late a revocation or key change may reach a checkpoint's sync",
    )


class ScanSettings(BaseModel):
    retention_days: int = Field(
        28,
        ge=1,
        le=366,
        description="scan records older are purged, and codes and revocations this long after "
        "they expire (contact tracing resolves a scanned code to its holder, and a late upload "
        "is checked against the revocations); on PostgreSQL by whole days, so a record is gone "
        "within a day after",
    )


class MaintenanceSettings(BaseModel):
    """Housekeeping (maintenance.py): how often, and how long what it deletes is kept."""

    interval_seconds: int = Field(3600, ge=60, description="one round per this long")
    check_seconds: float = Field(
        300, gt=0, description="how often each process asks whether a round is due"
    )
    lease_seconds: int = Field(
        900, ge=60, description="a round not finished by then is another process's to do"
    )
    batch_rows: int = Field(5000, ge=1, le=100_000, description="rows deleted per transaction")
    rate_limit_days: int = Field(
        2, ge=2, description="rate-limit counters are kept this long after their window starts"
    )
    otp_days: int = Field(1, ge=1, description="sign-in challenges, after they expire")
    session_days: int = Field(30, ge=1, description="sessions, after they end or run out")
    trust_bundle_days: int = Field(
        30, ge=1, description="superseded bundles' rows (deltas from older ones are whole bundles)"
    )
    self_read_days: int = Field(400, ge=1, description="residents' daily counts of their own reads")
    partitions_ahead_days: int = Field(
        7,
        ge=2,
        le=60,
        description="PostgreSQL: days of partitions created ahead of today for codes, "
        "revocations and scan records (a week for a stopped housekeeping to be noticed before "
        "rows fall into the DEFAULT partition; at least two, for codes expiring tomorrow)",
    )


class ExchangeSettings(BaseModel):
    """Delivery to partner systems (docs/EXCHANGE.md)."""

    request_timeout_seconds: float = Field(5.0, gt=0, le=60)
    poll_seconds: float = Field(1.0, gt=0, le=60, description="how often the outbox looks for work")
    lease_seconds: int = Field(60, ge=5, description="a claimed message is someone else's after")
    backoff_base_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(60.0, gt=0)
    max_age_seconds: int = Field(86400, ge=60, description="undelivered after this: failed")
    circuit_failures: int = Field(5, ge=1, description="consecutive failures that open it")
    circuit_open_seconds: float = Field(30.0, gt=0)
    package_lifetime_seconds: int = Field(300, ge=30, le=600)


class LogSettings(BaseModel):
    """What ``yuekang serve`` writes to stderr (yuekang/logs.py)."""

    format: Literal["json", "text"] | None = Field(
        None,
        description="json: one object per line, for a log collector; text: for a terminal. "
        "Unset: json in production, text in development",
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="for every logger, the service's and uvicorn's"
    )


class TracingSettings(BaseModel):
    """OpenTelemetry traces (yuekang/tracing.py; needs the ``tracing`` extra). Off by default:
    off, nothing is imported or set up and no request pays for it."""

    exporter: Literal["none", "console", "otlp"] = Field(
        "none",
        description="none: no tracing; console: spans as JSON on stdout; otlp: OTLP over HTTP "
        "to otlp_endpoint",
    )
    otlp_endpoint: str = Field(
        "http://127.0.0.1:4318/v1/traces", description="the collector's OTLP/HTTP traces URL"
    )
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="share of traces kept, decided at the trace's root"
    )
    service_name: str = Field("yuekang", min_length=1, max_length=64)


class DatabaseSettings(BaseModel):
    """How long the service waits for PostgreSQL before answering ``503 database_unavailable``
    (docs/RELIABILITY.md). SQLite, a file, keeps its 30 s lock wait: it is never unreachable."""

    connect_timeout_seconds: float = Field(2.0, gt=0, le=60, description="opening a connection")
    statement_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="one statement; a frozen server is found this fast"
    )
    pool_timeout_seconds: float = Field(
        2.0, gt=0, le=60, description="waiting for a pooled connection when all are busy"
    )
    pool_size: int = Field(
        20,
        ge=1,
        le=500,
        description="connections each process keeps open for requests (per replica too)",
    )
    pool_overflow: int = Field(
        0,
        ge=0,
        le=500,
        description="more opened when every pooled one is busy and closed when given back: each "
        "is a new PostgreSQL backend, forked and set up, so 0 unless bursts need it",
    )
    replica_urls: list[str] = Field(
        default_factory=list,
        description="streaming replicas serving reads that tolerate bounded staleness (the "
        "resident's status, the trust bundle, console statistics, JWKS); writes and reads of "
        "one's own writes stay on database_url",
    )
    replica_max_lag_seconds: float = Field(
        5.0, gt=0, le=3600, description="a replica replaying further behind is not read from"
    )
    pooler: Literal["none", "transaction"] = Field(
        "none",
        description="connections go through a pooler in transaction mode (pgbouncer "
        "pool_mode=transaction): no prepared statement or session state outlives a transaction",
    )
    kept_rows: int = Field(
        20_000,
        ge=0,
        le=10_000_000,
        description="status rows (about 2 KB each), and as many checkpoint keys, each process "
        "keeps in memory until PostgreSQL notifies a change (docs/ARCHITECTURE.md, 'Rows kept "
        "until changed'); 0 keeps none. Nothing is kept on SQLite or with pooler=transaction",
    )
    notice_check_seconds: float = Field(
        2.0,
        ge=0.2,
        le=60,
        description="kept rows are served only this long after the notification connection "
        "last proved it hears changes (it is proved twice as often): the longest a change can "
        "go unheard when that connection silently stops",
    )
    listen_url: str | None = Field(
        None,
        description="where the notification connection goes when database_url is a pooler in "
        "transaction mode (LISTEN needs a session of its own): the primary itself. Without it, "
        "nothing is kept behind such a pooler",
    )

    @field_validator("listen_url")
    @classmethod
    def _usable_listen_url(cls, url: str | None) -> str | None:
        problem = None if url is None else database_url_problem(url)
        if problem is not None:
            raise PydanticCustomError("database_url", "listen_url: {problem}", {"problem": problem})
        return url

    @field_validator("replica_urls")
    @classmethod
    def _usable_replica_urls(cls, urls: list[str]) -> list[str]:
        for number, url in enumerate(urls, start=1):
            problem = database_url_problem(url)
            if problem is not None:
                raise PydanticCustomError(
                    "database_url",
                    "replica {number}: {problem}",
                    {"number": number, "problem": problem},
                )
        return urls


class ProofingSettings(BaseModel):
    """Identity proofing (docs/IDENTITY.md): which registry answers, and how hard it may be
    asked."""

    backend: Literal["builtin", "http"] = Field(
        "builtin",
        description="builtin: the development registry in builtin_dir, in-process (refused in "
        "production); http: an external registry speaking YKP1 at url",
    )
    url: str | None = Field(None, description="base URL of the registry (backend=http)")
    client_id: str = Field("yk-gd", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    client_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="the registry's shared secret (HMAC of YKP1 requests; `yuekang partner "
        "registry credentials` prints the reference registry's)",
    )
    client_secret_file: Path | None = Field(
        None, description="a file holding the shared secret (a mounted secret), instead"
    )
    builtin_dir: Path = Field(
        Path("var/registry"), description="the built-in development registry's data"
    )
    timeout_seconds: float = Field(2.0, gt=0, le=30, description="one attempt")
    attempts: int = Field(3, ge=1, le=5)
    budget_seconds: float = Field(
        5.0, gt=0, le=30, description="a check with its retries; past it, 503 proofing_unavailable"
    )
    per_account_limit: int = Field(5, ge=1, description="attempts per account per window")
    per_account_window_seconds: int = Field(86400, ge=60)
    per_document_limit: int = Field(5, ge=1, description="attempts per document per window")
    per_document_window_seconds: int = Field(86400, ge=60)
    per_client_limit: int = Field(30, ge=1, description="attempts per client address per window")
    per_client_window_seconds: int = Field(3600, ge=60)
    alert_failures: int = Field(
        3, ge=1, description="failed attempts on one document that raise an operator alert"
    )
    alert_window_seconds: int = Field(86400, ge=60)

    @model_validator(mode="after")
    def _http_needs_url(self) -> ProofingSettings:
        if self.backend == "http" and not (
            self.url and self.url.startswith(("http://", "https://"))
        ):
            raise ValueError("proofing.backend=http needs proofing.url (http:// or https://)")
        return self


class DependantSettings(BaseModel):
    max_per_guardian: int = Field(5, ge=1, le=20, description="family members one account holds")
    adult_age: int = Field(18, ge=14, le=21, description="from this age a dependant must consent")
    consent_ttl_seconds: int = Field(600, ge=60, le=3600)
    consent_max_attempts: int = Field(5, ge=1, le=20)
    consent_resends_per_day: int = Field(5, ge=1, le=50)
    pending_hours: int = Field(
        24,
        ge=1,
        description="an adult added without consenting holds their document this long; then "
        "another guardian may add them",
    )


class DocumentCheckSettings(BaseModel):
    per_checkpoint_limit: int = Field(
        60, ge=1, description="document checks (刷证核验) one checkpoint may make per window"
    )
    per_checkpoint_window_seconds: int = Field(60, ge=1)


class MetricsSettings(BaseModel):
    """``/metrics`` (yuekang.metrics). Answered to a request bearing the token, or without a
    token configured only to a client on the same machine (a sidecar, a port-forward); anything
    else gets the 404 of a path that does not exist."""

    enabled: bool = Field(
        True, description="count requests and domain events and answer /metrics; off, neither"
    )
    token: SecretStr | None = Field(
        None,
        min_length=32,
        description="bearer token Prometheus sends (Authorization: Bearer ...) to scrape from "
        "another machine",
    )
    state_timeout_seconds: float = Field(
        1.0,
        gt=0,
        le=10,
        description="budget of a scrape's database reads (outbox, bundle, keys); past it the "
        "scrape answers with yuekang_db_up 0 and without those figures",
    )


class SessionSettings(BaseModel):
    """A sign-in is a session: short access tokens, renewed with a rotating refresh token until
    the session is ended (sign-out, sign-out everywhere, a replayed refresh token) or runs out."""

    ttl_seconds: int = Field(900, ge=60, le=86400, description="access token lifetime")
    idle_seconds: int = Field(
        30 * 86400, ge=300, description="a session not renewed for this long ends"
    )
    max_seconds: int = Field(
        180 * 86400, ge=300, description="a session ends this long after sign-in, used or not"
    )
    revocation_poll_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="how long a process may go without reading which sessions were ended",
    )

    @model_validator(mode="after")
    def _idle_within_max(self) -> SessionSettings:
        if self.idle_seconds > self.max_seconds:
            raise ValueError("session.idle_seconds exceeds session.max_seconds")
        return self


class Secrets(BaseModel):
    """The service's master secrets. Never logged, never in a response."""

    key_passphrase: str = Field(min_length=16, description="encrypts signing keys at rest")
    session_secret: str = Field(min_length=32, description="HMAC key of session tokens")
    otp_secret: str = Field(min_length=32, description="HMAC key for hashing one-time codes")
    pii_keys: dict[str, str] = Field(
        min_length=1, description="AES-256-GCM keys for personal data, by key id, base64"
    )
    pii_active_key_id: str
    blind_index_key: str = Field(min_length=32, description="HMAC key of lookup indexes")
    pkcs11_pin: str | None = Field(
        None, min_length=4, description="the user PIN of the PKCS#11 token (keys.backend=pkcs11)"
    )

    @model_validator(mode="after")
    def _check(self) -> Secrets:
        if self.pii_active_key_id not in self.pii_keys:
            raise ValueError("pii_active_key_id names no key in pii_keys")
        for kid, value in self.pii_keys.items():
            raw = value.removeprefix(DEV_SECRET_PREFIX)
            if len(base64.b64decode(raw, validate=True)) != 32:
                raise ValueError(f"pii key {kid!r} must be 32 bytes, base64")
        return self

    def development_ones(self) -> list[str]:
        values = {
            "key_passphrase": self.key_passphrase,
            "session_secret": self.session_secret,
            "otp_secret": self.otp_secret,
            "blind_index_key": self.blind_index_key,
            **{f"pii_keys.{k}": v for k, v in self.pii_keys.items()},
        }
        return [name for name, value in values.items() if value.startswith(DEV_SECRET_PREFIX)]

    def pii_key_bytes(self) -> dict[str, bytes]:
        return {
            kid: base64.b64decode(value.removeprefix(DEV_SECRET_PREFIX))
            for kid, value in self.pii_keys.items()
        }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="YUEKANG_", env_nested_delimiter="__", extra="ignore"
    )

    env: Literal["dev", "prod"] = "dev"
    database_url: str = "sqlite+aiosqlite:///var/yuekang.db"
    keys_dir: Path = Path("keys")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    issuer: str = Field("yk:gd", min_length=1, max_length=16, pattern=r"^[a-z0-9:.-]+$")
    max_body_bytes: int = Field(65536, ge=1024)
    trust_forwarded_for: bool = Field(
        False,
        description="behind a reverse proxy: let uvicorn take the client address from "
        "X-Forwarded-For sent by the addresses in FORWARDED_ALLOW_IPS",
    )
    access_log: bool = Field(
        False,
        description="log every request (method, route template, status, duration; never the "
        "path or the query, which name health codes) as yuekang.access; off by default: the "
        "proxy in front usually keeps such a log already, and at a border queue's rate a log "
        "line is a measurable share of an online verification",
    )
    telemetry: bool = Field(
        False,
        description="FastAPI's OpenTelemetry spans, metrics and logs, for an OpenTelemetry SDK "
        "configured in the process (e.g. FASTAPI_OTEL_AUTO_CONFIGURE=true); off, no request pays "
        "for looking the providers up",
    )
    api_docs: bool = Field(
        True,
        description="serve the API reference page at /docs (from the pages' locked npm files; "
        "/openapi.json is served either way)",
    )
    hotline: str | None = Field(
        None,
        max_length=32,
        pattern=r"^\+?[0-9][0-9 ()-]{1,30}$",
        description="the helpline a resident with a yellow or red code is told to call (e.g. "
        "12345); shown by the resident page with GET /v1/me/status",
    )
    fast_lane: bool = Field(
        True,
        description="answer online verifications and cached QR images before FastAPI's "
        "routing (yuekang.fastlane); off sends every request through the routes",
    )
    database: DatabaseSettings = DatabaseSettings()
    log: LogSettings = LogSettings()
    tracing: TracingSettings = TracingSettings()
    otp: OtpSettings = OtpSettings()
    codes: CodeSettings = CodeSettings()
    keys: KeySettings = KeySettings()
    session: SessionSettings = SessionSettings()
    rules: RuleSettings = RuleSettings()
    feeds: FeedSettings = FeedSettings()
    trust: TrustSettings = TrustSettings()
    scans: ScanSettings = ScanSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    exchange: ExchangeSettings = ExchangeSettings()
    sms: SmsSettings = SmsSettings()
    proofing: ProofingSettings = ProofingSettings()
    dependants: DependantSettings = DependantSettings()
    document_checks: DocumentCheckSettings = DocumentCheckSettings()
    metrics: MetricsSettings = MetricsSettings()
    secrets: Secrets | None = None

    @field_validator("database_url")
    @classmethod
    def _usable_database_url(cls, url: str) -> str:
        return _usable_url(url)

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def log_format(self) -> Literal["json", "text"]:
        return self.log.format or ("text" if self.is_dev else "json")


class ConfigurationError(RuntimeError):
    """The settings cannot be used (missing or development secrets in production...)."""


def _variable(location: tuple[int | str, ...]) -> str:
    return "YUEKANG_" + "__".join(str(part) for part in location).upper()


def load_settings() -> Settings:
    """Settings from the environment. A bad or incomplete one is a :class:`ConfigurationError`
    naming each variable and what is wrong with it -- never its value, since a secret's would be
    printed with it (pydantic's own message quotes the input)."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = [f"{_variable(error['loc'])}: {error['msg']}" for error in exc.errors()]
        raise ConfigurationError("; ".join(problems)) from None


@dataclass(frozen=True)
class ResolvedSettings:
    """Settings whose secrets are known to be present and allowed for the environment."""

    settings: Settings
    secrets: Secrets

    def proofing_secret(self) -> bytes:
        """The identity registry's shared secret (backend=http)."""
        given = self.settings.proofing.client_secret
        if given is not None:
            return given.get_secret_value().encode()
        path = self.settings.proofing.client_secret_file
        if path is None:
            raise ConfigurationError("no secret is configured for the identity registry")
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
        if len(secret) < 32:
            raise ConfigurationError(f"{path} must hold a secret of at least 32 characters")
        return secret.encode()


def resolve(settings: Settings) -> ResolvedSettings:
    """Return settings with their secrets, generating development secrets when allowed.

    Production refuses to start without secrets or with any development secret in them.
    """
    current = settings.secrets
    if settings.env == "prod":
        if current is None:
            required = [
                _variable(("secrets", name))
                for name, field in Secrets.model_fields.items()
                if field.is_required()
            ]
            raise ConfigurationError(
                "production needs its secrets set; refusing to start without " + ", ".join(required)
            )
        missing = settings.keys.pkcs11_missing(current)
        if missing:
            raise ConfigurationError(
                "keys.backend=pkcs11 needs its token named and its PIN: set " + ", ".join(missing)
            )
        dev = current.development_ones()
        if settings.sms.backend == "log":
            dev.append("sms.backend=log (writes one-time codes to the log)")
        if settings.proofing.backend == "builtin":
            dev.append("proofing.backend=builtin (a development registry of sample people)")
        elif not (settings.proofing.url or "").startswith("https://"):
            raise ConfigurationError(
                "production asks the identity registry over TLS: proofing.url must be https://"
            )
        secret = settings.proofing.client_secret
        if secret is not None and secret.get_secret_value().startswith(DEV_SECRET_PREFIX):
            dev.append("proofing.client_secret")
        if dev:
            raise ConfigurationError(
                "production refuses development settings: " + ", ".join(sorted(dev))
            )
        return _checked(ResolvedSettings(settings, current))
    if current is None:
        current = _load_or_create_dev_secrets(settings.keys_dir)
    return _checked(ResolvedSettings(settings, current))


def _checked(resolved: ResolvedSettings) -> ResolvedSettings:
    """Settings that can be used as they are: an HTTP identity registry with its secret."""
    proofing = resolved.settings.proofing
    if proofing.backend == "http":
        if proofing.client_secret is None and proofing.client_secret_file is None:
            raise ConfigurationError(
                "proofing.backend=http needs the registry's secret: set "
                "YUEKANG_PROOFING__CLIENT_SECRET or YUEKANG_PROOFING__CLIENT_SECRET_FILE "
                "(`yuekang partner registry credentials` prints the reference registry's)"
            )
        resolved.proofing_secret()  # a file that cannot be read, or too short, says so now
    return resolved


def _load_or_create_dev_secrets(keys_dir: Path) -> Secrets:
    path = keys_dir / "dev-secrets.json"
    if path.exists():
        return Secrets.model_validate_json(path.read_text())

    def token() -> str:
        return DEV_SECRET_PREFIX + secrets.token_urlsafe(32)

    generated = Secrets(
        key_passphrase=token(),
        session_secret=token(),
        otp_secret=token(),
        pii_keys={"dev1": DEV_SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()},
        pii_active_key_id="dev1",
        blind_index_key=token(),
    )
    keys_dir.mkdir(parents=True, exist_ok=True)
    # Written to a temporary name and renamed so two processes starting at once never read half
    # a file; O_EXCL keeps the first writer's secrets if both race.
    tmp = keys_dir / f".dev-secrets.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(generated.model_dump(exclude_none=True), indent=2))
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink()
        return Secrets.model_validate_json(path.read_text())
    tmp.unlink()
    return generated
