// Shared by every page: language, text lookup, and calls to the JSON API.
// Pages are plain ES modules: no framework, no build step.

export const LANGUAGES = ["zh-Hans", "zh-Hant", "en", "pt"];
const LANGUAGE_NAMES = { "zh-Hans": "简体", "zh-Hant": "繁體", en: "EN", pt: "PT" };

let chosen = null;

/** The page language: ?lang=, then the saved choice, then zh-Hans (the default). Chosen once per
 * page load (changing it reloads the page); every API call asks for it. */
export function language() {
  chosen ??= choose();
  return chosen;
}

function choose() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (LANGUAGES.includes(asked)) {
    localStorage.setItem("yk.lang", asked);
    return asked;
  }
  const saved = localStorage.getItem("yk.lang");
  return LANGUAGES.includes(saved) ? saved : "zh-Hans";
}

/** A translator over a page's table: {key: {"zh-Hans": ..., "zh-Hant": ..., en: ..., pt: ...}}. */
export function translator(table) {
  const lang = language();
  document.documentElement.lang = lang;
  return (key, values = {}) => {
    const entry = table[key];
    const text = entry ? entry[lang] ?? entry["zh-Hans"] : key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
  };
}

/** Fill every [data-t] element with its text (the page's <title data-t> too, so the tab follows
 * the language), and [data-t-placeholder] placeholders. */
export function translatePage(t) {
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of document.querySelectorAll("[data-t-placeholder]")) {
    el.placeholder = t(el.dataset.tPlaceholder);
  }
}

/** A language switcher in `container`: reloads the page in the chosen language. */
export function languageSwitcher(container) {
  const current = language();
  for (const lang of LANGUAGES) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = LANGUAGE_NAMES[lang];
    button.className = lang === current ? "lang current" : "lang";
    button.addEventListener("click", () => {
      const url = new URL(location.href);
      url.searchParams.set("lang", lang);
      location.href = url.toString();
    });
    container.append(button);
  }
}

export class ApiError extends Error {
  /** `headers` (optional): the response's, for `Retry-After` (seconds) on 429 and 503. */
  constructor(status, body, headers = null) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.fields = error.fields || [];
    const retry = Number.parseInt((headers && headers.get("Retry-After")) || "", 10);
    this.retryAfter = Number.isFinite(retry) && retry >= 0 ? retry : null;
  }
}

/** Call the API; JSON in and out. Errors become ApiError with the API's stable code. */
export async function api(path, { method = "GET", token, body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", "Accept-Language": language(), ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data, response.headers);
  return data;
}

/** A fresh Idempotency-Key for a request that must not be applied twice. */
export function idempotencyKey() {
  return crypto.randomUUID();
}

// Dates and times read the same in every language: 2026-12-07 08:17, on a 24-hour clock, with no
// locale's habits (12/7/26, AM, 清晨). The parts come from Intl (for the time zone), the order and
// the separators are ours. One formatter per zone, made once: the resident's clock asks every second.
const formatters = new Map();

function timeParts(when, timeZone) {
  let format = formatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", numberingSystem: "latn",
    });
    formatters.set(timeZone, format);
  }
  return Object.fromEntries(format.formatToParts(new Date(when)).map((p) => [p.type, p.value]));
}

/** `when` (a Date, milliseconds or ISO text) as 2026-12-07 08:17 in `timeZone` (the device's when
 * none is given); `seconds` adds :05, `date: false` leaves only 08:17. */
export function isoTime(when, { timeZone, seconds = false, date = true } = {}) {
  const p = timeParts(when, timeZone);
  const time = `${p.hour}:${p.minute}${seconds ? `:${p.second}` : ""}`;
  return date ? `${p.year}-${p.month}-${p.day} ${time}` : time;
}

/** The day of `when` in `timeZone`: 2026-12-07. */
export function isoDay(when, { timeZone } = {}) {
  const p = timeParts(when, timeZone);
  return `${p.year}-${p.month}-${p.day}`;
}
