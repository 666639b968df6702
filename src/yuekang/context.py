"""The objects a running service holds for its lifetime: engine, key ring, ciphers, senders,
caches. Built by ``create_app``'s lifespan or by a CLI command; nothing is built at import."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from sqlalchemy import Executable, Row
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from yuekang import logs
from yuekang.auth.sessions import EndedSessions
from yuekang.auth.sms import HttpSmsSender, LoggingSmsSender, SmsSender
from yuekang.checkpoints.online import OnlineScans
from yuekang.clock import Clock, SystemClock
from yuekang.config import ConfigurationError, ResolvedSettings, Secrets, Settings
from yuekang.db import (
    Timeouts,
    create_engine,
    create_sessionmaker,
    database_unavailable,
    transaction,
)
from yuekang.exchange.common import ExchangeDeps
from yuekang.exchange.keys import ExchangeKeyCache
from yuekang.exchange.outbox import Outbox
from yuekang.health_codes.batch import Issuance
from yuekang.health_codes.service import ImageCache
from yuekang.health_status.rulebook import RuleBook
from yuekang.keyring.pkcs11 import open_token
from yuekang.keyring.ring import KeyRing
from yuekang.notices import (
    CHECKPOINT_KEY_CHANNEL,
    STATUS_CHANNEL,
    Notices,
    Watched,
    as_hex,
    as_uuid,
    kept_here,
)
from yuekang.pii import BlindIndex, PiiCipher
from yuekang.reference import require_reference
from yuekang.replicas import NeedsPrimary, ReadOnlySession, Replicas
from yuekang.residents.binding import ProofingDeps
from yuekang.residents.proofing import HttpProofing, IdentityProofing, Managed
from yuekang.trust.service import BundleCache

log = logging.getLogger("yuekang")

T = TypeVar("T")


@dataclass
class AppContext:
    settings: Settings
    secrets: Secrets
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock
    pii: PiiCipher
    blind_index: BlindIndex
    keyring: KeyRing
    sms: SmsSender
    images: ImageCache
    http: httpx.AsyncClient
    read_engine: AsyncEngine
    rulebook: RuleBook
    read_sessionmaker: async_sessionmaker[AsyncSession]
    """Sessions that never take SQLite's write lock (on PostgreSQL, the same engine)."""
    autocommit_engine: AsyncEngine
    """The primary's reads in autocommit (no BEGIN, no COMMIT); on SQLite, the read engine."""
    reads: async_sessionmaker[AsyncSession]
    """Read-only sessions on the primary (``replicas.ReadOnlySession``) for
    :meth:`bounded_read`: on PostgreSQL without a transaction, so a read is one round trip."""
    exchange_keys: ExchangeKeyCache
    refresh_engine: AsyncEngine
    """The key ring's and the rule book's own connections (on SQLite, the read engine)."""
    outbox: Outbox
    online_scans: OnlineScans
    issuance: Issuance
    bundles: BundleCache
    proofing: IdentityProofing
    """The identity registry (residents/proofing.py)."""
    ended_sessions: EndedSessions
    """Resident sessions ended while their access tokens may live (auth/sessions.py)."""
    replicas: Replicas | None = None
    """The streaming replicas of ``database.replica_urls`` (replicas.py); None without any."""
    statuses: Watched[uuid.UUID, Row[Any]] = field(default_factory=lambda: Watched(0))
    """Residents' status rows (``health_status.service.STATUS_ROW``), kept until changed."""
    checkpoint_keys: Watched[str, bytes] = field(default_factory=lambda: Watched(0))
    """Digests of checkpoint keys found good, by their checkpoint's id in hex, kept until the
    checkpoint changes (``trust.endpoints.kept_key``)."""
    notices: Notices | None = None
    """What tells ``statuses`` and ``checkpoint_keys`` of changes (notices.py); None where
    nothing is kept."""
    _started: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """What :meth:`close` must stop besides the engines (the built-in registry's store)."""

    @classmethod
    def build(
        cls,
        resolved: ResolvedSettings,
        *,
        clock: Clock | None = None,
        sms: SmsSender | None = None,
        proofing: IdentityProofing | None = None,
        without_token: Callable[[str], None] | None = None,
    ) -> AppContext:
        """The context for ``resolved``. A PKCS#11 token that cannot be used stops it in one
        line, unless ``without_token`` is given: then that is told why, and the context has no
        token (for what must work when the token is lost: withdrawing its keys)."""
        settings, secrets = resolved.settings, resolved.secrets
        # First: a token that cannot be used stops the start in one line, before anything opens.
        try:
            token = open_token(resolved)
        except ConfigurationError as exc:
            if without_token is None:
                raise
            without_token(str(exc))
            token = None
        limits = Timeouts(
            connect=settings.database.connect_timeout_seconds,
            statement=settings.database.statement_timeout_seconds,
            pool=settings.database.pool_timeout_seconds,
        )
        # Before the other engines: replicas it refuses (of SQLite) leave nothing open.
        replicas = (
            Replicas.build(
                settings.database.replica_urls,
                primary_url=settings.database_url,
                max_lag=settings.database.replica_max_lag_seconds,
                timeouts=limits,
                pooler=settings.database.pooler,
                pool_size=settings.database.pool_size,
                max_overflow=settings.database.pool_overflow,
            )
            if settings.database.replica_urls
            else None
        )
        # Kept open, with no overflow by default: an overflow connection is closed when given
        # back, and under more requests at once than the pool holds the status page opened one
        # PostgreSQL backend per 20 reads, three quarters of its database CPU
        # (loadtests/bench_capacity.py, PERFORMANCE.md).
        engine = create_engine(
            settings.database_url,
            pool_size=settings.database.pool_size,
            max_overflow=settings.database.pool_overflow,
            timeouts=limits,
            pooler=settings.database.pooler,
        )
        sessionmaker = create_sessionmaker(engine)
        read_engine = (
            create_engine(settings.database_url, read_only=True)
            if engine.dialect.name == "sqlite"
            else engine
        )
        autocommit_engine = _autocommit(read_engine)
        # The key ring and the rule book refresh from inside requests that may already hold a
        # connection (issuance locks the status row, then asks for a key). Sharing the request
        # pool, a full pool would wait for itself until its timeout; their own two connections
        # cannot be taken by requests.
        refresh_engine = (
            read_engine
            if engine.dialect.name == "sqlite"
            else create_engine(
                settings.database_url,
                pool_size=1,
                pre_ping=True,
                timeouts=limits,
                pooler=settings.database.pooler,
            )
        )
        # Calls to partners, the identity registry and the SMS gateway name the request that
        # made them (logs.py).
        http = httpx.AsyncClient(event_hooks={"request": [logs.send_request_id]})
        if sms is None:
            if settings.sms.backend == "http":
                assert settings.sms.http_url is not None
                assert settings.sms.http_token is not None
                sms = HttpSmsSender(http, settings.sms.http_url, settings.sms.http_token)
            else:
                sms = LoggingSmsSender()
        context = cls(
            settings=settings,
            secrets=secrets,
            engine=engine,
            sessionmaker=sessionmaker,
            clock=clock or SystemClock(),
            pii=PiiCipher(secrets.pii_key_bytes(), secrets.pii_active_key_id),
            blind_index=BlindIndex(secrets.blind_index_key.encode()),
            keyring=KeyRing(
                sessionmaker=create_sessionmaker(refresh_engine),
                issuer=settings.issuer,
                passphrase=secrets.key_passphrase,
                max_code_lifetime=dt.timedelta(seconds=settings.codes.max_lifetime_seconds),
                refresh_seconds=settings.keys.ring_refresh_seconds,
                leeway=settings.codes.clock_leeway_seconds,
                token=token,
            ),
            sms=sms,
            images=ImageCache(settings.codes.image_cache_entries),
            http=http,
            read_engine=read_engine,
            refresh_engine=refresh_engine,
            rulebook=RuleBook(
                sessionmaker=create_sessionmaker(refresh_engine),
                refresh_seconds=settings.rules.refresh_seconds,
            ),
            read_sessionmaker=create_sessionmaker(read_engine),
            autocommit_engine=autocommit_engine,
            reads=async_sessionmaker(
                autocommit_engine,
                expire_on_commit=False,
                autoflush=False,
                sync_session_class=ReadOnlySession,
            ),
            exchange_keys=ExchangeKeyCache(token),
            bundles=BundleCache(settings.trust.serve_cached_seconds),
            online_scans=OnlineScans(engine),
            proofing=proofing or _proofing(resolved, http),
            ended_sessions=EndedSessions(
                create_sessionmaker(refresh_engine),
                poll_seconds=settings.session.revocation_poll_seconds,
                horizon_seconds=settings.session.ttl_seconds + settings.codes.clock_leeway_seconds,
            ),
            replicas=replicas,
            issuance=None,  # type: ignore[arg-type]  # set below: it needs the key ring
            outbox=None,  # type: ignore[arg-type]  # set below: it needs the built context
        )
        context.issuance = Issuance(
            engine, keyring=context.keyring, rulebook=context.rulebook, settings=settings
        )
        context.outbox = context.outbox_over(http)
        kept = settings.database.kept_rows
        # LISTEN needs a session of its own: not through a pooler in transaction mode, unless
        # the primary's own address is given for it.
        listen_url = settings.database.listen_url or (
            settings.database_url if settings.database.pooler == "none" else None
        )
        if engine.dialect.name == "postgresql" and listen_url is not None and kept:
            context.statuses = Watched(kept)
            context.checkpoint_keys = Watched(kept)
            kept_here("health_status", context.statuses)
            kept_here("checkpoints", context.checkpoint_keys)
            context.notices = Notices(
                # Its own two connections to the primary (listening, proving it), never ones a
                # request could take.
                create_engine(listen_url, pool_size=2, max_overflow=0, timeouts=limits),
                {
                    STATUS_CHANNEL: (context.statuses, as_uuid),
                    CHECKPOINT_KEY_CHANNEL: (context.checkpoint_keys, as_hex),
                },
                check_seconds=settings.database.notice_check_seconds,
            )
        return context

    def outbox_over(self, http: httpx.AsyncClient) -> Outbox:
        """The outbox of this context, delivering through ``http`` (a test gives its own)."""
        return Outbox(
            sessionmaker=self.sessionmaker,
            http=http,
            deps=self.exchange_deps(),
            settings=self.settings.exchange,
            rulebook=self.rulebook,
            clock=self.clock,
        )

    def exchange_deps(self) -> ExchangeDeps:
        return ExchangeDeps(
            issuer=self.settings.issuer,
            passphrase=self.secrets.key_passphrase,
            key_cache=self.exchange_keys,
            pii=self.pii,
            blind_index=self.blind_index,
            keyring=self.keyring,
            code_lifetime=dt.timedelta(seconds=self.settings.codes.lifetime_seconds),
            leeway=self.settings.codes.clock_leeway_seconds,
            sms=self.sms,
        )

    def proofing_deps(self) -> ProofingDeps:
        return ProofingDeps(
            sessionmaker=self.sessionmaker,
            proofing=self.proofing,
            pii=self.pii,
            blind_index=self.blind_index,
            sms=self.sms,
            settings=self.settings.proofing,
        )

    async def bounded_read(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        primary: AsyncSession | None = None,
        seen: float | None = None,
    ) -> T:
        """``work``, a read that tolerates the replicas' lag bound: on a replica within it that
        holds everything committed before ``seen`` (primary time), else on the primary -- in
        ``primary`` (the request's session), or read-only without a transaction and, if it
        turns out to write (a lapsed status decided again), again in a transaction of its own,
        committed. Without replicas, the primary's."""
        if self.replicas is not None:
            try:
                return await self.replicas.read(work, seen=seen)
            except NeedsPrimary:
                pass
        if primary is not None:
            return await work(primary)
        # BEGIN and COMMIT were two of a status read's three round trips (py-spy: a fifth of
        # its time). What the read raises here is the primary's answer, given as it is.
        try:
            async with self.reads() as session:
                return await work(session)
        except NeedsPrimary:
            pass
        async with transaction(self.sessionmaker) as session:
            return await work(session)

    async def read_row(
        self,
        statement: Executable,
        params: Mapping[str, Any],
        *,
        seen: float | None = None,
        absent_is_answer: bool = False,
        replica: bool = True,
    ) -> Row[Any] | None:
        """The one row ``statement`` reads (or None), where :meth:`bounded_read` would read it,
        without a session: for the page every phone polls, where opening and closing a session
        cost a fifth of the request (py-spy). A replica that lacks the row asks the primary,
        unless ``absent_is_answer``: then its "none" is the answer (it holds everything the
        reader wrote, ``seen``, and is within the lag bound). ``replica=False``: the primary's
        row, for what must hold at once (a checkpoint key disabled)."""
        if self.replicas is not None and replica:
            try:
                return await self.replicas.read_row(
                    statement, params, seen=seen, absent_is_answer=absent_is_answer
                )
            except NeedsPrimary:
                pass
        async with self.autocommit_engine.connect() as connection:
            return (await connection.execute(statement, params)).one_or_none()

    async def start(self) -> None:
        """What needs the event loop before the first request: the built-in development
        registry's tables and sample people, and the key ring's first snapshot -- so that the
        published keys are served even if the database goes away before anyone asked."""
        if isinstance(self.proofing, Managed):
            await self.proofing.start()
            self._started.append(self.proofing.close)
        if self.replicas is not None:
            await self.replicas.start()
        if self.notices is not None:
            self.notices.start()
        try:
            await self.keyring.view(self.clock.now())
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            log.warning("started without the database; keys are loaded once it answers")

    async def close(self) -> None:
        for stop in self._started:
            await stop()
        await self.online_scans.close()
        await self.issuance.close()
        await self.http.aclose()
        if self.keyring.token is not None:
            self.keyring.token.close()
        if self.replicas is not None:
            await self.replicas.close()
        if self.notices is not None:
            await self.notices.close()
        await self.engine.dispose()
        for other in {self.read_engine, self.refresh_engine} - {self.engine}:
            await other.dispose()


def _autocommit(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` in autocommit on PostgreSQL, which sends no BEGIN (each statement reads its
    own snapshot, as it does in a READ COMMITTED transaction). SQLite's read engine begins a
    deferred transaction, which costs no round trip."""
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _proofing(resolved: ResolvedSettings, http: httpx.AsyncClient) -> IdentityProofing:
    settings = resolved.settings.proofing
    if settings.backend == "http":
        assert settings.url is not None
        return HttpProofing(
            client=http,
            url=settings.url,
            client_id=settings.client_id,
            secret=resolved.proofing_secret(),
            timeout=settings.timeout_seconds,
            attempts=settings.attempts,
            budget=settings.budget_seconds,
        )
    # Development only (production refuses it, config.resolve): the reference registry, run
    # in-process on its own database, seeded with the documented sample people. It comes with a
    # source checkout, not with the wheel.
    require_reference(
        "proofing.backend=builtin is the reference identity registry (set "
        "YUEKANG_PROOFING__BACKEND=http and YUEKANG_PROOFING__URL to use another)"
    )
    from yuekang_reference.registry import BuiltinProofing, open_store

    return BuiltinProofing(open_store(settings.builtin_dir))
