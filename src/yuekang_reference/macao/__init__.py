"""The reference Macao health-code system (issuer ``MO``, codes ``MO1:``).

Residents declare (fever, contact, travel, latest negative test) and get a Macao code; a green
code converts to a Guangdong one (``POST /v1/conversions/guangdong``) and Guangdong delivers
conversions the other way (``POST /v1/exchange/guangdong/inbound``). Run it with
``yuekang partner macao serve``; build it in tests with :func:`create_app`.
"""

from yuekang_reference.macao.app import create_app
from yuekang_reference.macao.settings import MacaoSettings

__all__ = ["MacaoSettings", "create_app"]
