"""The browser's verifier (``static/verify.js``) against the shared verdict table, in Chromium.

``tests/verifier/test_vectors.py`` holds the Python ``TrustStore`` to the same table: one table,
two implementations, the same answers -- verdicts with their identity assurance, bundle loads, and
policies validated and decided (``parsePolicy`` and ``decide`` against the pydantic models and
``rules.policy.decide``). The reason messages the page shows are the Python ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.servers import Server
from yuekang.codec.reasons import LANGUAGES, MESSAGES

TABLE: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "verdicts.json").read_text(encoding="utf-8")
)
FIELDS = list(TABLE["cases"][0]["expect"])

# Runs in the page: every case and every load of the table through verify.js.
RUN_TABLE = """
async ({ table, fields }) => {
  const v = await import("/static/app/verify.js");
  const stores = new Map();
  async function storeFor(anchor, bundles, now) {
    const key = JSON.stringify([anchor, bundles, now]);
    if (!stores.has(key)) {
      let store = await v.TrustStore.fromAnchor(table.anchors[anchor]);
      for (const name of bundles) store = await store.load(table.bundles[name], now);
      stores.set(key, store);
    }
    return stores.get(key);
  }
  const cases = {};
  for (const c of table.cases) {
    const store = await storeFor(c.anchor, c.bundles, c.now);
    const result = await v.judge(store, c.code, { now: c.now, place: c.place });
    cases[c.name] = Object.fromEntries(fields.map((name) => [name, result[name]]));
  }
  const loads = {};
  for (const load of table.loads) {
    try {
      const store = await storeFor(load.anchor, load.bundles, load.now);
      const { version } = store.bundle;
      loads[load.name] = { error: null, version, revoked: store.revokedCount };
    } catch (error) {
      if (!(error instanceof v.BundleError)) throw error;
      loads[load.name] = { error: error.kind, version: null, revoked: null };
    }
  }
  const policies = {};
  for (const row of table.policies) {
    let policy;
    try {
      policy = v.parsePolicy(row.document, row.place);
    } catch (error) {
      if (!(error instanceof v.PolicyError)) throw error;
      policies[row.name] = { error: true, decisions: null };
      continue;
    }
    const decisions = table.policy_facts.map((facts) => v.decide(policy, facts));
    policies[row.name] = { error: false, decisions };
  }
  return { cases, loads, policies };
}
"""


@pytest.fixture(scope="module")
def answers(web_server: Server, browser: Any) -> dict[str, Any]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(web_server.base + "/static/app/verify-reasons.js")
    result: dict[str, Any] = page.evaluate(RUN_TABLE, {"table": TABLE, "fields": FIELDS})
    page.close()
    assert errors == []
    return result


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_verify_js_gives_the_tables_answer(answers: dict[str, Any], case: dict[str, Any]) -> None:
    got = answers["cases"][case["name"]]
    assert got == case["expect"]


@pytest.mark.parametrize("load", TABLE["loads"], ids=[c["name"] for c in TABLE["loads"]])
def test_verify_js_loads_bundles_as_the_table_says(
    answers: dict[str, Any], load: dict[str, Any]
) -> None:
    assert answers["loads"][load["name"]] == load["expect"]


@pytest.mark.parametrize("row", TABLE["policies"], ids=[r["name"] for r in TABLE["policies"]])
def test_verify_js_validates_and_decides_policies_as_the_table_says(
    answers: dict[str, Any], row: dict[str, Any]
) -> None:
    assert answers["policies"][row["name"]] == row["expect"]


def test_the_page_shows_the_python_reason_messages(web_server: Server, browser: Any) -> None:
    page = browser.new_page()
    page.goto(web_server.base + "/static/app/verify-reasons.js")
    table = page.evaluate(
        """async () => {
            const r = await import("/static/app/verify-reasons.js");
            return { messages: r.REASON_MESSAGES, languages: r.REASON_LANGUAGES,
                     fallback: r.reasonMessage("revoked", "fr") };
        }"""
    )
    page.close()
    expected = {
        reason.value: {lang: MESSAGES[reason][lang] for lang in LANGUAGES} for reason in MESSAGES
    }
    assert table["messages"] == expected
    assert table["languages"] == list(LANGUAGES)
    assert (
        table["fallback"] == MESSAGES[next(r for r in MESSAGES if r.value == "revoked")]["zh-Hans"]
    )
