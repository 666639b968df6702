"""Partner adapters: everything the exchange knows about one partner system, registered by id.

In the manner of pyjwt's algorithm registry, shared code never names a partner: it asks the
registry for the adapter registered as ``partner_id`` (the id an operator registers the partner
under, ``yuekang exchange partner add <id> --url <url>``, and the one in its paths,
``/v1/exchange/<id>/…``). An adapter says

- which code format the partner issues (a name in :mod:`yuekang.codec.formats`, whose reader the
  verifier and the inbound conversion use),
- how the partner's words map to ours (its mapping table, by the version the rule set in force
  names under ``[exchange.<id>]``, which also gives the conversion conditions), and
- what the person is shown (the recipient's name on the consent screen).

Adapters come from the ``yuekang.partners`` entry points of the installed distributions
(pyproject.toml): a new partner is a new module and an entry point, touching no shared module.
Trust is separate: an adapter only makes a partner *possible*; nothing is accepted from it until
an operator stores its keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from yuekang.codec import formats
from yuekang.codec.plugins import Registry

ENTRY_POINTS: Final = "yuekang.partners"

Status = Literal["green", "yellow", "red"]


class PartnerTable(Protocol):
    """A partner's mapping table, as the exchange and the trust bundle use it."""

    @property
    def version(self) -> str: ...

    @property
    def colours(self) -> Mapping[str, Status]:
        """Each of the partner's colours and the status it stands for."""

    def status_of(self, colour: str) -> Status:
        """Raises :class:`yuekang.exchange.mapping.Unmapped` for a colour it does not map."""

    def coded_doc_type(self, doc_type: str) -> str:
        """How the partner's codes write the exchange document type ``doc_type`` (possibly
        coarser); raises :class:`~yuekang.exchange.mapping.Unmapped` when they cannot."""


@dataclass(frozen=True)
class PartnerAdapter:
    id: str
    """The partner's id here, e.g. ``macao``: in paths, commands, audit and verdicts."""
    recipient_name: str
    """Who the person's data goes to, as the consent screen names it."""
    code_format: str
    """The name of the partner's code format (:mod:`yuekang.codec.formats`), e.g. ``MO1``."""
    table: Callable[[str], PartnerTable]
    """The partner's mapping table by version (the rule set names the version in force)."""
    default_table: str
    """The version the trust bundle's colour table comes from when no rule set names one."""
    outbound: bool = True
    """Whether the partner takes conversions from here (Hong Kong's 2022 scheme ran one way:
    a 港康码 became a 粤康码, never back)."""

    def reader(self) -> formats.CodeFormat:
        code_format = formats.registered().get(self.code_format)
        if code_format is None:
            raise LookupError(f"partner {self.id!r} needs code format {self.code_format!r}")
        return code_format


_ADAPTERS: Final = Registry[PartnerAdapter](ENTRY_POINTS, lambda a: a.id, "partner adapter")
register = _ADAPTERS.register
registered = _ADAPTERS.registered
get = _ADAPTERS.get
