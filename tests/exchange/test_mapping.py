"""Golden tests of the Guangdong <-> Macao mapping table (docs/EXCHANGE.md, section 6).

Every entry of ``gd-mo-2020.toml`` is pinned here: a change to the table is a new version, and
this file says what both sides have agreed to until then.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from typing import Any

import pytest

from yuekang.exchange.mapping import (
    DEFAULT_VERSION,
    UNMAPPED,
    MappingError,
    Unmapped,
    load_table,
    parse_table,
)
from yuekang.residents.documents import DocType

COLOURS = [("verde", "green"), ("amarelo", "yellow"), ("vermelho", "red")]
MAPPED_DOCUMENTS = [("BIR", "macao_id"), ("PTM", "hk_macao_permit"), ("PASS", "passport")]
OTHER_DOCUMENTS = ["prc_id", "residence_permit", "hkid"]
"""Guangdong's document types Macao has no card of its own for: they travel as ``OUTRO``."""


def raw_table() -> dict[str, Any]:
    text = (
        resources.files("yuekang.exchange")
        .joinpath("mappings", f"{DEFAULT_VERSION}.toml")
        .read_text(encoding="utf-8")
    )
    return tomllib.loads(text)


def test_the_default_table_is_the_2020_one():
    table = load_table()
    assert DEFAULT_VERSION == "gd-mo-2020"
    assert table.version == "gd-mo-2020.1"
    assert load_table("gd-mo-2020") == table


@pytest.mark.parametrize(("colour", "status"), COLOURS)
def test_each_macao_colour_is_one_guangdong_status(colour: str, status: str):
    table = load_table()
    assert table.status_of(colour) == status
    assert table.colour_of(status) == colour


def test_the_colour_tables_are_exactly_three_each_way():
    table = load_table()
    assert dict(table.colours_from_macao) == dict(COLOURS)
    assert dict(table.colours_to_macao) == {status: colour for colour, status in COLOURS}


@pytest.mark.parametrize("colour", ["green", "VERDE", "azul", ""])
def test_a_colour_macao_does_not_use_is_unmapped(colour: str):
    with pytest.raises(Unmapped) as caught:
        load_table().status_of(colour)
    assert caught.value.what == "colour"
    assert caught.value.value == colour


@pytest.mark.parametrize("status", ["verde", "grey", ""])
def test_a_status_guangdong_does_not_use_is_unmapped(status: str):
    with pytest.raises(Unmapped):
        load_table().colour_of(status)


@pytest.mark.parametrize(("tdoc", "doc_type"), MAPPED_DOCUMENTS)
def test_each_macao_document_type_maps_both_ways(tdoc: str, doc_type: str):
    table = load_table()
    assert table.doc_type_from_macao(tdoc) is DocType(doc_type)
    assert table.doc_type_to_macao(doc_type) == tdoc


def test_outro_has_no_guangdong_counterpart():
    table = load_table()
    assert table.documents_from_macao["OUTRO"] == UNMAPPED
    with pytest.raises(Unmapped) as caught:
        table.doc_type_from_macao("OUTRO")
    assert caught.value.what == "document type"
    assert caught.value.value == "OUTRO"


@pytest.mark.parametrize("doc_type", OTHER_DOCUMENTS)
def test_guangdong_documents_macao_has_no_card_for_become_outro(doc_type: str):
    assert load_table().doc_type_to_macao(doc_type) == "OUTRO"


def test_every_document_type_of_either_side_is_listed():
    table = load_table()
    assert dict(table.documents_from_macao) == {
        **dict(MAPPED_DOCUMENTS),
        "OUTRO": UNMAPPED,
    }
    assert dict(table.documents_to_macao) == {
        **{doc_type: tdoc for tdoc, doc_type in MAPPED_DOCUMENTS},
        **dict.fromkeys(OTHER_DOCUMENTS, "OUTRO"),
    }
    assert set(table.documents_to_macao) == {d.value for d in DocType}


@pytest.mark.parametrize("tdoc", ["bir", "XYZ", ""])
def test_a_document_type_the_table_does_not_list_is_unmapped(tdoc: str):
    with pytest.raises(Unmapped):
        load_table().doc_type_from_macao(tdoc)
    with pytest.raises(Unmapped):
        load_table().doc_type_to_macao(tdoc)


def test_the_claim_fields_are_pinned():
    table = load_table()
    assert dict(table.fields_macao_to_guangdong) == {
        "cor": "st",
        "nome": "nm",
        "tdoc": UNMAPPED,
        "tan": "nt:derived",
        "declaration": UNMAPPED,
    }
    assert dict(table.fields_guangdong_to_macao) == {
        "st": "cor",
        "nm": "nome",
        "nt": "tan:derived",
        "vx": UNMAPPED,
    }


def test_the_shipped_file_parses_to_the_loaded_table():
    assert parse_table(raw_table()) == load_table()


# --- refusing broken tables --------------------------------------------------------------------


def broken(edit: Any) -> dict[str, Any]:
    table = copy.deepcopy(raw_table())
    edit(table)
    return table


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda t: t["colours"]["from_macao"].pop("amarelo"), "colours.from_macao"),
        (lambda t: t["colours"]["to_macao"].pop("red"), "colours.to_macao"),
        (lambda t: t["colours"]["from_macao"].update(verde="blue"), "colours.from_macao"),
        (lambda t: t["colours"]["to_macao"].update(grey="verde"), "colours.to_macao"),
        (lambda t: t["colours"]["to_macao"].update(green="azul"), "colours.to_macao"),
        (lambda t: t["documents"]["from_macao"].update(BIR="identity_card"), "documents.from"),
        (lambda t: t["documents"]["from_macao"].update(XYZ="passport"), "documents.from"),
        (lambda t: t["documents"]["to_macao"].update(national_id="OUTRO"), "documents.to"),
        (lambda t: t["documents"]["to_macao"].update(passport="PASSAPORTE"), "documents.to"),
        (lambda t: t.pop("version"), "version"),
        (lambda t: t.update(version=""), "version"),
        (lambda t: t["fields"].pop("guangdong_to_macao"), "fields.guangdong_to_macao"),
        (lambda t: t["fields"]["macao_to_guangdong"].update(cor=1), "fields.macao_to_guangdong"),
    ],
    ids=[
        "missing-colour",
        "missing-status",
        "unknown-status",
        "extra-status",
        "unknown-macao-colour",
        "unknown-document-type",
        "unknown-macao-document",
        "unknown-document-type-outbound",
        "unknown-macao-document-outbound",
        "no-version",
        "empty-version",
        "missing-section",
        "not-a-string",
    ],
)
def test_a_broken_table_is_refused(edit: Any, complaint: str):
    with pytest.raises(MappingError, match=complaint):
        parse_table(broken(edit))


def test_every_problem_of_a_table_is_named_at_once():
    def edit(table: dict[str, Any]) -> None:
        table["colours"]["from_macao"].pop("verde")
        table["documents"]["from_macao"]["BIR"] = "nope"

    with pytest.raises(MappingError) as caught:
        parse_table(broken(edit))
    assert "colours.from_macao" in str(caught.value)
    assert "documents.from_macao" in str(caught.value)


@pytest.mark.parametrize("name", ["nope", "gd-mo-1999", "../mapping", "gd mo", ""])
def test_a_table_that_is_not_shipped_is_refused(name: str):
    with pytest.raises(MappingError, match="no mapping table"):
        load_table(name)
