"""The real mix, for locust: residents refreshing codes, checkpoints scanning online, bundle
syncs, feed batches, and (when a partner is registered) conversions to Macao.

    .venv/bin/pip install locust
    YK_CHECKPOINT_KEY=... YK_FEED_KEY=... .venv/bin/locust -f loadtests/locustfile.py \\
        --host http://127.0.0.1:8000 --headless -u 200 -r 20 -t 10m

Settings come from the environment, so one file serves a laptop and a soak:

- ``YK_CHECKPOINT_KEY``: a checkpoint key (``yuekang checkpoints create``); without it no
  checkpoint users run.
- ``YK_FEED_KEY``: a feed key for ``nat-results`` (``yuekang feeds clients create``); without it
  no feed users run.
- ``YK_MACAO=1``: residents also ask for Macao codes (a partner must be registered).
- ``YK_REFRESH_SECONDS`` (default 60): how often a resident's page asks for a new code. The
  real app renews about hourly; a shorter interval packs more load into a test.
- ``YK_FEED_ROWS`` (default 500): rows per feed batch.
- ``YK_PEOPLE``: a file of people the server's identity registry knows (JSON lines with
  ``phone``, ``doc_number``, ``birth_date``, ``name``), one per resident user; ``loadtests.soak``
  writes it and enrols them in the development registry. Without it residents bind made-up
  documents, which proofing refuses: they then see no code.

Locust peaks near 2,700 requests per second on this machine (TOOLING.md), so it models the mix;
`loadtests.bench` with wrk measures the peak.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import uuid
from collections import deque
from collections.abc import Iterator

from locust import HttpUser, between, task  # type: ignore[import-not-found]

from yuekang.residents.documents import mod11_2_check

REGIONS = ("440104", "440304", "440402", "440106")
CODES: deque[str] = deque(maxlen=2000)
"""Codes residents were shown lately: what checkpoints get to scan."""


def _people() -> Iterator[dict[str, str]]:
    path = os.environ.get("YK_PEOPLE")
    if path:
        with open(path, encoding="utf-8") as lines:
            yield from (json.loads(line) for line in lines)


PEOPLE = _people()
"""Residents take the next person here as they start; when it runs out, made-up ones."""


def prc_id(rng: random.Random) -> tuple[str, dt.date]:
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 25000))
    body = rng.choice(REGIONS) + birth.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
    return body + mod11_2_check(body), birth


class Resident(HttpUser):
    """Signs in once, binds a document, then keeps the code screen open."""

    weight = 10
    wait_time = between(
        float(os.environ.get("YK_REFRESH_SECONDS", "60")) * 0.8,
        float(os.environ.get("YK_REFRESH_SECONDS", "60")) * 1.2,
    )

    def on_start(self) -> None:
        rng = random.Random()
        person = next(PEOPLE, None)
        if person is None:
            number, birth = prc_id(rng)
            person = {"phone": "+86138" + f"{rng.randrange(10**8):08d}", "doc_number": number,
                      "birth_date": birth.isoformat(), "name": "张小三"}  # fmt: skip
        self.phone = person["phone"]
        sent = self.client.post("/v1/auth/otp", json={"phone": self.phone}).json()
        token = self.client.post(
            "/v1/auth/token",
            json={
                "phone": self.phone,
                "challenge_id": sent.get("challenge_id"),
                "code": sent.get("dev_code", ""),
            },
        ).json()
        self.auth = {"Authorization": f"Bearer {token['access_token']}"}
        self.doc = person["doc_number"]
        self.client.put(
            "/v1/me/identity",
            headers=self.auth,
            json={"name": person["name"], "doc_type": "prc_id", "doc_number": self.doc,
                  "birth_date": person["birth_date"]},
        )  # fmt: skip

    @task(10)
    def show_code(self) -> None:
        code = self.client.post("/v1/codes", headers=self.auth, name="/v1/codes").json()
        CODES.append(code["qr_text"])
        self.client.get(code["png_url"], headers=self.auth, name="/v1/codes/{id}.png")
        self.client.get("/v1/me/status", headers=self.auth)

    @task(1)
    def convert_to_macao(self) -> None:
        if os.environ.get("YK_MACAO") != "1":
            return
        screen = self.client.get("/v1/exchange/macao/consent").json()
        if not screen.get("available"):
            return
        self.client.post(
            "/v1/exchange/macao/outbound",
            headers={**self.auth, "Idempotency-Key": uuid.uuid4().hex},
            json={"consent": {"recipient": screen["recipient"], "fields": screen["fields"],
                              "accepted": True, "text_version": screen["text_version"]}},
            name="/v1/exchange/macao/outbound",
        )  # fmt: skip


class Checkpoint(HttpUser):
    """A gate scanning online, and syncing its bundle now and then."""

    weight = 5 if os.environ.get("YK_CHECKPOINT_KEY") else 0
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {os.environ.get('YK_CHECKPOINT_KEY', '')}"}
        self.etag: str | None = None

    @task(20)
    def scan(self) -> None:
        if not CODES:
            return
        self.client.post("/v1/verify", headers=self.auth, json={"qr_text": random.choice(CODES)})

    @task(1)
    def sync(self) -> None:
        headers = dict(self.auth)
        if self.etag:
            headers["If-None-Match"] = self.etag
        with self.client.get("/v1/trust-bundle", headers=headers, catch_response=True) as answer:
            if answer.status_code in (200, 304):
                self.etag = answer.headers.get("ETag", self.etag)
                answer.success()


class Authority(HttpUser):
    """A lab pushing NAT results."""

    weight = 1 if os.environ.get("YK_FEED_KEY") else 0
    wait_time = between(20, 40)

    @task
    def push(self) -> None:
        rng = random.Random()
        rows = int(os.environ.get("YK_FEED_ROWS", "500"))
        sampled = dt.datetime.now(dt.UTC) - dt.timedelta(hours=rng.randrange(1, 48))
        body = "".join(
            json.dumps({"doc_type": "prc_id", "doc_number": prc_id(rng)[0],
                        "sampled_at": sampled.isoformat(), "result": "negative",
                        "lab": "广州金域医学检验中心"}, ensure_ascii=False) + "\n"
            for _ in range(rows)
        ).encode()  # fmt: skip
        self.client.post(
            "/v1/feeds/nat-results",
            data=body,
            headers={"Authorization": f"Bearer {os.environ['YK_FEED_KEY']}",
                     "Content-Type": "application/x-ndjson",
                     "Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
