"""Optional OpenTelemetry traces: spans around requests (FastAPI's own), database statements,
signing and partner calls, each carrying the request id (``yuekang.request_id``).

Off by default (``YUEKANG_TRACING__EXPORTER=none``): then nothing here imports the SDK, no
provider is made, and :func:`span` returns a shared do-nothing context manager after one
context-variable read. On, :class:`Tracing` owns a tracer provider of its own for the
application's lifetime -- not the process-global one, so that two applications in one process
(the tests) each trace to their own exporter -- and makes it current for the application's
requests and background tasks (:meth:`Tracing.active`).

Database spans come from SQLAlchemy's cursor events on the application's engines
(:meth:`Tracing.instrument`): one span per statement inside a traced piece of work (a request, a
delivery), named by its verb, with the statement's text (placeholders, never the parameters,
which hold stored codes and ciphertext).
``opentelemetry-instrumentation-sqlalchemy`` was not taken: it patches ``create_engine``
process-wide and is a process singleton, and its per-engine tracer is not public.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from yuekang import logs
from yuekang.config import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

REQUEST_ID_ATTRIBUTE = "yuekang.request_id"

_HIDDEN = ("url.path", "url.query", "url.full")
"""Span attributes that would carry a path or a query."""

_tracer: ContextVar[Tracer | None] = ContextVar("yuekang_tracer", default=None)
_NOTHING = contextlib.nullcontext()


def span(name: str, **attributes: str | int | bool) -> contextlib.AbstractContextManager[Any]:
    """A span named ``name`` around the block when tracing is on; nothing otherwise."""
    tracer = _tracer.get()
    if tracer is None:
        return _NOTHING
    return tracer.start_as_current_span(name, attributes=attributes)


class Tracing:
    """An application's tracer provider and the exporter it sends to."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("yuekang")

    @classmethod
    def build(
        cls, settings: TracingSettings, *, exporter: SpanExporter | None = None
    ) -> Tracing | None:
        """None when tracing is off. ``exporter`` replaces the configured one (tests)."""
        if settings.exporter == "none" and exporter is None:
            return None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        class RequestIds(SpanProcessor):
            """Every span started while a request is handled carries its id, so that a trace
            is found from a log line and the other way round. FastAPI's request span names the
            path and the query, which name codes and carry staff's reasons: they are replaced
            (the span keeps ``http.route``, the template)."""

            def on_start(self, span: Span, parent_context: Context | None = None) -> None:
                request = logs.request_id()
                if request is not None:
                    span.set_attribute(REQUEST_ID_ATTRIBUTE, request)
                attributes = span.attributes or {}
                for name in _HIDDEN:
                    if name in attributes:
                        span.set_attribute(name, "redacted")

        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            shutdown_on_exit=False,
        )
        provider.add_span_processor(RequestIds())
        if exporter is not None:
            # A test reads spans as soon as the request returns: no batching.
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif settings.exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
            )
        return cls(provider)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Spans made inside (and in tasks started inside) go to this provider."""
        token = _tracer.set(self.tracer)
        try:
            yield
        finally:
            _tracer.reset(token)

    def instrument(self, *engines: AsyncEngine) -> None:
        """A span per statement on each engine (each once, however often it is named)."""
        for engine in {id(e): e for e in engines}.values():
            _StatementSpans(self.tracer).listen(engine)

    def shutdown(self) -> None:
        """Send what is buffered and stop the exporter."""
        self.provider.shutdown()


class _StatementSpans:
    """SQLAlchemy cursor events as spans: started before a statement, ended after it or on its
    error. The events run in SQLAlchemy's greenlet, which shares the request's context."""

    _KEY = "yuekang_span"

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def listen(self, engine: AsyncEngine) -> None:
        from sqlalchemy import event

        sync = engine.sync_engine
        self.system = "postgresql" if sync.dialect.name == "postgresql" else sync.dialect.name
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)
        event.listen(sync, "handle_error", self._error)

    def _before(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        from opentelemetry.trace import SpanKind, get_current_span

        if not get_current_span().get_span_context().is_valid:
            # A background loop's poll (the outbox, the session list): a trace per second of
            # nothing. Its statements are traced when they belong to work that is.
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = self.tracer.start_span(
            f"db {verb}",
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": self.system, "db.query.text": statement[:2000]},
        )
        if context is not None:
            setattr(context, self._KEY, span)

    def _after(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        span = getattr(context, self._KEY, None)
        if span is not None:
            span.end()
            setattr(context, self._KEY, None)

    def _error(self, exception_context: Any) -> None:
        from opentelemetry.trace import StatusCode

        context = exception_context.execution_context
        span = getattr(context, self._KEY, None)
        if span is not None:
            error = exception_context.original_exception
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(StatusCode.ERROR)
            span.end()
            setattr(context, self._KEY, None)
