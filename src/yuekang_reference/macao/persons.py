"""The people Macao knows: one row per document, every personal field encrypted, found by a blind
index of the document. A declaration and a transfer from Guangdong both land here."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.pii import BlindIndex, PiiCipher
from yuekang_reference.macao import store
from yuekang_reference.macao.errors import PartnerError
from yuekang_reference.macao.store import Person


@dataclass(frozen=True)
class Subject:
    name: str
    doc_type: str
    doc_number: str
    birth_date: str
    phone: str | None


class Persons:
    def __init__(self, cipher: PiiCipher, blind_index: BlindIndex) -> None:
        self.cipher = cipher
        self.blind_index = blind_index

    def _encrypt(self, person: Person, field: str, value: str) -> bytes:
        ciphertext, key_id = self.cipher.encrypt(value, context=f"persons.{field}:{person.id}")
        person.pii_key_id = key_id
        return ciphertext

    def _decrypt(self, person: Person, field: str, value: bytes) -> str:
        return self.cipher.decrypt(
            value, key_id=person.pii_key_id, context=f"persons.{field}:{person.id}"
        )

    async def upsert(self, session: AsyncSession, subject: Subject, tdoc: str, now: int) -> Person:
        """The person with this document, made or brought up to date; 409 identity_mismatch if
        the document is known with another birth date."""
        index = self.blind_index("macao.person.document", f"{tdoc}:{subject.doc_number}")
        person = await store.person_by_index(session, index)
        if person is None:
            person = Person(id=str(uuid.uuid4()), document_index=index, tdoc=tdoc, created_at=now)
            session.add(person)
        elif self._decrypt(person, "birth_date", person.birth_date) != subject.birth_date:
            raise PartnerError(
                409, "identity_mismatch", "this document is known with another birth date"
            )
        else:
            # The stored phone stays when a transfer did not send one.
            subject = dataclasses.replace(
                subject,
                phone=subject.phone
                or (self._decrypt(person, "phone", person.phone) if person.phone else None),
            )
        # Every field is encrypted again, so the row moves to the active PII key as a whole.
        person.name = self._encrypt(person, "name", subject.name)
        person.doc_number = self._encrypt(person, "doc_number", subject.doc_number)
        person.birth_date = self._encrypt(person, "birth_date", subject.birth_date)
        person.phone = self._encrypt(person, "phone", subject.phone) if subject.phone else None
        person.updated_at = now
        return person

    def subject(self, person: Person) -> Subject:
        """The person's details, decrypted."""
        return Subject(
            name=self._decrypt(person, "name", person.name),
            doc_type=person.tdoc,
            doc_number=self._decrypt(person, "doc_number", person.doc_number),
            birth_date=self._decrypt(person, "birth_date", person.birth_date),
            phone=self._decrypt(person, "phone", person.phone) if person.phone else None,
        )
