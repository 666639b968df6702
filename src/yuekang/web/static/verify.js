// The offline verifier of the browser scanner: a port of yuekang.verifier.TrustStore and
// policy_decision (src/yuekang/verifier/, codec/healthcode.py, codec/bundle.py, rules/policy.py).
//
// A pure module: no DOM, no storage, no network. It needs only WebCrypto (crypto.subtle, so a
// secure context), which checks every signature -- ES256 takes the JWS r||s form as it is, and
// Ed25519 is native in current browsers. Checks run in the Python order and answer the Python
// reason codes, so the page, the CLI and POST /v1/verify always agree; the shared table
// tests/vectors/verdicts.json holds both implementations to that.
//
// Usage:
//   const store = await (await TrustStore.fromAnchor(anchorJwk)).load(bundleText, now);
//   const result = await judge(store, qrText, { now, place: "border" });
//   // result.verdict: valid | invalid | cannot_verify; result.decision: allow | deny |
//   // manual_check | cannot_verify; result.reasons: reason codes (verify-reasons.js)

import { FORMATS } from "/static/app/partner-formats.js";

export const DEFAULT_LEEWAY = 120; // seconds either side: handheld scanners drift
export const PLACE_KINDS = ["venue", "transport", "border"];

const PREFIX = "YK1:";
const MAX_INPUT_CHARS = 4096;
const MAX_KID_CHARS = 64;
const MAX_BUNDLE_CHARS = 16 * 1024 * 1024;
const CODE_ID_BYTES = 16;
const SIGNATURE_BYTES = 64;
const ALGORITHMS = new Set(["ES256", "EdDSA"]);
const STATUSES = ["green", "yellow", "red"];
// codec.healthcode.ASSURANCE_LEVELS: what each value of the `ia` claim means (docs/IDENTITY.md).
// A value not listed here (a later level, 0) is read as unknown, like a code without the claim.
const ASSURANCE_LEVELS = new Map([
  [1, "proofed"],
  [2, "counter"],
  [3, "dependant"],
  [4, "partner"],
]);
export const ASSURANCES = Object.freeze([...ASSURANCE_LEVELS.values()]);
const KEY_STATES = ["active", "retired", "pending"];
const BUNDLE_TYP = "yk.bundle.v1";
const HEADER_TYP = "yk-bundle+jws";
// Python's JSON parser gives up (RecursionError, so "malformed") near 1,000 levels of nesting;
// refusing deeper documents here keeps a hostile header from getting another verdict.
const MAX_JSON_DEPTH = 980;
// Python's \d is any Unicode decimal digit, hence \p{Nd}.
const VERSION_PREFIX = /^[A-Z]{2,3}\p{Nd}{1,2}:/u;
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

// ---------------------------------------------------------------------------------------------
// Errors

/** A code that must not be accepted; `reason` is its reason code. */
class InvalidCode extends Error {
  constructor(reason, detail) {
    super(detail);
    this.reason = reason;
  }
}

/** A bundle that must not be used. `kind`: bad_signature, malformed, rollback, delta_mismatch,
 * other_issuer (the Python BadBundleSignature, MalformedBundle, BundleRollback, ...), and
 * unsupported_browser, when this browser's WebCrypto lacks an algorithm the bundle uses
 * (Ed25519 needs Chrome 137, Firefox 129 or Safari 17). */
export class BundleError extends Error {
  constructor(kind, detail) {
    super(detail);
    this.name = "BundleError";
    this.kind = kind;
  }
}

/** The bundle's policies do not validate (Python's RuleSetError). */
export class PolicyError extends Error {
  constructor(detail) {
    super(detail);
    this.name = "PolicyError";
  }
}

// ---------------------------------------------------------------------------------------------
// Encodings, held to Python's strictness

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

/** Strict unpadded base64url: one spelling per byte string, as codec.keys.b64url_decode (no
 * padding, no +/, no stray characters, zero trailing bits). Throws on anything else. */
export function b64urlDecode(text) {
  if (typeof text !== "string" || text.length % 4 === 1) throw new Error("not base64url");
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const digit = code < 128 ? DECODE[code] : -1;
    if (digit < 0) throw new Error("not base64url");
    value = (value << 6) | digit;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
  }
  if (value & ((1 << bits) - 1)) throw new Error("not canonical base64url");
  return out;
}

export function b64urlEncode(bytes) {
  let text = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    text += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  if (i + 1 === bytes.length) {
    const n = bytes[i] << 16;
    text += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
  } else if (i + 2 === bytes.length) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    text += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return text;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const ASCII = new TextEncoder();

/** A number written with a fraction or an exponent: Python reads it as a float, which no
 * integer field accepts, even when it is whole (1.0). */
class JsonFloat {
  constructor(value) {
    this.value = value;
  }
}

const INTEGER_LITERAL = /^-?(0|[1-9][0-9]*)$/;

function jsonDepth(text) {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) deepest = Math.max(deepest, ++depth);
    else if (c === 93 || c === 125) depth--;
  }
  return deepest;
}

/** JSON.parse that keeps Python's distinction between 1 and 1.0 (the reviver's source text,
 * where the browser gives it) and refuses what Python's parser cannot nest. */
function parseJson(text) {
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw new SyntaxError("nested too deeply");
  return JSON.parse(text, (_key, value, context) => {
    if (typeof value === "number" && context?.source && !INTEGER_LITERAL.test(context.source)) {
      return new JsonFloat(value);
    }
    return value;
  });
}

/** base64url -> UTF-8 -> JSON object, or throws. */
function jsonObject(segment) {
  const value = parseJson(UTF8.decode(b64urlDecode(segment)));
  if (!isObject(value)) throw new TypeError("not a JSON object");
  return value;
}

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof JsonFloat);
const own = (object, name) => (Object.hasOwn(object, name) ? object[name] : undefined);
/** Python's dict.get: a missing member and a JSON null are both None. */
const get = (object, name) => own(object, name) ?? null;
/** Python's `isinstance(v, int) and not isinstance(v, bool) and v >= 0`. */
const isUint = (value) => typeof value === "number" && Number.isInteger(value) && value >= 0;
/** Python's len(): code points, not UTF-16 units. */
const codePoints = (text) => (text.length <= 1 ? text.length : [...text].length);

// ---------------------------------------------------------------------------------------------
// Keys

/** RFC 7638 thumbprint, first 128 bits, base64url: codec.keys.key_id. */
async function keyId(required) {
  const canonical = JSON.stringify(required); // members already in lexicographic order
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", ASCII.encode(canonical)));
  return b64urlEncode(digest.subarray(0, 16));
}

function coordinate(value) {
  if (typeof value !== "string") throw new Error("coordinate is not a string");
  if (b64urlDecode(value).length !== 32) throw new Error("coordinate is not 32 bytes");
  return value;
}

/**
 * A public JWK as a verification key, as VerificationKey.from_jwk: P-256 (ES256) or Ed25519
 * (EdDSA) only; its `alg`, when given, must match the key type, and its `kid`, when given, must
 * be the thumbprint-derived id (a document cannot pass one key off under another key's id).
 * Throws Error on anything else.
 */
export async function importJwk(jwk, { issuer = null, notBefore = null, notAfter = null, compromised = false } = {}) {
  if (!isObject(jwk)) throw new Error("a JWK is an object");
  const kty = own(jwk, "kty");
  const crv = own(jwk, "crv");
  if (kty === undefined || crv === undefined) throw new Error("JWK lacks kty or crv");
  let alg;
  let required;
  let cryptoKey;
  if (kty === "EC" && crv === "P-256") {
    required = { crv, kty, x: coordinate(own(jwk, "x")), y: coordinate(own(jwk, "y")) };
    alg = "ES256";
    cryptoKey = await crypto.subtle.importKey("jwk", required, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  } else if (kty === "OKP" && crv === "Ed25519") {
    required = { crv, kty, x: coordinate(own(jwk, "x")) };
    alg = "EdDSA";
    cryptoKey = await crypto.subtle.importKey("jwk", required, { name: "Ed25519" }, false, ["verify"]);
  } else {
    throw new Error(`unsupported key type ${kty}/${crv}`);
  }
  const declared = get(jwk, "alg");
  if (declared !== null && declared !== alg) throw new Error("JWK alg does not match its key type");
  const kid = await keyId(required);
  const claimedKid = get(jwk, "kid");
  if (claimedKid !== null && claimedKid !== kid) throw new Error("JWK kid is not the thumbprint of its key");
  return Object.freeze({ kid, alg, cryptoKey, issuer, notBefore, notAfter, compromised, jwk: { ...required, kid, alg } });
}

/** Whether `signature` (JWS form: 64 bytes, r||s for ES256) is valid for `message`. */
// n/2 of P-256, big-endian: codec.keys._HALF_ORDER_BYTES.
const HALF_ORDER = Uint8Array.from(
  "7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8".match(/../g),
  (pair) => parseInt(pair, 16),
);

/** Whether an ES256 signature r‖s has s > n/2 (codec.keys.is_high_s). */
function isHighS(signature) {
  for (let i = 0; i < 32; i += 1) {
    const byte = signature[32 + i];
    if (byte !== HALF_ORDER[i]) return byte > HALF_ORDER[i];
  }
  return false;
}

async function verifySignature(key, signature, message) {
  if (signature.length !== SIGNATURE_BYTES) return false;
  const algorithm = key.alg === "ES256" ? { name: "ECDSA", hash: "SHA-256" } : { name: "Ed25519" };
  try {
    return await crypto.subtle.verify(algorithm, key.cryptoKey, signature, message);
  } catch {
    return false;
  }
}

/** The key id of a JWK (the fingerprint an operator compares), or throws. */
export async function anchorFingerprint(jwk) {
  return (await importJwk(jwk)).kid;
}

// ---------------------------------------------------------------------------------------------
// Health codes (YK1:)

/** codec.healthcode.read_health_code: the verified claims, or throws InvalidCode. */
async function readHealthCode(text, keys, now, leeway) {
  if (typeof text !== "string" || codePoints(text) > MAX_INPUT_CHARS) {
    throw new InvalidCode("malformed", "not a health code of a plausible size");
  }
  if (!text.startsWith(PREFIX)) {
    if (VERSION_PREFIX.test(text) && text.startsWith("YK")) {
      throw new InvalidCode("unsupported_version", "unsupported health-code version");
    }
    throw new InvalidCode("malformed", "does not start with the YK1: prefix");
  }
  const token = text.slice(PREFIX.length);
  if (!COMPACT.test(token)) throw new InvalidCode("malformed", "expected three segments of base64url characters after YK1:");
  const [headerB64, payloadB64, signatureB64] = token.split(".");
  const { alg, kid } = readHeader(headerB64);
  const key = keys.get(kid);
  if (key === undefined) throw new InvalidCode("unknown_key", "the signing key is not trusted here");
  if (key.alg !== alg) throw new InvalidCode("algorithm_not_allowed", `key ${kid} is bound to ${key.alg}`);

  let signature;
  try {
    signature = b64urlDecode(signatureB64);
  } catch {
    throw new InvalidCode("malformed", "the signature is not base64url");
  }
  // (r, n - s) verifies as well as (r, s): a code has one spelling, the low-s one we sign.
  if (alg === "ES256" && signature.length === SIGNATURE_BYTES && isHighS(signature)) {
    throw new InvalidCode("bad_signature", "a high-s signature is not one we make");
  }
  if (!(await verifySignature(key, signature, ASCII.encode(`${headerB64}.${payloadB64}`)))) {
    throw new InvalidCode("bad_signature", "the signature does not match");
  }

  let payload;
  try {
    payload = jsonObject(payloadB64);
  } catch {
    throw new InvalidCode("malformed", "the payload is not base64url JSON");
  }
  const claims = readClaims(payload);
  if (key.issuer !== null && claims.iss !== key.issuer) {
    throw new InvalidCode("untrusted_issuer", `key ${kid} does not sign for issuer ${claims.iss}`);
  }
  if (key.compromised) throw new InvalidCode("key_not_valid", `key ${kid} is compromised`);
  if ((key.notBefore !== null && claims.iat < key.notBefore - leeway) || (key.notAfter !== null && claims.exp > key.notAfter + leeway)) {
    throw new InvalidCode("key_not_valid", `the code lies outside the validity of key ${kid}`);
  }
  if (now < claims.iat - leeway) throw new InvalidCode("not_yet_valid", "issued in the future");
  if (now >= claims.exp + leeway) throw new InvalidCode("expired", "the code has expired");
  return { claims, kid, alg };
}

function readHeader(segment) {
  let header;
  try {
    header = jsonObject(segment);
  } catch {
    throw new InvalidCode("malformed", "the header is not base64url JSON");
  }
  const alg = own(header, "alg");
  if (typeof alg !== "string" || !ALGORITHMS.has(alg)) throw new InvalidCode("algorithm_not_allowed", "algorithm not allowed");
  // We understand no extensions (RFC 7515 4.1.11).
  if (Object.hasOwn(header, "crit")) throw new InvalidCode("malformed", "critical header extensions are not supported");
  const kid = own(header, "kid");
  if (typeof kid !== "string" || !kid || codePoints(kid) > MAX_KID_CHARS) throw new InvalidCode("malformed", "the header must carry a short kid");
  return { alg, kid };
}

function readClaims(payload) {
  const malformed = (detail) => new InvalidCode("malformed", detail);
  const text = (name) => {
    const value = own(payload, name);
    if (typeof value !== "string" || !value) throw malformed(`claim ${name} must be a non-empty string`);
    return value;
  };
  const seconds = (name) => {
    const value = own(payload, name);
    if (!isUint(value)) throw malformed(`claim ${name} must be integer UTC seconds`);
    return value;
  };
  const small = (name) => {
    const value = get(payload, name);
    if (value === null) return null;
    if (!isUint(value) || value > 9999) throw malformed(`claim ${name} must be a small non-negative integer`);
    return value;
  };
  const src = get(payload, "src");
  if (src !== null && !(Array.isArray(src) && src.length === 3 && src.every((part) => typeof part === "string" && part.length > 0 && codePoints(part) <= MAX_KID_CHARS))) {
    throw malformed("claim src must be [issuer, kid, digest]");
  }
  const status = own(payload, "st");
  if (!STATUSES.includes(status)) throw malformed("claim st must be green, yellow or red");
  return {
    iss: text("iss"),
    jti: text("jti"),
    iat: seconds("iat"),
    exp: seconds("exp"),
    st: status,
    nm: text("nm"),
    nt: small("nt"),
    vx: small("vx"),
    ia: small("ia"),
    src: src === null ? null : [...src],
  };
}

// ---------------------------------------------------------------------------------------------
// Verdicts

function verdict(fields) {
  return {
    verdict: "invalid",
    reasons: [],
    status: null,
    code_id: null,
    issuer: null,
    kid: null,
    masked_name: null,
    issued_at: null,
    expires_at: null,
    warnings: [],
    negative_within_hours: null,
    doses: null,
    origin: null,
    source: null,
    assurance: null,
    ...fields,
  };
}

// ---------------------------------------------------------------------------------------------
// The trust bundle

/** codec.bundle.read_bundle: check the anchor's signature and the format, or throw BundleError. */
export async function readBundle(text, anchor) {
  if (typeof text !== "string" || text.length > MAX_BUNDLE_CHARS) {
    throw new BundleError("malformed", "a bundle is a compact JWS of at most 16 MiB");
  }
  return parseBundle(await openAnchored(text, HEADER_TYP, anchor, ["trust bundle", "bundle"]));
}

/** The payload of a compact JWS of header `typ` that the pinned anchor signed -- the bundle, or
 * another statement a device believes only under that anchor (its checkpoint's registration) --
 * once the header and the signature check; else a BundleError worded by `what` ([name, short]).
 * As codec.bundle.open_anchored in Python. */
export async function openAnchored(text, typ, anchor, [name, short]) {
  const malformed = (detail) => new BundleError("malformed", detail);
  const parts = typeof text === "string" ? text.trim().split(".") : [];
  if (parts.length !== 3) throw malformed(`a ${short} is a compact JWS: three dot-separated parts`);
  const header = bundleObject(parts[0], "header");
  if (own(header, "typ") !== typ || !ALGORITHMS.has(own(header, "alg"))) throw malformed(`not a ${name} header`);
  if (own(header, "alg") !== anchor.alg || own(header, "kid") !== anchor.kid) {
    throw new BundleError("bad_signature", `the ${short} is not signed by the pinned anchor key`);
  }
  let signature;
  try {
    signature = b64urlDecode(parts[2]);
  } catch {
    throw malformed("the signature is not base64url");
  }
  if (!(await verifySignature(anchor, signature, ASCII.encode(`${parts[0]}.${parts[1]}`)))) {
    throw new BundleError("bad_signature", `the ${short}'s signature does not verify: it was altered`);
  }
  return bundleObject(parts[1], "payload");
}

function bundleObject(segment, what) {
  try {
    return jsonObject(segment);
  } catch {
    throw new BundleError("malformed", `the ${what} is not base64url JSON`);
  }
}

async function parseBundle(payload) {
  const malformed = (detail) => new BundleError("malformed", detail);
  const int = (document, name) => {
    const value = own(document, name);
    if (!isUint(value)) throw malformed(`'${name}' must be a non-negative integer`);
    return value;
  };
  if (own(payload, "typ") !== BUNDLE_TYP) throw malformed(`the payload is not a ${BUNDLE_TYP} document`);
  const issuer = own(payload, "issuer");
  if (typeof issuer !== "string" || !issuer) throw malformed("the bundle names no issuer");
  const [version, issuedAt, expiresAt, grace] = ["version", "issued_at", "expires_at", "grace"].map((name) => int(payload, name));
  if (expiresAt <= issuedAt) throw malformed("the bundle expires before it was issued");
  const base = get(payload, "base");
  if (base !== null && (!isUint(base) || base >= version)) throw malformed("a delta's base must be an earlier version");
  const keys = own(payload, "keys");
  const revoked = own(payload, "revoked");
  const policies = Object.hasOwn(payload, "policies") ? payload.policies : {};
  if (!Array.isArray(keys) || !Array.isArray(revoked)) throw malformed("the bundle needs 'keys' and 'revoked' lists");
  if (!isObject(policies)) throw malformed("'policies' must be an object");
  const groups = new Map();
  for (const group of revoked) {
    if (!isObject(group) || typeof own(group, "ids") !== "string") throw malformed("each revocation group needs 'until' and 'ids'");
    const until = int(group, "until");
    const ids = groups.get(until) ?? new Set();
    for (const id of decodeIds(group.ids)) ids.add(id);
    groups.set(until, ids);
  }
  const bundleKeys = [];
  for (const jwk of keys) bundleKeys.push(await bundleKey(jwk, issuer));
  const issuers = await parseIssuers(Object.hasOwn(payload, "issuers") ? payload.issuers : []);
  return { issuer, version, issuedAt, expiresAt, grace, keys: bundleKeys, revoked: groups, policies, base, issuers };
}

function decodeIds(text) {
  let raw;
  try {
    raw = b64urlDecode(text);
  } catch {
    throw new BundleError("malformed", "revocation ids are not base64url");
  }
  if (raw.length % CODE_ID_BYTES) throw new BundleError("malformed", "revocation ids are not a whole number of 16-byte ids");
  const ids = [];
  for (let i = 0; i < raw.length; i += CODE_ID_BYTES) ids.push(b64urlEncode(raw.subarray(i, i + CODE_ID_BYTES)));
  return ids;
}

function publicMembers(jwk) {
  const { state: _state, nbf: _nbf, exp: _exp, ...rest } = jwk;
  return rest;
}

async function bundleKey(jwk, issuer) {
  if (!isObject(jwk)) throw new BundleError("malformed", "each key must be an object");
  const state = own(jwk, "state");
  if (!KEY_STATES.includes(state)) throw new BundleError("malformed", "key state must be active, retired or pending");
  const notBefore = own(jwk, "nbf");
  const notAfter = own(jwk, "exp");
  if (!isUint(notBefore) || !isUint(notAfter)) throw new BundleError("malformed", "a key's nbf and exp are UTC seconds");
  try {
    const key = await importJwk(publicMembers(jwk), { issuer, notBefore, notAfter });
    return { key, state, notBefore, notAfter };
  } catch (error) {
    throw keyProblem(error, "a bundle key");
  }
}

function keyProblem(error, what) {
  // A browser without Ed25519 must say so, not call a good bundle malformed.
  if (error?.name === "NotSupportedError") return new BundleError("unsupported_browser", `${what} uses an algorithm this browser lacks`);
  return new BundleError("malformed", `${what} is not usable: ${error.message}`);
}

async function parseIssuers(entries) {
  const malformed = (detail) => new BundleError("malformed", detail);
  if (!Array.isArray(entries)) throw malformed("'issuers' must be a list");
  const issuers = [];
  for (const entry of entries) {
    if (!isObject(entry)) throw malformed("each issuer must be an object");
    const names = ["id", "issuer", "format"].map((name) => own(entry, name)).filter((value) => typeof value === "string" && value.length > 0 && codePoints(value) <= 64);
    if (names.length !== 3) throw malformed("an issuer needs 'id', 'issuer' and 'format'");
    const keys = own(entry, "keys");
    const colours = own(entry, "colours");
    if (!Array.isArray(keys) || !isObject(colours)) throw malformed("an issuer needs 'keys' and 'colours'");
    if (!Object.values(colours).every((status) => STATUSES.includes(status))) throw malformed("an issuer's colours map to green, yellow or red");
    const partnerKeys = [];
    for (const jwk of keys) partnerKeys.push(await issuerKey(jwk, names[1]));
    issuers.push({ id: names[0], issuer: names[1], format: names[2], keys: partnerKeys, colours: { ...colours } });
  }
  return issuers;
}

async function issuerKey(jwk, issuer) {
  const malformed = (detail) => new BundleError("malformed", detail);
  if (!isObject(jwk) || !["active", "retired"].includes(own(jwk, "state"))) throw malformed("an issuer key needs a state of active or retired");
  const window = [get(jwk, "nbf"), get(jwk, "exp")];
  if (window.some((value) => value !== null && !isUint(value))) throw malformed("an issuer key's nbf and exp are UTC seconds");
  try {
    // A retired partner key verifies nothing: it comes back compromised.
    return await importJwk(publicMembers(jwk), { issuer, notBefore: window[0], notAfter: window[1], compromised: jwk.state === "retired" });
  } catch (error) {
    throw keyProblem(error, "an issuer key");
  }
}

// ---------------------------------------------------------------------------------------------
// Policies (rules/policy.py): validated as the Python models do, then decided by the same rule

const VERDICTS = ["allow", "deny", "manual_check"];
const REASON_PATTERN = /^[a-z][a-z0-9_]{1,47}$/;
const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function onlyMembers(object, allowed, where) {
  if (!isObject(object)) throw new PolicyError(`${where}: not an object`);
  for (const name of Object.keys(object)) if (!allowed.includes(name)) throw new PolicyError(`${where}.${name}: extra member`);
}

// Pydantic's lax mode takes a whole float (48.0) for an int.
function policyInt(value, low, high, where) {
  const number = value instanceof JsonFloat ? value.value : value;
  if (typeof number !== "number" || !Number.isInteger(number) || number < low || number > high) throw new PolicyError(`${where}: an integer from ${low} to ${high}`);
  return number;
}

function outcome(value, where) {
  onlyMembers(value, ["verdict", "reason"], where);
  if (!VERDICTS.includes(value.verdict)) throw new PolicyError(`${where}.verdict`);
  if (typeof value.reason !== "string" || !REASON_PATTERN.test(value.reason)) throw new PolicyError(`${where}.reason`);
  return { verdict: value.verdict, reason: value.reason };
}

function conditions(value, where) {
  onlyMembers(value, ["status", "negative_test_within_hours", "min_doses", "assurance"], where);
  const status = get(value, "status");
  if (status !== null && !(Array.isArray(status) && status.length >= 1 && status.every((s) => STATUSES.includes(s)))) throw new PolicyError(`${where}.status`);
  const hours = get(value, "negative_test_within_hours");
  const doses = get(value, "min_doses");
  // How the holder's identity must have been proved: a non-empty list of known levels (duplicates
  // are allowed, as the pydantic model allows them).
  const assurance = get(value, "assurance");
  if (assurance !== null && !(Array.isArray(assurance) && assurance.length >= 1 && assurance.every((a) => ASSURANCES.includes(a)))) {
    throw new PolicyError(`${where}.assurance`);
  }
  return {
    status,
    negative_test_within_hours: hours === null ? null : policyInt(hours, 1, 720, `${where}.negative_test_within_hours`),
    min_doses: doses === null ? null : policyInt(doses, 1, 10, `${where}.min_doses`),
    assurance: assurance === null ? null : [...assurance],
  };
}

function placePolicy(value, where) {
  onlyMembers(value, ["description", "clauses", "default"], where);
  const description = own(value, "description") ?? "";
  if (typeof description !== "string" || codePoints(description) > 300) throw new PolicyError(`${where}.description`);
  const clauses = own(value, "clauses");
  if (!Array.isArray(clauses) || clauses.length > 50) throw new PolicyError(`${where}.clauses`);
  return {
    description,
    clauses: clauses.map((clause, i) => {
      const at = `${where}.clauses.${i}`;
      onlyMembers(clause, ["when", "verdict", "reason"], at);
      return { when: conditions(own(clause, "when"), `${at}.when`), ...outcome({ verdict: clause.verdict, reason: clause.reason }, at) };
    }),
    default: outcome(own(value, "default"), `${where}.default`),
  };
}

/** The policy for a kind of place, from a bundle's policies document; throws PolicyError. */
export function parsePolicy(document, kind) {
  onlyMembers(document, ["version", ...PLACE_KINDS], "policies");
  if (typeof document.version !== "string" || !VERSION_PATTERN.test(document.version)) throw new PolicyError("policies.version");
  for (const place of PLACE_KINDS) if (!Object.hasOwn(document, place)) throw new PolicyError(`policies.${place}: missing`);
  const policies = Object.fromEntries(PLACE_KINDS.map((place) => [place, placePolicy(document[place], place)]));
  if (!PLACE_KINDS.includes(kind)) throw new PolicyError(`unknown kind of place ${kind}`);
  return policies[kind];
}

/** rules.policy.decide: the first clause that holds decides, otherwise the default. A code
 * whose assurance is unknown (null) meets no assurance condition. */
export function decide(policy, { status, negative_within_hours: hours = null, doses = null, assurance = null }) {
  for (const clause of policy.clauses) {
    const when = clause.when;
    if (when.status !== null && !when.status.includes(status)) continue;
    if (when.assurance !== null && (assurance === null || !when.assurance.includes(assurance))) continue;
    if (when.negative_test_within_hours !== null && (hours === null || hours > when.negative_test_within_hours)) continue;
    if (when.min_doses !== null && (doses ?? 0) < when.min_doses) continue;
    return { verdict: clause.verdict, reason: clause.reason };
  }
  return { verdict: policy.default.verdict, reason: policy.default.reason };
}

/** verifier.policy_decision: a code that is not valid is denied with its first reason. */
export function policyDecision(result, policy) {
  if (result.verdict !== "valid" || result.status === null) {
    return { verdict: "deny", reason: result.reasons.length ? result.reasons[0] : "invalid" };
  }
  return decide(policy, result);
}

// ---------------------------------------------------------------------------------------------
// The trust store

/**
 * The checkpoint's pinned anchor and the latest bundle it signed (verifier.trust.TrustStore).
 * Immutable: load() returns a new store, so a refused bundle changes nothing.
 */
export class TrustStore {
  constructor(anchor, bundle = null, leeway = DEFAULT_LEEWAY) {
    this.anchor = anchor;
    this.bundle = bundle;
    this.leeway = leeway;
    Object.freeze(this);
  }

  /** A store pinning `jwk` as the anchor; throws Error when the JWK is not a usable key. */
  static async fromAnchor(jwk, leeway = DEFAULT_LEEWAY) {
    return new TrustStore(await importJwk(jwk), null, leeway);
  }

  /** This store with `text` (a full bundle or a delta) applied; throws BundleError. */
  async load(text, now) {
    return this.apply(await readBundle(text, this.anchor), now);
  }

  apply(incoming, now) {
    const current = this.bundle;
    if (current !== null) {
      if (incoming.issuer !== current.issuer) throw new BundleError("other_issuer", `the bundle is for ${incoming.issuer}, not ${current.issuer}`);
      if (incoming.version < current.version) throw new BundleError("rollback", `bundle version ${incoming.version} is older than the ${current.version} held`);
      if (incoming.version === current.version) return this;
    }
    let next = incoming;
    if (incoming.base !== null) {
      if (current === null || current.version !== incoming.base) {
        throw new BundleError("delta_mismatch", `a delta from version ${incoming.base} needs that version`);
      }
      const merged = new Map([...current.revoked].map(([until, ids]) => [until, new Set(ids)]));
      for (const [until, ids] of incoming.revoked) {
        const held = merged.get(until) ?? new Set();
        for (const id of ids) held.add(id);
        merged.set(until, held);
      }
      next = { ...incoming, revoked: merged, base: null };
    }
    // Codes listed under a past hour have expired anyway: no need to keep their ids.
    const live = new Map([...next.revoked].filter(([until]) => until > now - this.leeway));
    return new TrustStore(this.anchor, { ...next, revoked: live, index: indexBundle(next, live) }, this.leeway);
  }

  /** fresh | stale | expired | wrong_clock | none */
  freshness(now) {
    const bundle = this.bundle;
    if (bundle === null) return "none";
    if (now < bundle.issuedAt - this.leeway) return "wrong_clock";
    if (now <= bundle.expiresAt) return "fresh";
    if (now <= bundle.expiresAt + bundle.grace) return "stale";
    return "expired";
  }

  /** How many revoked code ids are held. */
  get revokedCount() {
    return this.bundle === null ? 0 : this.bundle.index.revoked.size;
  }

  /** The policy for a kind of place; throws PolicyError when the bundle's do not validate. */
  policy(kind) {
    return parsePolicy(this.bundle.policies, kind);
  }

  /** Judge `text` offline at `now` (UTC seconds) with the bundle held. Never throws for bad input. */
  async verify(text, now) {
    const freshness = this.freshness(now);
    if (freshness === "none") return verdict({ verdict: "cannot_verify", reasons: ["no_trust"] });
    if (freshness === "wrong_clock") return verdict({ verdict: "cannot_verify", reasons: ["wrong_clock"] });
    if (freshness === "expired") return verdict({ verdict: "cannot_verify", reasons: ["trust_expired"] });
    const result = await verifyCode(this.bundle.index, text, now, this.leeway);
    if (freshness === "stale") result.warnings = [...result.warnings, "trust_stale"];
    return result;
  }
}

/** What verification looks up, built once per bundle. Pending keys count: a checkpoint synced
 * before a rotation must accept the codes the new key signs once it is activated. */
function indexBundle(bundle, revoked) {
  const keys = new Map(bundle.keys.map((entry) => [entry.key.kid, entry.key]));
  const partners = new Map(bundle.issuers.map((partner) => [partner.format, { ...partner, keys: new Map(partner.keys.map((key) => [key.kid, key])) }]));
  const partnerNames = new Map(bundle.issuers.map((partner) => [partner.issuer, partner.id]));
  const ids = new Set();
  for (const group of revoked.values()) for (const id of group) ids.add(id);
  return { keys, partners, partnerNames, revoked: ids };
}

/** verifier.Verifier.verify. */
async function verifyCode(index, text, now, leeway) {
  const format = typeof text === "string" ? FORMATS.find((candidate) => candidate.claims(text)) : undefined;
  if (format !== undefined) return verifyPartner(index, format, text, now, leeway);
  let code;
  try {
    code = await readHealthCode(text, index.keys, now, leeway);
  } catch (error) {
    if (error instanceof InvalidCode) return verdict({ verdict: "invalid", reasons: [error.reason] });
    throw error;
  }
  const claims = code.claims;
  let origin = "guangdong";
  if (claims.src !== null) origin = `converted_from_${index.partnerNames.get(claims.src[0]) ?? claims.src[0]}`;
  const result = verdict({
    verdict: "valid",
    status: claims.st,
    code_id: claims.jti,
    issuer: claims.iss,
    kid: code.kid,
    masked_name: claims.nm,
    issued_at: claims.iat,
    expires_at: claims.exp,
    negative_within_hours: claims.nt,
    doses: claims.vx,
    origin,
    source: claims.src === null ? null : { issuer: claims.src[0], kid: claims.src[1], digest: claims.src[2] },
    assurance: claims.ia === null ? null : ASSURANCE_LEVELS.get(claims.ia) ?? null,
  });
  if (index.revoked.has(claims.jti)) {
    // Invalid, details kept for display: the gate sees whose code it was.
    result.verdict = "invalid";
    result.reasons = [...result.reasons, "revoked"];
  }
  return result;
}

/** Verifier._verify_partner: a partner's own code, read by its format (partner-formats.js) and
 * judged with the partner's keys and colour table from the bundle. Partners publish no
 * revocations: their codes are good until they expire. */
async function verifyPartner(index, format, text, now, leeway) {
  const partner = index.partners.get(format.name);
  // A partner this checkpoint was not told to recognise: as good as an unknown key.
  if (partner === undefined) return verdict({ verdict: "invalid", reasons: ["untrusted_issuer"] });
  let code;
  try {
    code = await format.read(text, partner.keys, { now, leeway, verify: verifySignature, isHighS, b64urlEncode, b64urlDecode, jsonObject });
  } catch (error) {
    if (error instanceof format.Invalid) return verdict({ verdict: "invalid", reasons: [error.reason], origin: `issued_by_${partner.id}` });
    throw error;
  }
  const status = Object.hasOwn(partner.colours, code.colour) ? partner.colours[code.colour] : null;
  if (status === null) return verdict({ verdict: "invalid", reasons: ["malformed"] });
  return verdict({
    verdict: "valid",
    status,
    code_id: code.code_id,
    issuer: code.issuer,
    kid: code.kid,
    masked_name: code.masked_name,
    issued_at: code.issued_at,
    expires_at: code.expires_at,
    negative_within_hours: hoursSinceTest(code.tested_on, code.utc_offset_hours, now),
    origin: `issued_by_${partner.id}`,
    // The partner proved its own residents; we hold it to that (docs/IDENTITY.md).
    assurance: "partner",
  });
}

/** PartnerCode.hours_since_test: hours from the start of the test's day where it was taken to
 * `now`; counting from the day's start can only make a test look older, never fresher. */
function hoursSinceTest(day, offsetHours, now) {
  if (day === null) return null;
  const [year, month, date] = day.split("-").map(Number);
  const midnight = new Date(0);
  midnight.setUTCFullYear(year, month - 1, date); // Date.UTC reads years 0-99 as 1900-1999
  const start = midnight.getTime() / 1000 - offsetHours * 3600;
  return Math.max(0, Math.floor((now - start) / 3600));
}

// ---------------------------------------------------------------------------------------------
// The checkpoint's answer

/**
 * A code judged at a place, as `yuekang checkpoint scan` answers it: the verdict, and the
 * place's decision -- `cannot_verify` (with the first reason) when the store cannot judge now.
 */
export async function judge(store, text, { now, place }) {
  const result = await store.verify(text, now);
  if (result.verdict === "cannot_verify") {
    return { ...result, decision: "cannot_verify", decision_reason: result.reasons[0] };
  }
  let policy;
  try {
    policy = store.policy(place);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    // Signed, but by a server of another version: this page cannot apply it, so it decides nothing.
    return { ...result, decision: "cannot_verify", decision_reason: "bad_policy" };
  }
  const decision = policyDecision(result, policy);
  return { ...result, decision: decision.verdict, decision_reason: decision.reason };
}
