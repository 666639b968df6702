from __future__ import annotations

import datetime as dt
import json

from fastapi import APIRouter, Request, Response, status

from yuekang.conditional import etag_matches
from yuekang.db import after_commit
from yuekang.deps import AdminOperator, Context, Now, SessionDep
from yuekang.keyring import service
from yuekang.keyring.schemas import KeyGenerate, KeyRead, KeyRetire
from yuekang.openapi import errors

router = APIRouter(tags=["keys"])


@router.get(
    "/.well-known/jwks.json",
    response_class=Response,
    responses={
        200: {"content": {"application/jwk-set+json": {}}},
        304: {"description": "Not modified"},
    },
)
async def jwks(request: Request, context: Context, now: Now) -> Response:
    """The public health-code keys (RFC 7517 JWK Set), with the issuer they sign for.

    Pending keys are here before they sign anything; retired keys stay until every code they
    signed has expired; compromised keys are withdrawn. Cacheable for `Cache-Control: max-age`
    seconds; revalidate with `If-None-Match`.
    """
    view = await context.keyring.view(now)
    headers = {
        "Cache-Control": f"public, max-age={context.settings.keys.jwks_max_age_seconds}",
        "ETag": view.jwks_etag,
    }
    if etag_matches(request.headers.get("if-none-match"), view.jwks_etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    body = json.dumps(view.jwks, separators=(",", ":")).encode()
    return Response(body, media_type="application/jwk-set+json", headers=headers)


admin = APIRouter(prefix="/v1/admin/keys", tags=["admin: keys"])


@admin.get("", response_model=list[KeyRead], responses=errors(401, 403))
async def list_keys(session: SessionDep, operator: AdminOperator) -> list[KeyRead]:
    """Every signing key and its state."""
    return [
        KeyRead.model_validate(r, from_attributes=True) for r in await service.list_keys(session)
    ]


@admin.post("", response_model=KeyRead, status_code=201, responses=errors(401, 403, 422))
async def generate_key(
    body: KeyGenerate,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: AdminOperator,
) -> KeyRead:
    """Generate a pending key: published at once, allowed to sign after one sync interval."""
    record = await service.generate(
        session,
        alg=body.alg or context.settings.keys.default_algorithm,
        passphrase=context.secrets.key_passphrase,
        validity=dt.timedelta(days=context.settings.keys.validity_days),
        actor=operator.actor,
        now=now,
        token=context.keyring.token,
    )
    after_commit(session, context.keyring.invalidate)
    return KeyRead.model_validate(record, from_attributes=True)


@admin.post("/{kid}/activate", response_model=KeyRead, responses=errors(401, 403, 404, 409))
async def activate_key(
    kid: str, session: SessionDep, context: Context, now: Now, operator: AdminOperator
) -> KeyRead:
    """Make a pending key the signing key (409 `key_not_ready` before one sync interval)."""
    record = await service.activate(
        session,
        kid=kid,
        publish_lead=dt.timedelta(seconds=context.settings.keys.publish_lead_seconds),
        actor=operator.actor,
        now=now,
    )
    after_commit(session, context.keyring.invalidate)
    return KeyRead.model_validate(record, from_attributes=True)


@admin.post("/{kid}/retire", response_model=KeyRead, responses=errors(401, 403, 404, 409, 422))
async def retire_key(
    kid: str,
    body: KeyRetire,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: AdminOperator,
) -> KeyRead:
    """Stop a key signing; `compromised: true` also withdraws it from the JWKS at once."""
    record = await service.retire(
        session,
        kid=kid,
        compromised=body.compromised,
        actor=operator.actor,
        now=now,
        token=context.keyring.token,
    )
    after_commit(session, context.keyring.invalidate)
    return KeyRead.model_validate(record, from_attributes=True)
