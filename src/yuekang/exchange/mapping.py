"""The Guangdong <-> Macao mapping table: colours, document types and claims, as data.

Pure: the table is read from ``mappings/<version>.toml`` and validated; nothing here touches the
database or the network. Both the Guangdong service and the reference Macao system use it, and
the trust bundle ships its colour table to checkpoints. A value with no counterpart is written
``unmapped`` and answered with :class:`Unmapped` -- a conversion that would need it is refused,
never guessed.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final, Literal, cast

from yuekang.codec.macao import COLOURS, DOC_TYPES, MacaoColour
from yuekang.residents.documents import DocType

Status = Literal["green", "yellow", "red"]
UNMAPPED: Final = "unmapped"
DEFAULT_VERSION: Final = "gd-mo-2020"
_STATUSES: Final = ("green", "yellow", "red")


class Unmapped(LookupError):
    """A value the table marks ``unmapped``, or does not list."""

    def __init__(self, what: str, value: str) -> None:
        super().__init__(f"{what} {value!r} has no counterpart on the other side")
        self.what = what
        self.value = value


class MappingError(ValueError):
    """The table itself is not usable."""


@dataclass(frozen=True)
class MappingTable:
    version: str
    colours_from_macao: Mapping[str, Status]
    colours_to_macao: Mapping[str, MacaoColour]
    documents_from_macao: Mapping[str, str]
    documents_to_macao: Mapping[str, str]
    fields_macao_to_guangdong: Mapping[str, str]
    fields_guangdong_to_macao: Mapping[str, str]

    @property
    def colours(self) -> Mapping[str, Status]:
        return self.colours_from_macao

    def coded_doc_type(self, doc_type: str) -> str:
        """The Macao type a Macao code shows for the exchange type ``doc_type``."""
        return self.doc_type_to_macao(doc_type)

    def status_of(self, colour: str) -> Status:
        """The Guangdong status a Macao colour stands for."""
        status = self.colours_from_macao.get(colour)
        if status is None:
            raise Unmapped("colour", colour)
        return status

    def colour_of(self, status: str) -> MacaoColour:
        colour = self.colours_to_macao.get(status)
        if colour is None:
            raise Unmapped("status", status)
        return colour

    def doc_type_from_macao(self, tdoc: str) -> DocType:
        value = self.documents_from_macao.get(tdoc, UNMAPPED)
        if value == UNMAPPED:
            raise Unmapped("document type", tdoc)
        return DocType(value)

    def doc_type_to_macao(self, doc_type: str) -> str:
        value = self.documents_to_macao.get(doc_type, UNMAPPED)
        if value == UNMAPPED:
            raise Unmapped("document type", doc_type)
        return value


def parse_table(document: Mapping[str, object]) -> MappingTable:
    """Validate a table: every colour on both sides, only known document types and statuses."""
    problems: list[str] = []

    def section(*path: str) -> dict[str, str]:
        node: object = document
        for name in path:
            node = node.get(name) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in node.items()
        ):
            problems.append(f"{'.'.join(path)} must be a table of strings")
            return {}
        return dict(node)

    version = document.get("version")
    if not isinstance(version, str) or not version:
        problems.append("version must be a non-empty string")
    from_macao = section("colours", "from_macao")
    to_macao = section("colours", "to_macao")
    docs_from = section("documents", "from_macao")
    docs_to = section("documents", "to_macao")
    fields_in = section("fields", "macao_to_guangdong")
    fields_out = section("fields", "guangdong_to_macao")
    if set(from_macao) != set(COLOURS) or not set(from_macao.values()) <= set(_STATUSES):
        problems.append("colours.from_macao must map each Macao colour to green/yellow/red")
    if set(to_macao) != set(_STATUSES) or not set(to_macao.values()) <= set(COLOURS):
        problems.append("colours.to_macao must map each status to a Macao colour")
    doc_types = {d.value for d in DocType}
    if not set(docs_from) <= set(DOC_TYPES) or not set(docs_from.values()) <= doc_types | {
        UNMAPPED
    }:
        problems.append("documents.from_macao maps Macao types to document types or unmapped")
    if not set(docs_to) <= doc_types or not set(docs_to.values()) <= set(DOC_TYPES) | {UNMAPPED}:
        problems.append("documents.to_macao maps document types to Macao types or unmapped")
    if problems:
        raise MappingError("; ".join(problems))
    return MappingTable(
        version=cast(str, version),
        colours_from_macao=cast(dict[str, Status], from_macao),
        colours_to_macao=cast(dict[str, MacaoColour], to_macao),
        documents_from_macao=docs_from,
        documents_to_macao=docs_to,
        fields_macao_to_guangdong=fields_in,
        fields_guangdong_to_macao=fields_out,
    )


@functools.cache
def load_table(name: str = DEFAULT_VERSION) -> MappingTable:
    """A table shipped with the package, by file name (without ``.toml``)."""
    if not name.replace("-", "").isalnum():
        raise MappingError(f"no mapping table {name!r}")
    path = resources.files("yuekang.exchange").joinpath("mappings", f"{name}.toml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise MappingError(f"no mapping table {name!r}") from exc
    return parse_table(tomllib.loads(text))
