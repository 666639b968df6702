"""Hong Kong (港康碼): ``HK1:`` codes converted into Guangdong codes, one way, as the scheme ran
from 2022. Added as an adapter, a code format and a mapping table, touching no shared module."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final, cast

from yuekang.codec.hongkong import COLOURS, DOC_TYPES
from yuekang.exchange.adapters import PartnerAdapter, Status
from yuekang.exchange.mapping import UNMAPPED, MappingError, Unmapped
from yuekang.residents.documents import DocType

DEFAULT_VERSION: Final = "gd-hk-2022"


@dataclass(frozen=True)
class HongKongTable:
    version: str
    colours: Mapping[str, Status]
    coded_as: Mapping[str, str]

    def status_of(self, colour: str) -> Status:
        status = self.colours.get(colour)
        if status is None:
            raise Unmapped("colour", colour)
        return status

    def coded_doc_type(self, doc_type: str) -> str:
        value = self.coded_as.get(doc_type, UNMAPPED)
        if value == UNMAPPED:
            raise Unmapped("document type", doc_type)
        return value


@functools.cache
def load_table(name: str = DEFAULT_VERSION) -> HongKongTable:
    """A Guangdong <-> Hong Kong table shipped with the package, validated as Macao's are: every
    Hong Kong colour mapped to a status, every exchange document type to a Hong Kong one or
    ``unmapped``."""
    if not name.startswith("gd-hk-") or not name.replace("-", "").isalnum():
        raise MappingError(f"no Hong Kong mapping table {name!r}")
    path = resources.files("yuekang.exchange").joinpath("mappings", f"{name}.toml")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MappingError(f"no Hong Kong mapping table {name!r}") from exc
    colours = document.get("colours", {}).get("from_partner", {})
    coded_as = document.get("documents", {}).get("coded_as", {})
    if set(colours) != set(COLOURS) or not set(colours.values()) <= {"green", "yellow", "red"}:
        raise MappingError("colours.from_partner must map each Hong Kong colour to a status")
    if set(coded_as) != {d.value for d in DocType} or not set(coded_as.values()) <= {
        *DOC_TYPES,
        UNMAPPED,
    }:
        raise MappingError("documents.coded_as must map each document type to HKID/PERMIT/...")
    return HongKongTable(
        version=str(document.get("version", name)),
        colours=cast(dict[str, Status], colours),
        coded_as=coded_as,
    )


ADAPTER: Final = PartnerAdapter(
    id="hongkong",
    recipient_name="香港特別行政區政府 / Government of the Hong Kong SAR",
    code_format="HK1",
    table=load_table,
    default_table=DEFAULT_VERSION,
    outbound=False,
)
