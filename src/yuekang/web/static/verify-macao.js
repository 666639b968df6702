// Macao health codes (MO1:) in the browser: a port of yuekang.codec.macao.read_macao_code and
// the Macao branch of the Python Verifier. Pure: no DOM, no storage, no network.
//
// MO1:<base45 of one tagged COSE_Sign1>, ES256 over the RFC 9052 Sig_structure, CWT claims with
// the health map under -65537 (see the module docstring of src/yuekang/codec/macao.py for the
// format and the order of the checks, which this follows). base45 comes from npm (base45-ts),
// the CBOR tokens from npm (cborg); the values are built here from the tokens so that what the
// Python reader tells apart stays apart: a float 1.0 is not the integer 1, a true is not 1.

import { decode as base45Decode, encode as base45Encode } from "/static/vendor/base45/base45.js";
import { Tokeniser } from "/static/vendor/cborg/decode.js";

const PREFIX = "MO1:";
const VERSION = /^MO[0-9]+:/;
const MAX_INPUT_CHARS = 4096;
const MAX_CBOR_DEPTH = 980; // cbor2 gives up (so "malformed") near Python's recursion limit
const MAX_SECONDS = 2n ** 63n - 1n;
const COLOURS = ["verde", "amarelo", "vermelho"];
const DOC_TYPES = ["BIR", "PTM", "PASS", "OUTRO"];
const MAX_NAME_CHARS = 64;
const KID_BYTES = 16;
const CTI_BYTES = 16;
const ES256 = -7;
const SIGN1_TAG = 18;
const SELF_DESCRIBED_TAG = 55799;
const DATE = /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/;
const MACAO_OFFSET_SECONDS = 8 * 3600;
const LABEL = { alg: 1, crit: 2, kid: 4, iss: 1, exp: 4, iat: 6, cti: 7, health: -65537 };

/** A code that must not be accepted; `reason` is its reason code. */
export class InvalidMacaoCode extends Error {
  constructor(reason, detail) {
    super(detail);
    this.reason = reason;
  }
}

const malformed = (detail) => new InvalidMacaoCode("malformed", detail);

// ---------------------------------------------------------------------------------------------
// CBOR values as cbor2 gives them to the Python reader

class CborFloat {
  constructor(value) {
    this.value = value;
  }
}

class CborTag {
  constructor(tag, value) {
    this.tag = tag;
    this.value = value;
  }
}

const CBOR_UNDEFINED = Object.freeze({ undefined: true });
const TOKENISER_OPTIONS = { strict: false, allowIndefinite: true, allowUndefined: true, allowBigInt: true };

function integer(value) {
  // Integers within the safe range are numbers, so that map lookups by label find them.
  if (typeof value === "bigint" && value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(value);
  return value;
}

function bigFromBytes(bytes) {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

function readValue(tokeniser, depth) {
  if (depth > MAX_CBOR_DEPTH) throw new Error("nested too deeply");
  if (tokeniser.done()) throw new Error("truncated");
  const token = tokeniser.next();
  switch (token.type.name) {
    case "uint":
      return integer(token.value);
    case "negint":
      return integer(token.value);
    case "bytes":
      return token.value;
    case "string":
      return token.value;
    case "float":
      return new CborFloat(token.value);
    case "true":
      return true;
    case "false":
      return false;
    case "null":
      return null;
    case "undefined":
      return CBOR_UNDEFINED;
    case "array": {
      const items = [];
      for (let i = 0; i < token.value; i++) {
        const item = readItem(tokeniser, depth + 1, token.value === Infinity);
        if (item === BREAK) break;
        items.push(item);
      }
      return items;
    }
    case "map": {
      // Keys behave as in the Python dict cbor2 builds: 1, 1.0 and true are one key, which
      // keeps the first spelling and takes the last value.
      const entries = new Map();
      for (let i = 0; i < token.value; i++) {
        const key = readItem(tokeniser, depth + 1, token.value === Infinity);
        if (key === BREAK) break;
        const value = readValue(tokeniser, depth + 1);
        const identity = pythonKey(key);
        const held = entries.get(identity);
        entries.set(identity, { key: held ? held.key : key, value });
      }
      return new Map([...entries.values()].map(({ key, value }) => [key, value]));
    }
    case "tag": {
      const inner = readValue(tokeniser, depth + 1);
      // The semantic tags cbor2 turns into plain values: bignums become ints, and the
      // self-described CBOR marker is dropped.
      if (token.value === 2 && inner instanceof Uint8Array) return integer(bigFromBytes(inner));
      if (token.value === 3 && inner instanceof Uint8Array) return integer(-1n - bigFromBytes(inner));
      if (token.value === SELF_DESCRIBED_TAG) return inner;
      return new CborTag(token.value, inner);
    }
    default:
      throw new Error(`unexpected CBOR ${token.type.name}`);
  }
}

const BREAK = Symbol("break");

/** What Python's dict compares a key by: numbers by value across int, float and bool. */
function pythonKey(key) {
  if (typeof key === "boolean") return `n:${key ? 1 : 0}`;
  if (typeof key === "number" || typeof key === "bigint") return `n:${BigInt(key)}`;
  if (key instanceof CborFloat) {
    if (Number.isInteger(key.value)) return `n:${BigInt(key.value)}`;
    return Number.isNaN(key.value) ? Symbol("nan") : `f:${key.value}`;
  }
  if (typeof key === "string") return `s:${key}`;
  if (key instanceof Uint8Array) return `b:${Array.from(key).join(",")}`;
  if (key === null) return "none";
  if (key === CBOR_UNDEFINED) return "undefined";
  return Symbol("unhashable"); // arrays, maps, tags: never equal to a label
}

/** An item of an array or map: a break ends an indefinite one, and nothing else. */
function readItem(tokeniser, depth, indefinite) {
  if (indefinite && !tokeniser.done() && tokeniser.data[tokeniser.pos()] === 0xff) {
    tokeniser.next();
    return BREAK;
  }
  return readValue(tokeniser, depth);
}

/** Exactly one CBOR item: trailing bytes would give one code many texts. */
function cbor(bytes, what) {
  let value;
  let tokeniser;
  try {
    tokeniser = new Tokeniser(bytes, TOKENISER_OPTIONS);
    value = readValue(tokeniser, 0);
  } catch {
    throw malformed(`the ${what} is not valid CBOR`);
  }
  if (!tokeniser.done()) throw malformed(`the ${what} has trailing bytes`);
  return value;
}

const isInt = (value) => typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value));
const isMap = (value) => value instanceof Map;
const isBytes = (value) => value instanceof Uint8Array;
const codePoints = (text) => [...text].length;

/** The members of a map whose keys are exactly integers or texts (a `true` or `1.0` key is
 * never read as label 1). */
function labels(map) {
  return new Map([...map].filter(([key]) => isInt(key) || typeof key === "string"));
}

// ---------------------------------------------------------------------------------------------
// COSE_Sign1

function base45(text) {
  let raw;
  try {
    raw = base45Decode(text);
  } catch {
    throw malformed("the text after MO1: is not base45");
  }
  // One spelling per code: over-range triplets decode to something that does not encode back.
  if (base45Encode(raw) !== text) throw malformed("the base45 text is not canonical");
  return raw;
}

function sign1Parts(message) {
  if (!(message instanceof CborTag) || message.tag !== SIGN1_TAG) throw malformed("not a tagged COSE_Sign1 message");
  const value = message.value;
  if (!Array.isArray(value) || value.length !== 4) throw malformed("a COSE_Sign1 message has four members");
  const [protectedBytes, unprotected, payload, signature] = value;
  if (!(isBytes(protectedBytes) && isMap(unprotected) && isBytes(payload) && isBytes(signature))) {
    throw malformed("the COSE_Sign1 members have the wrong types");
  }
  return { protectedBytes, payload, signature };
}

function headerKid(protectedBytes) {
  // RFC 9052 3: a zero-length protected bstr is an empty map, so it fails on the alg.
  const header = protectedBytes.length ? cbor(protectedBytes, "protected header") : new Map();
  if (!isMap(header)) throw malformed("the protected header is not a CBOR map");
  const members = labels(header);
  const alg = members.get(LABEL.alg);
  if (alg !== ES256) throw new InvalidMacaoCode("algorithm_not_allowed", "only ES256 (-7) is allowed");
  if (members.has(LABEL.crit)) throw malformed("critical header parameters are not supported");
  const kid = members.get(LABEL.kid);
  if (!isBytes(kid) || kid.length !== KID_BYTES) throw malformed("the protected header must carry a 16-byte kid");
  return kid;
}

function cborHead(major, length) {
  if (length < 24) return [(major << 5) | length];
  if (length < 0x100) return [(major << 5) | 24, length];
  if (length < 0x10000) return [(major << 5) | 25, length >> 8, length & 0xff];
  return [(major << 5) | 26, (length >>> 24) & 0xff, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff];
}

/** ["Signature1", protected, h'', payload]: what the issuer signed (RFC 9052 4.4). */
function sigStructure(protectedBytes, payload) {
  const context = new TextEncoder().encode("Signature1");
  return new Uint8Array([
    ...cborHead(4, 4),
    ...cborHead(3, context.length), ...context,
    ...cborHead(2, protectedBytes.length), ...protectedBytes,
    ...cborHead(2, 0),
    ...cborHead(2, payload.length), ...payload,
  ]);
}

// ---------------------------------------------------------------------------------------------
// Claims

function isDate(value) {
  if (typeof value !== "string" || !DATE.test(value)) return false;
  const [year, month, day] = value.split("-").map(Number);
  // setUTCFullYear, not Date.UTC: the latter reads years 0-99 as 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return year >= 1 && date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

function seconds(value, name) {
  if (!isInt(value) || BigInt(value) < 0n || BigInt(value) > MAX_SECONDS) throw malformed(`claim ${name} must be integer UTC seconds`);
  return Number(value);
}

function readClaims(payload, b64urlEncode) {
  if (!isMap(payload)) throw malformed("the payload is not a CBOR map of claims");
  const claims = labels(payload);
  const cti = claims.get(LABEL.cti);
  if (!isBytes(cti) || cti.length !== CTI_BYTES) throw malformed("claim cti (7) must be 16 bytes");
  const health = claims.get(LABEL.health);
  if (!isMap(health)) throw malformed("the health claim (-65537) must be a map");
  const members = labels(health);
  if (members.has("tan") && members.get("tan") === null) throw malformed("claim tan must be left out, not null");
  const iss = claims.get(LABEL.iss);
  if (typeof iss !== "string" || !iss) throw malformed("claim iss (1) must be non-empty text");
  const iat = seconds(claims.get(LABEL.iat), "iat");
  const exp = seconds(claims.get(LABEL.exp), "exp");
  const cor = members.get("cor");
  if (!COLOURS.includes(cor)) throw malformed("claim cor must be verde, amarelo or vermelho");
  const nome = members.get("nome");
  if (typeof nome !== "string" || nome.length === 0 || codePoints(nome) > MAX_NAME_CHARS) throw malformed("claim nome must be 1 to 64 characters");
  const tdoc = members.get("tdoc");
  if (!DOC_TYPES.includes(tdoc)) throw malformed("claim tdoc is not a known document type");
  const tan = members.has("tan") ? members.get("tan") : null;
  if (tan !== null && !isDate(tan)) throw malformed("claim tan must be a YYYY-MM-DD date");
  return { iss, cti: b64urlEncode(cti), iat, exp, cor, nome, tdoc, tan };
}

// ---------------------------------------------------------------------------------------------
// The reader

/**
 * codec.macao.read_macao_code: the verified claims and kid, or throws InvalidMacaoCode.
 * `keys` maps base64url key ids to keys from verify.js (`verify(key, signature, message)` checks
 * a signature); `b64urlEncode` is verify.js's, so ids are spelled one way everywhere.
 */
export async function readMacaoCode(text, keys, { now, leeway, verify, b64urlEncode }) {
  if (typeof text !== "string" || codePoints(text) > MAX_INPUT_CHARS) throw malformed("not a Macao health code of a plausible size");
  if (!text.startsWith(PREFIX)) {
    if (VERSION.test(text)) throw new InvalidMacaoCode("unsupported_version", "unsupported Macao health-code version");
    throw malformed("does not start with the MO1: prefix");
  }
  const message = cbor(base45(text.slice(PREFIX.length)), "COSE message");
  const { protectedBytes, payload, signature } = sign1Parts(message);
  const kid = b64urlEncode(headerKid(protectedBytes));
  const key = keys.get(kid);
  if (key === undefined) throw new InvalidMacaoCode("unknown_key", "the signing key is not trusted here");
  if (key.alg !== "ES256") throw new InvalidMacaoCode("algorithm_not_allowed", `key ${kid} is not an ES256 key`);
  if (!(await verify(key, signature, sigStructure(protectedBytes, payload)))) {
    throw new InvalidMacaoCode("bad_signature", "the signature does not match");
  }
  const claims = readClaims(cbor(payload, "payload"), b64urlEncode);
  if (key.issuer !== null && claims.iss !== key.issuer) throw new InvalidMacaoCode("untrusted_issuer", `key ${kid} does not sign for ${claims.iss}`);
  if (key.compromised) throw new InvalidMacaoCode("key_not_valid", `key ${kid} is compromised`);
  if ((key.notBefore !== null && claims.iat < key.notBefore - leeway) || (key.notAfter !== null && claims.exp > key.notAfter + leeway)) {
    throw new InvalidMacaoCode("key_not_valid", `the code lies outside the validity of key ${kid}`);
  }
  if (now < claims.iat - leeway) throw new InvalidMacaoCode("not_yet_valid", "issued in the future");
  if (now >= claims.exp + leeway) throw new InvalidMacaoCode("expired", "the code has expired");
  return { claims, kid };
}

/** The MO1 format as verify.js reads partner codes (codec.formats.PartnerCode). */
export const macao = Object.freeze({
  name: "MO1",
  system: "Macao",
  Invalid: InvalidMacaoCode,
  claims: (text) => VERSION.test(text),
  async read(text, keys, deps) {
    const { claims, kid } = await readMacaoCode(text, keys, deps);
    return {
      issuer: claims.iss,
      code_id: claims.cti,
      kid,
      issued_at: claims.iat,
      expires_at: claims.exp,
      colour: claims.cor,
      masked_name: claims.nome,
      tested_on: claims.tan,
      utc_offset_hours: MACAO_OFFSET_SECONDS / 3600,
    };
  },
});
