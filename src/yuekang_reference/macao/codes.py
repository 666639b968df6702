"""Macao codes (``MO1:``): a resident's declaration (three questions and the latest test) gives
one, and so does a conversion from Guangdong (``from_guangdong``); EXCHANGE.md section 3."""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.codec.keys import b64url_encode
from yuekang.codec.macao import CTI_BYTES, MacaoCodeClaims, MacaoColour, sign_macao_code
from yuekang.exchange.mapping import Unmapped
from yuekang.residents.documents import DocumentError, validate_document
from yuekang.residents.masking import mask_name
from yuekang_reference.macao import store
from yuekang_reference.macao.deps import MacaoDeps
from yuekang_reference.macao.errors import PartnerError, document_error
from yuekang_reference.macao.keys import OwnKeys
from yuekang_reference.macao.persons import Persons, Subject
from yuekang_reference.macao.schemas import DeclarationIn
from yuekang_reference.macao.store import Code, Declaration, Person

_OTHER_DOCUMENT: Final = re.compile(r"[0-9A-Z/-]{1,32}")


@dataclass(frozen=True)
class IssuedCode:
    person_id: str
    code: str
    colour: str
    expires_at: int

    def answer(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "code": self.code,
            "colour": self.colour,
            "expires_at": self.expires_at,
        }


class MacaoCodes:
    def __init__(self, deps: MacaoDeps, keys: OwnKeys, persons: Persons) -> None:
        self.deps = deps
        self.keys = keys
        self.persons = persons

    async def issue(
        self,
        session: AsyncSession,
        person: Person,
        *,
        name: str,
        colour: MacaoColour,
        nat_negative_on: str | None,
        travel_14d: bool,
        now: int,
        conversion_id: str | None = None,
        source: tuple[str, str, str] | None = None,
    ) -> Code:
        """Sign a code for ``person`` and add it to the session; ``source`` (issuer, kid,
        digest) names the Guangdong code a conversion came from."""
        exp = now + self.deps.settings.code_lifetime_seconds
        key = await self.keys.code_key(session, now, exp)
        claims = MacaoCodeClaims(
            iss=self.deps.issuer,
            cti=b64url_encode(os.urandom(CTI_BYTES)),
            iat=now,
            exp=exp,
            cor=colour,
            nome=mask_name(name),
            tdoc=person.tdoc,
            tan=nat_negative_on,
        )
        code = Code(
            cti=claims.cti,
            person_id=person.id,
            text=sign_macao_code(claims, key),
            kid=key.kid,
            colour=colour,
            iat=now,
            exp=exp,
            nat_negative_on=nat_negative_on,
            travel_14d=travel_14d,
            origin="conversion" if source else "declaration",
            conversion_id=conversion_id,
            source_issuer=source[0] if source else None,
            source_kid=source[1] if source else None,
            source_digest=source[2] if source else None,
        )
        session.add(code)
        return code

    async def declare(self, declaration: DeclarationIn) -> IssuedCode:
        today, now = self.deps.today(), self.deps.now()
        problems = []
        if not dt.date(1900, 1, 1) <= declaration.birth_date <= today:
            problems.append(("birth_date", "date", "must be a past date after 1900"))
        if declaration.nat_negative_on is not None and declaration.nat_negative_on > today:
            problems.append(("nat_negative_on", "date", "must not be in the future"))
        if problems:
            raise PartnerError(
                422,
                "validation_error",
                "; ".join(f"{f}: {m}" for f, _, m in problems),
                fields=[{"field": f, "reason": r, "message": m} for f, r, m in problems],
            )
        subject = Subject(
            name=" ".join(declaration.name.split()),
            doc_type=declaration.doc_type,
            doc_number=self._macao_document(declaration, today),
            birth_date=declaration.birth_date.isoformat(),
            phone=declaration.phone,
        )
        colour: MacaoColour = (
            "vermelho"
            if declaration.contact_14d
            else "amarelo"
            if declaration.fever or declaration.travel_14d
            else "verde"
        )
        nat = declaration.nat_negative_on.isoformat() if declaration.nat_negative_on else None

        async def work(session: AsyncSession) -> IssuedCode:
            person = await self.persons.upsert(session, subject, declaration.doc_type, now)
            session.add(
                Declaration(
                    id=str(uuid.uuid4()),
                    person_id=person.id,
                    fever=declaration.fever,
                    contact_14d=declaration.contact_14d,
                    travel_14d=declaration.travel_14d,
                    nat_negative_on=nat,
                    colour=colour,
                    created_at=now,
                )
            )
            code = await self.issue(
                session,
                person,
                name=subject.name,
                colour=colour,
                nat_negative_on=nat,
                travel_14d=declaration.travel_14d,
                now=now,
            )
            return IssuedCode(person.id, code.text, colour, code.exp)

        return await self.deps.transaction(work)

    def _macao_document(self, declaration: DeclarationIn, today: dt.date) -> str:
        try:
            doc_type = self.deps.table.doc_type_from_macao(declaration.doc_type)
        except Unmapped:
            # "Other" documents have no known format: accepted for a Macao code, never converted.
            number = "".join(declaration.doc_number.split()).upper()
            if not _OTHER_DOCUMENT.fullmatch(number):
                raise document_error(
                    DocumentError("doc_number", "format", "The document number is not well formed.")
                ) from None
            return number
        try:
            return validate_document(
                doc_type, declaration.doc_number, declaration.birth_date, today=today
            )
        except DocumentError as exc:
            raise document_error(exc) from exc

    async def current_code(self, person_id: uuid.UUID) -> IssuedCode:
        async with self.deps.sessionmaker() as session:
            code = await store.latest_code(session, str(person_id))
        if code is None:
            raise PartnerError(404, "not_found", "no code was issued to this person")
        return IssuedCode(code.person_id, code.text, code.colour, code.exp)
