"""The reference systems (``yuekang_reference``: the Macao system, the identity registry) are test
doubles beside the package, not in it: a source checkout (``pip install -e .``) has them, the
wheel does not. What uses them -- ``yuekang partner ...`` and the built-in development registry
-- asks :func:`require_reference` first, so that their absence is one clear line rather than an
import traceback."""

from __future__ import annotations

from yuekang.config import ConfigurationError

NOT_INSTALLED = (
    "the reference systems are not installed: they come with a source checkout (pip install -e .)"
)


class ReferenceNotInstalled(ConfigurationError):
    """``yuekang_reference`` cannot be imported: an installed wheel."""


def require_reference(needed_by: str | None = None) -> None:
    """Raise :class:`ReferenceNotInstalled` unless ``yuekang_reference`` can be imported;
    ``needed_by`` names what wanted it, before :data:`NOT_INSTALLED` in the message. A reference
    module failing to import for any other reason is not hidden."""
    try:
        import yuekang_reference  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "yuekang_reference":
            raise
        message = NOT_INSTALLED if needed_by is None else f"{needed_by}, and {NOT_INSTALLED}"
        raise ReferenceNotInstalled(message) from None
