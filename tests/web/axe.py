"""axe-core (npm, a dev dependency of the pages' assets) run inside a page under test.

Our pages forbid inline scripts, so the page's context must be opened with ``bypass_csp=True``
for axe to be injected; the page's own code runs as it always does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).parents[2] / "src/yuekang/web/assets/node_modules/axe-core/axe.min.js"
BLOCKING = ("serious", "critical")


def findings(page: Any, *, impacts: tuple[str, ...] = BLOCKING) -> list[dict[str, Any]]:
    """axe's violations in the page as it stands, at the given impacts, each with the rule id,
    its help text and the first few offending elements -- what a failing test should show."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [
                {"target": n["target"], "summary": n.get("failureSummary", "")}
                for n in v["nodes"][:5]
            ],
        }
        for v in result
        if v["impact"] in impacts
    ]


def assert_clean(page: Any, state: str) -> None:
    """No serious or critical axe finding in ``state`` (named in the failure)."""
    found = findings(page)
    assert not found, f"axe, {state}: {found}"
