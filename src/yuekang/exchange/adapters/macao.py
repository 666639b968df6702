"""Macao (澳門健康碼): ``MO1:`` codes, the gd-mo mapping tables, both directions."""

from __future__ import annotations

from yuekang.exchange.adapters import PartnerAdapter
from yuekang.exchange.mapping import DEFAULT_VERSION, load_table

ADAPTER = PartnerAdapter(
    id="macao",
    recipient_name="澳门特别行政区卫生局 / Serviços de Saúde de Macau",
    code_format="MO1",
    table=load_table,
    default_table=DEFAULT_VERSION,
)
