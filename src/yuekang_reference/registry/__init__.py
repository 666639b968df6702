"""The reference identity registry: a test double of the authority's identity service.

It holds a population register and the carriers' real-name subscriber registrations in its own
database, and answers the ``YKP1`` checks of :mod:`yuekang.codec.proofing` -- is there a person
with this document, name and birth date, and is this phone registered to them -- with match / no
match. It never returns a record, and keeps no personal data about the checks it answers. Run it
with ``yuekang partner registry serve``; ``yuekang serve`` uses it in-process in development
(:class:`yuekang_reference.registry.builtin.BuiltinProofing`); build it in tests with
:func:`create_app`.
"""

from yuekang_reference.registry.app import create_app
from yuekang_reference.registry.builtin import BuiltinProofing
from yuekang_reference.registry.settings import RegistrySettings
from yuekang_reference.registry.store import RegistryStore, open_store

__all__ = ["BuiltinProofing", "RegistrySettings", "RegistryStore", "create_app", "open_store"]
