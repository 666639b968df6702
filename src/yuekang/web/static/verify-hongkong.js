// Hong Kong health codes (HK1:) in the browser: a port of yuekang.codec.hongkong. Pure: no DOM,
// no storage, no network. The checks run in the Python order and answer the Python reasons
// (tests/vectors/verdicts.json holds both to that).
//
// HK1:<b64url(header)>.<b64url(payload)>.<b64url(signature)>, a compact JWS signed with ES256;
// the docstring of src/yuekang/codec/hongkong.py defines the members.

const PREFIX = "HK1:";
const VERSION = /^HK[0-9]{1,3}:/;
const TYP = "hk-health-code";
const MAX_INPUT_CHARS = 2048;
const COLOURS = ["green", "amber", "red"];
const DOC_TYPES = ["HKID", "PERMIT", "PASSPORT"];
// 16 bytes as base64url: the code id a scan record carries (codec/hongkong.py).
const CODE_ID = /^[A-Za-z0-9_-]{22}$/;
const MEMBERS = ["dt", "exp", "iat", "iss", "jti", "nat", "nm", "st"];
const DATE = /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/;
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const HONG_KONG_OFFSET_HOURS = 8;
const MAX_SECONDS = 2 ** 40;

/** A code that must not be accepted; `reason` is its reason code. */
export class InvalidHongKongCode extends Error {
  constructor(reason, detail) {
    super(detail);
    this.reason = reason;
  }
}

const malformed = (detail) => new InvalidHongKongCode("malformed", detail);
/** Python's len(): code points, not UTF-16 units. */
const codePoints = (text) => [...text].length;
const isText = (value, limit) => typeof value === "string" && value.length > 0 && codePoints(value) <= limit;
const isSeconds = (value) => typeof value === "number" && Number.isInteger(value) && value >= 0;

function isDate(text) {
  if (!DATE.test(text)) return false;
  const [year, month, day] = text.split("-").map(Number);
  // setUTCFullYear, not Date.UTC: the latter reads years 0-99 as 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return year >= 1 && date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

function sameMembers(object, names) {
  const own = Object.keys(object).sort();
  return own.length === names.length && own.every((name, i) => name === names[i]);
}

/**
 * codec.hongkong.read_hongkong_code: the verified claims and kid, or throws InvalidHongKongCode.
 * `deps` are verify.js's: `verify(key, signature, message)`, `isHighS(signature)`,
 * `b64urlDecode(text)` and `jsonObject(segment)` (which keeps Python's 1 and 1.0 apart).
 */
export async function readHongKongCode(text, keys, { now, leeway, verify, isHighS, b64urlDecode, jsonObject }) {
  if (typeof text !== "string" || codePoints(text) > MAX_INPUT_CHARS) throw malformed("not a Hong Kong health code of a plausible size");
  if (!text.startsWith(PREFIX)) {
    if (VERSION.test(text)) throw new InvalidHongKongCode("unsupported_version", "unsupported Hong Kong code version");
    throw malformed("does not start with the HK1: prefix");
  }
  if (!COMPACT.test(text.slice(PREFIX.length))) throw malformed("a Hong Kong code has three dot-separated base64url segments");
  const parts = text.slice(PREFIX.length).split(".");
  const object = (segment, what) => {
    try {
      return jsonObject(segment);
    } catch {
      throw malformed(`the ${what} is not a JSON object`);
    }
  };
  const header = object(parts[0], "header");
  if (!sameMembers(header, ["alg", "kid", "typ"]) || header.typ !== TYP) throw malformed("the header is not a Hong Kong code's");
  if (header.alg !== "ES256") throw new InvalidHongKongCode("algorithm_not_allowed", "the algorithm is not allowed");
  const key = typeof header.kid === "string" ? keys.get(header.kid) : undefined;
  if (key === undefined) throw new InvalidHongKongCode("unknown_key", "the signing key is not trusted here");
  if (key.alg !== "ES256") throw new InvalidHongKongCode("algorithm_not_allowed", `key ${header.kid} is bound to ${key.alg}, not ES256`);
  let signature;
  try {
    signature = b64urlDecode(parts[2]);
  } catch {
    throw malformed("the signature is not base64url");
  }
  const signed = new TextEncoder().encode(`${parts[0]}.${parts[1]}`);
  if ((signature.length === 64 && isHighS(signature)) || !(await verify(key, signature, signed))) {
    throw new InvalidHongKongCode("bad_signature", "the signature does not match");
  }
  const claims = readClaims(object(parts[1], "payload"));
  if (key.issuer !== null && claims.iss !== key.issuer) throw new InvalidHongKongCode("untrusted_issuer", "the key does not sign for this issuer");
  if (key.compromised) throw new InvalidHongKongCode("key_not_valid", "the key is compromised");
  if ((key.notBefore !== null && claims.iat < key.notBefore - leeway) || (key.notAfter !== null && claims.exp > key.notAfter + leeway)) {
    throw new InvalidHongKongCode("key_not_valid", "the code lies outside the key's validity");
  }
  if (now < claims.iat - leeway) throw new InvalidHongKongCode("not_yet_valid", "the code was issued in the future; check the clock");
  if (now >= claims.exp + leeway) throw new InvalidHongKongCode("expired", "the code has expired");
  return { claims, kid: header.kid };
}

function readClaims(payload) {
  if (!sameMembers(payload, MEMBERS)) throw malformed(`the payload must have exactly ${MEMBERS.join(", ")}`);
  const { iss, jti, iat, exp, st, nm, dt, nat } = payload;
  if (!isText(iss, 64)) throw malformed("'iss' must be text");
  if (!(typeof jti === "string" && CODE_ID.test(jti))) throw malformed("'jti' must be 16 bytes, base64url");
  if (!isSeconds(iat) || !isSeconds(exp) || !(iat < exp && exp < MAX_SECONDS)) throw malformed("'iat' and 'exp' must be whole seconds, 'exp' after 'iat'");
  if (!COLOURS.includes(st)) throw malformed(`'st' must be one of ${COLOURS.join(", ")}`);
  if (!isText(nm, 100)) throw malformed("'nm' must be text");
  if (!DOC_TYPES.includes(dt)) throw malformed(`'dt' must be one of ${DOC_TYPES.join(", ")}`);
  if (nat !== null && !(typeof nat === "string" && isDate(nat))) throw malformed("'nat' must be null or a date YYYY-MM-DD");
  return { iss, jti, iat, exp, st, nm, dt, nat };
}

/** The HK1 format as verify.js reads partner codes (codec.formats.PartnerCode). */
export const hongkong = Object.freeze({
  name: "HK1",
  system: "Hong Kong",
  Invalid: InvalidHongKongCode,
  claims: (text) => VERSION.test(text),
  async read(text, keys, deps) {
    const { claims, kid } = await readHongKongCode(text, keys, deps);
    return {
      issuer: claims.iss,
      code_id: claims.jti,
      kid,
      issued_at: claims.iat,
      expires_at: claims.exp,
      colour: claims.st,
      masked_name: claims.nm,
      tested_on: claims.nat,
      utc_offset_hours: HONG_KONG_OFFSET_HOURS,
    };
  },
});
