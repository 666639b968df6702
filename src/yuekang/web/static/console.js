// The staff console: sign in with a staff token, then the dashboard, keys, checkpoints, appeals,
// identity (alerts, counter proofing, family members' consent) and the audit log -- each shown
// only to the roles the API lets do it. Every figure and every
// change goes through the JSON API; this page holds no rules of its own beyond what to offer.

import { api, ApiError, isoDay, isoTime, language, languageSwitcher, translatePage, translator } from "/static/app/common.js";
import { TEXT } from "/static/app/console-text.js";

const t = translator(TEXT);
const LANG = language();
const LOCALE = { "zh-Hans": "zh-CN", "zh-Hant": "zh-HK", en: "en-GB", pt: "pt-PT" }[LANG];
// The service counts days in UTC+8; showing times in the same zone keeps a bar and the times in
// a table on the same day whatever the computer's own zone is.
const ZONE = "Asia/Shanghai";
const TOKEN_KEY = "yk.console.token";
const STAFF = ["operator", "epidemiologist", "admin"];
// Who may use each view, as the API decides it (docs/API.md, Roles; checkpoint management is
// open to operators and admins there). Views a role may not use are not offered.
const VIEWS = {
  dashboard: STAFF,
  keys: ["admin"],
  checkpoints: ["operator", "admin"],
  appeals: ["operator"],
  identity: ["operator", "admin"],
  audit: ["admin"],
};
const STATUSES = ["green", "yellow", "red"];
// allowed_revoked: let through offline on a code already revoked (stats.service._decision), not
// a good pass, so never added to "allow".
const DECISIONS = ["allow", "deny", "manual_check", "decision_unknown", "allowed_revoked"];
const OUTBOX_STATES = ["pending", "delivered", "refused", "failed"];
const CHART_CHECKPOINTS = 15;
const REFRESH_MS = 60_000;
// The audit filter's choices: every action the service writes (their words are `action.*` in
// console-text.js), grouped by what comes before the first dot.
const AUDIT_ACTIONS = Object.keys(TEXT)
  .filter((key) => key.startsWith("action."))
  .map((key) => key.slice("action.".length));
// Who the audit view shows (the API's `actor_type`): staff and partners first, since reads of
// other people's data are what an audit is for; residents acting on their own data on request.
const AUDIT_ACTORS = {
  staff: ["operator", "cli", "partner"],
  all: [],
  resident: ["resident"],
  machines: ["system", "checkpoint", "feed"],
};

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  view: null,
  charts: {},
  timer: null,
  bannerTimer: null,
  audit: { stack: [], before: null, next: null },
};

// ---------------------------------------------------------------- small helpers

/** An element with text children only: data from the API never becomes markup. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const number = new Intl.NumberFormat(LOCALE);

// Dates and times in UTC+8, as common.js writes them in every language: 2026-12-07 08:17.
function isoDayHere(date) {
  return isoDay(date, { timeZone: ZONE });
}

function when(iso) {
  return iso ? isoTime(iso, { timeZone: ZONE }) : "–";
}

/** The words for a code the API uses (`prefix.code` in console-text.js); a code added to the
 * API after this page was written shows as itself, marked, rather than as nothing. */
function label(prefix, code) {
  const key = `${prefix}.${code}`;
  return key in TEXT ? t(key) : el("code", { class: "raw", title: key }, code);
}

/** The same as text only (chart labels, joined lists). */
function labelText(prefix, code) {
  const key = `${prefix}.${code}`;
  return key in TEXT ? t(key) : code;
}

function dayLabel(isoDay) {
  const [, month, day] = isoDay.split("-");
  return `${month}-${day}`;
}

function age(seconds) {
  if (seconds < 90) return t("unit.s", { n: seconds });
  if (seconds < 90 * 60) return t("unit.m", { n: Math.round(seconds / 60) });
  if (seconds < 48 * 3600) return t("unit.h", { n: Math.round(seconds / 3600) });
  return t("unit.d", { n: Math.round(seconds / 86400) });
}

function shortId(id) {
  return el("span", { class: "mono", title: id }, String(id).slice(0, 8));
}

function badge(kind, text) {
  return el("span", { class: `badge badge-${kind}` }, text);
}

function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function emptyRow(tbody, columns, text) {
  tbody.replaceChildren(el("tr", {}, el("td", { colspan: columns, class: "empty" }, text)));
}

/** A table filled from a list the API returns: a loading row first, then `rows(list)`, or one
 * row saying the list is empty or could not be read. */
async function fillTable(tbody, columns, path, emptyText, rows) {
  emptyRow(tbody, columns, t("loading"));
  let list;
  try {
    list = await call(path);
  } catch (error) {
    emptyRow(tbody, columns, "–");
    showError(error);
    return;
  }
  if (!list.length) {
    emptyRow(tbody, columns, emptyText);
    return;
  }
  tbody.replaceChildren(...rows(list));
}

// ---------------------------------------------------------------- messages

function banner(kind, title, message, code = "", fields = []) {
  clearTimeout(state.bannerTimer);
  const box = $("banner");
  box.className = `banner banner-${kind}`;
  $("banner-title").textContent = title;
  $("banner-message").textContent = message;
  $("banner-code").textContent = code;
  $("banner-code").classList.toggle("hidden", !code);
  $("banner-fields").replaceChildren(
    ...fields.map((f) => el("li", {}, el("code", {}, f.field), ` ${f.message}`)),
  );
  if (kind === "notice") state.bannerTimer = setTimeout(hideBanner, 6000);
}

function hideBanner() {
  $("banner").className = "banner hidden";
}

/** Show an API error with its message and stable code; 403 says plainly it is the role. */
function showError(error) {
  if (error instanceof ApiError) {
    const title = error.status === 403 ? t("error.forbidden") : t("error.title");
    banner("error", title, error.message, `${error.code} · HTTP ${error.status}`, error.fields);
  } else {
    banner("error", t("error.network"), String(error && error.message ? error.message : error));
  }
}

function showNotice(text) {
  banner("notice", t("notice.done"), text);
}

/** An API call as the signed-in staff member. A 401 means the token is gone: back to sign-in. */
async function call(path, options = {}) {
  try {
    return await api(path, { ...options, token: state.token });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut();
      $("signin-error").textContent = t("signin.expired");
    }
    throw error;
  }
}

/** Run an action from a button: disabled while it runs, errors shown. */
async function act(button, work) {
  if (button) button.disabled = true;
  try {
    return await work();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// ---------------------------------------------------------------- sign-in and navigation

async function signIn(token) {
  $("signin-error").textContent = "";
  let me;
  try {
    me = await api("/v1/admin/me", { token });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn();
      $("signin-error").textContent = t("signin.expired");
    } else {
      showSignIn();
      showError(error);
    }
    return;
  }
  state.token = token;
  state.me = me;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("signin-token").value = "";
  $("who-name").textContent = me.name;
  $("who-role").textContent = t(`role.${me.role}`);
  $("who-role").className = `role-badge role-${me.role}`;
  $("who").classList.remove("hidden");
  for (const link of $("tabs").querySelectorAll("a")) {
    link.classList.toggle("hidden", !VIEWS[link.dataset.view].includes(me.role));
  }
  $("tabs").classList.remove("hidden");
  route();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  stopRefresh();
  for (const chart of Object.values(state.charts)) chart.destroy();
  state.charts = {};
  $("secret-key").textContent = "";
  $("appeal-detail").replaceChildren(el("p", { class: "muted" }, t("appeal.choose")));
  $("who").classList.add("hidden");
  $("tabs").classList.add("hidden");
  history.replaceState(null, "", location.pathname + location.search);
  showSignIn();
}

function showSignIn() {
  for (const view of document.querySelectorAll(".view")) view.classList.add("hidden");
  $("view-signin").classList.remove("hidden");
  $("signin-token").focus();
}

const LOADERS = {
  dashboard: loadDashboard,
  keys: loadKeys,
  checkpoints: loadCheckpoints,
  appeals: loadAppeals,
  identity: loadAlerts,
  audit: () => loadAudit(null),
};

function route() {
  if (!state.me) return;
  let view = location.hash.slice(1);
  if (!(view in VIEWS)) view = "dashboard";
  // A view the role may not use is still shown when asked for by its address: the API answers
  // 403 and the banner says so, which is more honest than a silent redirect.
  state.view = view;
  stopRefresh();
  for (const section of document.querySelectorAll(".view")) {
    section.classList.toggle("hidden", section.id !== `view-${view}`);
  }
  for (const link of $("tabs").querySelectorAll("a")) {
    link.classList.toggle("current", link.dataset.view === view);
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  LOADERS[view]();
}

function stopRefresh() {
  clearInterval(state.timer);
  state.timer = null;
}

// ---------------------------------------------------------------- dashboard

async function loadDashboard() {
  let data;
  try {
    data = await call(`/v1/admin/stats/overview?days=${encodeURIComponent($("period").value)}`);
  } catch (error) {
    showError(error);
    return;
  }
  if (state.view !== "dashboard") return;
  $("dash-generated").textContent = t("dash.generated", { at: when(data.generated_at) });
  renderTiles(data);
  renderBatches(data.feeds.latest);
  if (typeof window.Chart !== "function") {
    banner("error", t("error.nochart"), "/static/vendor/chart/chart.umd.min.js");
    return;
  }
  renderCharts(data);
  document.body.dataset.dashboard = "ready";
  if (!state.timer) state.timer = setInterval(loadDashboard, REFRESH_MS);
}

function tile(id, value, sub, tone = "") {
  $(`tile-${id}`).className = `tile ${tone}`.trim();
  $(`tile-${id}-value`).textContent = value;
  $(`tile-${id}-sub`).textContent = sub;
}

function sumOf(list, key) {
  return list.reduce((n, item) => n + item[key], 0);
}

function renderTiles(data) {
  const people = data.people.current;
  tile(
    "people",
    number.format(people.green + people.yellow + people.red),
    t("tile.people.sub", { g: people.green, y: people.yellow, r: people.red }),
  );
  const codes = Object.fromEntries(STATUSES.map((s) => [s, sumOf(data.codes, s)]));
  tile(
    "codes",
    number.format(codes.green + codes.yellow + codes.red),
    t("tile.codes.sub", { g: codes.green, y: codes.yellow, r: codes.red }),
  );

  // Decisions (let through or not) and verdicts (did the code check out) are different
  // questions: a valid red code is a valid verdict and a denial. The server sums them over
  // every place: `scans` lists only the busiest 50, so adding it up here would fall short.
  const totals = data.scan_totals;
  const decided = Object.fromEntries(DECISIONS.map((d) => [d, totals[d]]));
  tile(
    "decisions",
    number.format(DECISIONS.reduce((n, d) => n + decided[d], 0)),
    t("tile.decisions.sub", { a: decided.allow, d: decided.deny, m: decided.manual_check }) +
      (decided.decision_unknown ? t("tile.decisions.unknown", { u: decided.decision_unknown }) : "") +
      (decided.allowed_revoked ? t("tile.decisions.revoked", { r: decided.allowed_revoked }) : ""),
  );
  const verdicts = { v: totals.valid, i: totals.invalid, c: totals.cannot_verify };
  tile("verdicts", number.format(verdicts.v + verdicts.i + verdicts.c), t("tile.verdicts.sub", verdicts));

  const batches = data.feeds.days.reduce((n, d) => n + d.batches, 0);
  const rejected = data.feeds.days.reduce((n, d) => n + d.rows_rejected, 0);
  const rows = data.feeds.days.reduce((n, d) => n + d.rows_accepted + d.rows_rejected, 0);
  tile("feeds", number.format(batches), t("tile.feeds.sub", { r: rejected, t: rows }), rejected ? "warn" : "");

  const bundle = data.trust_bundle;
  if (bundle) {
    const tone = { fresh: "ok", aging: "warn", expired: "danger" }[bundle.freshness];
    tile(
      "bundle",
      `v${bundle.version}`,
      t("tile.bundle.sub", { age: age(bundle.age_seconds), state: t(`fresh.${bundle.freshness}`) }),
      tone,
    );
    $("tile-bundle").title = `${when(bundle.issued_at)} → ${when(bundle.expires_at)}`;
  } else {
    tile("bundle", "–", t("tile.bundle.none"), "warn");
  }

  const outbox = data.outbox;
  tile(
    "circuits",
    number.format(outbox.circuits_open),
    t("tile.circuits.sub", { n: outbox.partners.length }),
    outbox.circuits_open ? "danger" : "ok",
  );
  tile(
    "outbox",
    number.format(outbox.states.pending),
    t("tile.outbox.sub", { p: outbox.states.pending, f: outbox.states.failed }),
    outbox.states.failed ? "warn" : "",
  );
}

function renderBatches(latest) {
  const body = $("batches-body");
  if (!latest.length) {
    emptyRow(body, 6, t("none"));
    return;
  }
  body.replaceChildren(
    ...latest.map((b) =>
      el(
        "tr",
        {},
        el("td", { class: "nowrap" }, when(b.received_at)),
        el("td", {}, label("feed", b.kind)),
        el("td", {}, b.client),
        el("td", { class: "num" }, number.format(b.rows_total)),
        el("td", { class: "num" }, number.format(b.rows_accepted)),
        el(
          "td",
          { class: b.rows_rejected ? "num bad" : "num" },
          number.format(b.rows_rejected) + (b.errors_truncated ? "+" : ""),
        ),
      ),
    ),
  );
}

function chartDefaults() {
  const Chart = window.Chart;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = cssColor("--muted");
  Chart.defaults.borderColor = cssColor("--line");
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.position = "bottom";
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
  // Legends in the order the series are listed, not in their drawing order.
  Chart.defaults.plugins.legend.labels.sort = (a, b) => a.datasetIndex - b.datasetIndex;
  if (matchMedia("(prefers-reduced-motion: reduce)").matches) Chart.defaults.animation = false;
}

/** Draw a chart, or give an existing one new data (no flicker on the minute refresh). */
function draw(id, config) {
  const existing = state.charts[id];
  if (existing) {
    existing.data = config.data;
    existing.options = config.options;
    existing.update();
    return;
  }
  state.charts[id] = new window.Chart($(id), config);
}

function renderCharts(data) {
  if (!state.chartsReady) {
    chartDefaults();
    state.chartsReady = true;
  }
  const labels = data.codes.map((d) => dayLabel(d.day));
  const integer = { beginAtZero: true, ticks: { precision: 0 } };

  // Stacked: a bar is everyone with a status that day, its colours who was which.
  draw("chart-people", {
    type: "bar",
    data: {
      labels: data.people.days.map((d) => dayLabel(d.day)),
      datasets: STATUSES.map((s) => ({
        label: t(`status.${s}`),
        data: data.people.days.map((d) => d[s]),
        backgroundColor: cssColor(`--${s}`),
        borderRadius: 2,
        stack: "people",
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, ...integer } },
    },
  });

  draw("chart-codes", {
    type: "bar",
    data: {
      labels,
      datasets: STATUSES.map((s) => ({
        label: t(`status.${s}`),
        data: data.codes.map((d) => d[s]),
        backgroundColor: cssColor(`--${s}`),
        borderRadius: 2,
        stack: "codes",
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, ...integer } },
    },
  });

  const places = data.scans.slice(0, CHART_CHECKPOINTS);
  $("chart-scans-empty").classList.toggle("hidden", places.length > 0);
  const more = places.length < data.scan_totals.places;
  $("chart-scans-more").classList.toggle("hidden", !more);
  $("chart-scans-more").textContent = more
    ? t("chart.scans.more", { shown: places.length, places: number.format(data.scan_totals.places) })
    : "";
  // One bar group per place: the box grows with the number of places, so names stay readable.
  $("chart-scans").parentElement.style.height = `${Math.max(260, 70 + places.length * 44)}px`;
  draw("chart-scans", {
    type: "bar",
    data: {
      labels: places.map((p) => `${p.name} · ${t(`kind.${p.kind}`)}`),
      datasets: [
        { key: "allow", color: "--green" },
        { key: "manual_check", color: "--yellow" },
        { key: "deny", color: "--red" },
        { key: "decision_unknown", color: "--grey" },
        { key: "allowed_revoked", color: "--ink" },
      ]
        // A series no place has only leaves gaps in the bars.
        .filter(({ key }) => key === "allow" || key === "deny" || places.some((p) => p[key]))
        .map(({ key, color }) => ({
          label: t(`decision.${key}`),
          data: places.map((p) => p[key]),
          backgroundColor: cssColor(color),
          borderRadius: 2,
          stack: "decisions",
        })),
    },
    options: {
      indexAxis: "y",
      interaction: { mode: "index", intersect: false },
      scales: { x: { stacked: true, ...integer }, y: { stacked: true, grid: { display: false } } },
    },
  });

  draw("chart-feeds", {
    type: "bar",
    data: {
      labels,
      datasets: [
        {
          type: "bar",
          label: t("series.batches"),
          data: data.feeds.days.map((d) => d.batches),
          backgroundColor: cssColor("--accent"),
          borderRadius: 2,
          yAxisID: "y",
          order: 2,
        },
        {
          type: "line",
          label: t("series.rejected"),
          data: data.feeds.days.map((d) => d.rows_rejected),
          borderColor: cssColor("--red"),
          backgroundColor: cssColor("--red"),
          pointRadius: 3,
          // Monotone: a smoothed line must not swing below zero or above the real count.
          cubicInterpolationMode: "monotone",
          yAxisID: "y1",
          order: 1,
        },
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { grid: { display: false } },
        y: { ...integer, position: "left", title: { display: true, text: t("series.batches") } },
        y1: {
          ...integer,
          position: "right",
          grid: { drawOnChartArea: false },
          title: { display: true, text: t("series.rejected") },
        },
      },
    },
  });

  const counts = OUTBOX_STATES.map((s) => data.outbox.states[s] ?? 0);
  $("chart-outbox-empty").classList.toggle("hidden", counts.some((n) => n > 0));
  draw("chart-outbox", {
    type: "doughnut",
    data: {
      labels: OUTBOX_STATES.map((s) => t(`outbox.${s}`)),
      datasets: [
        {
          data: counts,
          backgroundColor: ["--yellow", "--green", "--grey", "--red"].map(cssColor),
          borderWidth: 2,
        },
      ],
    },
    options: { cutout: "62%", plugins: { legend: { position: "right" } } },
  });
}

// ---------------------------------------------------------------- signing keys

function loadKeys() {
  return fillTable($("keys-body"), 8, "/v1/admin/keys", t("none"), (keys) => keys.slice().reverse().map(keyRow));
}

function keyRow(key) {
  const actions = el("td", { class: "actions" });
  const button = (label, kind, handler) =>
    el("button", { type: "button", class: `small ${kind}`, onclick: (e) => handler(e.currentTarget) }, label);
  if (key.state === "pending") actions.append(button(t("keys.activate"), "", (b) => keyAction(b, key, "activate")));
  if (key.state === "pending" || key.state === "active") {
    actions.append(button(t("keys.retire"), "secondary", (b) => keyAction(b, key, "retire")));
  }
  if (key.state !== "compromised") {
    actions.append(button(t("keys.compromise"), "danger", (b) => keyAction(b, key, "compromise")));
  }
  const tone = { pending: "warn", active: "ok", retired: "muted", compromised: "danger" }[key.state];
  return el(
    "tr",
    {},
    el("td", {}, el("code", { title: key.kid }, key.kid)),
    el("td", {}, key.alg),
    el("td", {}, badge(tone, t(`key.${key.state}`))),
    el("td", { class: "nowrap" }, when(key.created_at)),
    el("td", { class: "nowrap" }, when(key.activated_at)),
    el("td", { class: "nowrap" }, when(key.retired_at)),
    el("td", { class: "nowrap" }, when(key.not_after)),
    actions,
  );
}

async function keyAction(button, key, action) {
  if (action === "retire" && !confirm(t("keys.confirm.retire", { kid: key.kid }))) return;
  if (action === "compromise" && !confirm(t("keys.confirm.compromise", { kid: key.kid }))) return;
  const path = `/v1/admin/keys/${encodeURIComponent(key.kid)}/${action === "activate" ? "activate" : "retire"}`;
  const body = action === "activate" ? undefined : { compromised: action === "compromise" };
  const done = await act(button, () => call(path, { method: "POST", body }));
  if (done) {
    showNotice(`${done.kid}: ${t(`key.${done.state}`)}`);
    loadKeys();
  }
}

async function generateKey(event) {
  event.preventDefault();
  const alg = $("key-alg").value;
  const button = event.submitter || $("key-generate").querySelector("button");
  const done = await act(button, () =>
    call("/v1/admin/keys", { method: "POST", body: alg ? { alg } : {} }),
  );
  if (done) {
    showNotice(t("keys.generated", { kid: done.kid }));
    loadKeys();
  }
}

// ---------------------------------------------------------------- checkpoints

function loadCheckpoints() {
  return fillTable($("cp-body"), 7, "/v1/admin/checkpoints", t("none"), (places) => places.slice().reverse().map(checkpointRow));
}

function checkpointRow(place) {
  const actions = el("td", { class: "actions" });
  if (place.enabled) {
    actions.append(
      el("button", { type: "button", class: "small secondary", onclick: (e) => rotate(e.currentTarget, place) }, t("cp.rotate")),
      el("button", { type: "button", class: "small danger", onclick: (e) => disable(e.currentTarget, place) }, t("cp.disable")),
    );
  }
  const region = place.region_code
    ? el("span", { title: place.region_name || "" }, el("code", {}, place.region_code), place.region_name ? ` ${place.region_name}` : "")
    : "–";
  return el(
    "tr",
    { class: place.enabled ? "" : "disabled-row", dataset: { id: place.id } },
    el("td", {}, place.name),
    el("td", {}, t(`kind.${place.kind}`)),
    el("td", {}, region),
    el("td", {}, badge(place.enabled ? "ok" : "muted", t(place.enabled ? "cp.enabled" : "cp.disabled"))),
    el("td", { class: "nowrap" }, when(place.created_at)),
    el("td", { class: "nowrap" }, place.last_scan_at ? when(place.last_scan_at) : t("cp.never")),
    actions,
  );
}

function showSecret(created, how) {
  $("secret-title").textContent = t(`cp.secret.${how}`, { name: created.name });
  $("secret-key").textContent = created.api_key;
  $("secret-copy").textContent = t("copy");
  $("secret").classList.remove("hidden");
  $("secret").scrollIntoView({ block: "nearest" });
}

function hideSecret() {
  // Out of the page as well as out of sight: it is shown once.
  $("secret-key").textContent = "";
  $("secret").classList.add("hidden");
}

async function copySecret() {
  const text = $("secret-key").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard permission (an embedded browser, an insecure origin): select it instead.
    const range = document.createRange();
    range.selectNodeContents($("secret-key"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  $("secret-copy").textContent = t("copied");
}

async function createCheckpoint(event) {
  event.preventDefault();
  const name = $("cp-name").value.trim();
  const region = $("cp-region").value.trim();
  $("cp-error").textContent = "";
  if (!name) {
    $("cp-error").textContent = t("cp.name.required");
    return;
  }
  if (region && !/^[0-9]{6}$/.test(region)) {
    $("cp-error").textContent = `${t("cp.region")}: ${t("cp.region.format")}`;
    return;
  }
  const body = { name, kind: $("cp-kind").value };
  if (region) body.region_code = region;
  const button = event.submitter || $("cp-create").querySelector("button");
  const created = await act(button, async () => {
    try {
      return await call("/v1/admin/checkpoints", { method: "POST", body });
    } catch (error) {
      if (error instanceof ApiError && error.fields.length) {
        $("cp-error").textContent = error.fields.map((f) => `${f.field}: ${f.message}`).join("; ");
      }
      throw error;
    }
  });
  if (created) {
    $("cp-create").reset();
    showSecret(created, "created");
    loadCheckpoints();
  }
}

async function rotate(button, place) {
  if (!confirm(t("cp.confirm.rotate", { name: place.name }))) return;
  const rotated = await act(button, () =>
    call(`/v1/admin/checkpoints/${place.id}/rotate-key`, { method: "POST" }),
  );
  if (rotated) {
    showSecret(rotated, "rotated");
    loadCheckpoints();
  }
}

async function disable(button, place) {
  if (!confirm(t("cp.confirm.disable", { name: place.name }))) return;
  const done = await act(button, async () => {
    await call(`/v1/admin/checkpoints/${place.id}/disable`, { method: "POST" });
    return true;
  });
  if (done) {
    showNotice(`${place.name}: ${t("cp.disabled")}`);
    loadCheckpoints();
  }
}

// ---------------------------------------------------------------- appeals

function loadAppeals() {
  const path = `/v1/admin/appeals?state=${encodeURIComponent($("appeal-state").value)}`;
  return fillTable($("appeals-body"), 5, path, t("appeal.empty"), (appeals) => appeals.map(appealRow));
}

function appealRow(a) {
  return el(
    "tr",
    { dataset: { id: a.id } },
    el("td", { class: "nowrap" }, when(a.filed_at)),
    el("td", {}, badge(a.status_at_filing, t(`status.${a.status_at_filing}`))),
    el("td", {}, a.reason_codes.map((code) => el("span", { class: "reason" }, label("reason", code)))),
    el("td", {}, t(`appeal.${a.state}`)),
    el(
      "td",
      { class: "actions" },
      el("button", { type: "button", class: "small", onclick: (e) => openAppeal(e.currentTarget, a.id) }, t("appeal.open")),
    ),
  );
}

async function openAppeal(button, id) {
  const appeal = await act(button, () => call(`/v1/admin/appeals/${id}`));
  if (appeal) renderAppeal(appeal, true);
}

function renderAppeal(appeal, audited) {
  const box = $("appeal-detail");
  const reasons = appeal.reason_codes.map((code) => labelText("reason", code)).join(LANG.startsWith("zh") ? "、" : ", ") || t("none");
  const parts = [
    el("h3", {}, t("appeal.title"), " ", badge(appeal.status_at_filing, t(`status.${appeal.status_at_filing}`))),
    el("p", { class: "muted" }, t("appeal.filedas", { status: t(`status.${appeal.status_at_filing}`), reasons })),
    el("dl", { class: "facts" },
      el("dt", {}, t("col.filed")), el("dd", {}, when(appeal.filed_at)),
      el("dt", {}, t("appeal.resident")), el("dd", {}, el("code", {}, appeal.resident_id)),
    ),
  ];
  if (appeal.text !== undefined) {
    parts.push(
      el("h4", {}, t("appeal.text")),
      el("blockquote", { class: "appeal-text" }, appeal.text),
    );
    if (audited) parts.push(el("p", { class: "muted small-print" }, t("appeal.audited")));
  }
  if (appeal.state === "pending") {
    parts.push(decisionForm(appeal));
  } else {
    parts.push(
      el("p", { class: "decided" }, t("appeal.decided", { state: t(`appeal.${appeal.state}`), reason: appeal.decision_reason || "" })),
    );
    if (appeal.override_status) {
      parts.push(
        el("p", {}, t("appeal.override", { status: t(`status.${appeal.override_status}`), at: when(appeal.override_expires_at) })),
      );
    }
  }
  box.replaceChildren(...parts);
}

function decisionForm(appeal) {
  const status = el("select", { id: "decision-status" },
    el("option", { value: "green" }, t("status.green")),
    el("option", { value: "yellow" }, t("status.yellow")),
  );
  const days = el("input", { id: "decision-days", type: "number", min: 1, max: 90, value: 14, inputmode: "numeric" });
  const until = el("p", { class: "muted small-print", id: "decision-until" });
  const showUntil = () => {
    const n = Number(days.value);
    until.textContent = Number.isInteger(n) && n >= 1 && n <= 90
      ? t("appeal.until", { at: isoDayHere(new Date(Date.now() + n * 86_400_000)) })
      : t("appeal.days");
  };
  days.addEventListener("input", showUntil);
  showUntil();
  const reason = el("textarea", { id: "decision-reason", rows: 3, maxlength: 500 });
  const error = el("div", { class: "field-error", id: "decision-error" });
  const decide = async (button, decision) => {
    error.textContent = "";
    const text = reason.value.trim();
    if (text.length < 3) {
      error.textContent = t("appeal.reason.required");
      reason.focus();
      return;
    }
    const body = { decision, reason: text };
    if (decision === "accept") {
      body.status = status.value;
      body.valid_days = Number(days.value);
    }
    const done = await act(button, () =>
      call(`/v1/admin/appeals/${appeal.id}/decision`, { method: "POST", body }),
    );
    if (done) {
      showNotice(t(`appeal.done.${decision}`));
      renderAppeal({ ...appeal, ...done }, false);
      loadAppeals();
    }
  };
  return el("form", { class: "decision", novalidate: true, onsubmit: (e) => e.preventDefault() },
    el("label", { for: "decision-reason" }, t("appeal.reason")),
    reason,
    error,
    el("div", { class: "decision-grid" },
      el("div", {}, el("label", { for: "decision-status" }, t("appeal.give")), status),
      el("div", {}, el("label", { for: "decision-days" }, t("appeal.days")), days),
    ),
    until,
    el("div", { class: "row decision-buttons" },
      el("button", { type: "button", id: "decision-accept", class: "accept", onclick: (e) => decide(e.currentTarget, "accept") }, t("appeal.accept")),
      el("button", { type: "button", id: "decision-reject", class: "danger", onclick: (e) => decide(e.currentTarget, "reject") }, t("appeal.reject")),
    ),
  );
}

// ---------------------------------------------------------------- identity (身份核验)

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function assuranceWords(stored) {
  const level = String(stored || "").startsWith("partner:") ? "partner" : stored;
  return `assurance.${level}` in TEXT ? t(`assurance.${level}`) : stored;
}

/** An error's words for a form's own line: ours for the codes we know, else the API's message;
 * field messages after it. The banner shows the same error with its code. */
function formError(error) {
  if (!(error instanceof ApiError)) return t("error.network");
  const words = `id.error.${error.code}` in TEXT ? t(`id.error.${error.code}`) : error.message;
  const fields = error.fields.map((f) => `${f.field}: ${f.message}`).join("; ");
  return fields && words !== error.message ? `${words} (${fields})` : fields || words;
}

function loadAlerts() {
  return fillTable($("alerts-body"), 6, "/v1/admin/identity/alerts", t("id.alerts.empty"), (alerts) =>
    alerts.map((a) =>
      el(
        "tr",
        {},
        el("td", { class: "nowrap" }, t(`doc.${a.doc_type}`)),
        el("td", {}, el("code", {}, a.masked_doc_number)),
        el("td", { class: "num bad" }, number.format(a.failures)),
        el("td", { class: "num" }, number.format(a.accounts)),
        el("td", { class: "nowrap" }, when(a.first_at)),
        el("td", { class: "nowrap" }, when(a.last_at)),
      ),
    ),
  );
}

async function counterProof(event) {
  event.preventDefault();
  const error = $("counter-error");
  error.textContent = "";
  $("counter-result").classList.add("hidden");
  const body = {
    name: $("counter-name").value.trim(),
    doc_type: $("counter-doc-type").value,
    doc_number: $("counter-doc-number").value.trim(),
    birth_date: $("counter-birth").value,
    reason: $("counter-reason").value.trim(),
  };
  const phone = $("counter-phone").value.replace(/[\s-]/g, "");
  if (phone) body.phone = /^1[3-9]\d{9}$/.test(phone) ? `+86${phone}` : phone;
  const missing = [
    [!body.name, "counter-name", t("id.required")],
    [!body.doc_number, "counter-doc-number", t("id.required")],
    [!body.birth_date, "counter-birth", t("id.required")],
    [body.reason.length < 3, "counter-reason", t("id.reason.required")],
    [!$("counter-seen").checked, "counter-seen", t("id.counter.seen.required")],
  ].find(([wrong]) => wrong);
  if (missing) {
    error.textContent = missing[2];
    $(missing[1]).focus();
    return;
  }
  body.document_seen = true;
  const button = event.submitter || $("counter-submit");
  const done = await act(button, async () => {
    try {
      return await call("/v1/admin/identity/counter", { method: "POST", body });
    } catch (failure) {
      error.textContent = formError(failure);
      throw failure;
    }
  });
  if (!done) return;
  // What was typed leaves the page; the answer holds only masked values.
  $("counter-form").reset();
  const identity = done.identity;
  const account = !phone ? t("id.result.nophone") : t(done.new_account ? "id.result.new" : "id.result.existing");
  const result = $("counter-result");
  result.replaceChildren(
    el("h4", {}, t("id.counter.done", { name: identity.masked_name })),
    el("dl", { class: "facts" },
      el("dt", {}, t("id.result.identity")),
      el("dd", {}, `${identity.masked_name} · ${t(`doc.${identity.doc_type}`)} `, el("code", {}, identity.masked_doc_number)),
      el("dt", {}, t("id.result.assurance")),
      el("dd", {}, badge("ok", assuranceWords(identity.assurance))),
      el("dt", {}, t("id.result.account")),
      el("dd", {}, account),
      el("dt", {}, t("id.result.resident")),
      el("dd", {}, el("code", { class: "resident-id" }, done.resident_id)),
    ),
    ...(done.reclaimed ? [el("p", { class: "bad" }, t("id.result.reclaimed"))] : []),
  );
  result.dataset.assurance = identity.assurance;
  result.classList.remove("hidden");
  showNotice(t("id.counter.done", { name: identity.masked_name }));
}

/** The arrangement id typed in the consent form, or null with the error shown. */
function arrangementId() {
  const id = $("consent-id").value.trim();
  if (!UUID.test(id)) {
    $("consent-error").textContent = t("id.consent.format");
    $("consent-id").focus();
    return null;
  }
  return id.toLowerCase();
}

async function counterConsent(event) {
  event.preventDefault();
  $("consent-error").textContent = "";
  $("consent-result").classList.add("hidden");
  const id = arrangementId();
  if (!id) return;
  const reason = $("consent-reason").value.trim();
  if (reason.length < 3) {
    $("consent-error").textContent = t("id.reason.required");
    $("consent-reason").focus();
    return;
  }
  const button = event.submitter || $("consent-submit");
  const done = await act(button, async () => {
    try {
      return await call(`/v1/admin/dependants/${encodeURIComponent(id)}/consent`, { method: "POST", body: { reason } });
    } catch (failure) {
      $("consent-error").textContent = formError(failure);
      throw failure;
    }
  });
  if (!done) return;
  $("consent-form").reset();
  const relationship = t(`rel.${done.relationship}`);
  const result = $("consent-result");
  result.replaceChildren(
    el("h4", {}, t("id.consent.done", { name: done.masked_name, relationship })),
    el("p", {}, badge(done.state === "active" ? "ok" : "warn", t(`dep.state.${done.state}`)), " ", shortId(done.id)),
  );
  result.dataset.state = done.state;
  result.classList.remove("hidden");
  showNotice(t("id.consent.done", { name: done.masked_name, relationship }));
}

async function counterEnd(event) {
  $("consent-error").textContent = "";
  $("consent-result").classList.add("hidden");
  const id = arrangementId();
  if (!id || !confirm(t("id.consent.confirm.end", { id }))) return;
  const done = await act(event.currentTarget, async () => {
    try {
      await call(`/v1/admin/dependants/${encodeURIComponent(id)}`, { method: "DELETE" });
      return true;
    } catch (failure) {
      $("consent-error").textContent = formError(failure);
      throw failure;
    }
  });
  if (done) {
    $("consent-form").reset();
    showNotice(`${t("id.consent.ended")} · ${id.slice(0, 8)}`);
  }
}

// ---------------------------------------------------------------- audit log

async function loadAudit(before) {
  const action = $("audit-action").value;
  if (before === null) state.audit.stack = [];
  const query = new URLSearchParams({ limit: $("audit-limit").value });
  if (action) query.set("action", action);
  for (const kind of AUDIT_ACTORS[$("audit-actors").value] || []) query.append("actor_type", kind);
  if (before !== null) query.set("before_id", String(before));
  const body = $("audit-body");
  let page;
  try {
    page = await call(`/v1/admin/audit?${query}`);
  } catch (error) {
    emptyRow(body, 6, "–");
    showError(error);
    return;
  }
  state.audit.before = before;
  state.audit.next = page.next_before_id;
  $("audit-newer").disabled = state.audit.stack.length === 0;
  $("audit-older").disabled = page.next_before_id === null;
  $("audit-page").textContent = t("audit.page", { n: state.audit.stack.length + 1 });
  if (!page.events.length) {
    emptyRow(body, 6, t("audit.empty"));
    return;
  }
  body.replaceChildren(...page.events.map(auditRow));
}

function auditRow(e) {
  const detail = JSON.stringify(e.detail);
  const shown = detail.length > 240 ? `${detail.slice(0, 240)}…` : detail;
  // The detail is the record as stored, for whoever needs it; it stays folded, under a name.
  const raw = detail === "{}"
    ? ""
    : el("details", {}, el("summary", {}, t("audit.raw")), el("code", { title: detail }, shown));
  return el(
    "tr",
    { dataset: { action: e.action, actor: e.actor_type } },
    el("td", { class: "num mono" }, e.id),
    el("td", { class: "nowrap" }, when(e.at)),
    el("td", { class: "nowrap" }, label("actor", e.actor_type), " ", shortId(e.actor_id)),
    el("td", {}, el("span", { title: e.action }, label("action", e.action))),
    el("td", { class: "nowrap" }, label("subject", e.subject_type), " ", shortId(e.subject_id)),
    el("td", { class: "detail" }, auditNote(e.detail), raw),
  );
}

/** The words a person typed into the event, if any (a case reference, a reason, a name): what
 * a reader of the log looks for first. Codes in the detail stay in the folded raw record. */
function auditNote(detail) {
  const note = ["case_reference", "reason", "name"].map((key) => detail[key]).find((v) => typeof v === "string" && v);
  return note ? el("span", { class: "audit-note" }, note.length > 80 ? `${note.slice(0, 80)}…` : note) : "";
}

function auditActionChoices() {
  const groups = new Map();
  for (const action of AUDIT_ACTIONS) {
    const group = action.split(".")[0];
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(action);
  }
  const choices = [el("option", { value: "" }, t("audit.action.all"))];
  for (const [group, actions] of groups) {
    const name = labelText("group", group);
    choices.push(
      el(
        "optgroup",
        { label: name },
        el("option", { value: `${group}.` }, t("audit.action.group", { group: name })),
        ...actions.map((a) => el("option", { value: a }, t(`action.${a}`))),
      ),
    );
  }
  $("audit-action").replaceChildren(...choices);
}

function olderAudit() {
  if (state.audit.next === null) return;
  state.audit.stack.push(state.audit.before);
  loadAudit(state.audit.next);
}

function newerAudit() {
  if (!state.audit.stack.length) return;
  const before = state.audit.stack.pop();
  // loadAudit(null) clears the stack; going back to the first page keeps it empty anyway.
  loadAudit(before);
}

// ---------------------------------------------------------------- start

function start() {
  translatePage(t);
  languageSwitcher($("langs"));
  for (const option of $("period").options) option.textContent = t("dash.days", { n: option.value });
  for (const id of ["chart-people", "chart-codes", "chart-scans", "chart-feeds", "chart-outbox"]) {
    $(id).setAttribute("aria-label", $(id).closest("figure").querySelector("figcaption").textContent);
  }
  auditActionChoices();

  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("signin-token").value.trim();
    if (!token) {
      $("signin-error").textContent = t("signin.empty");
      return;
    }
    signIn(token);
  });
  $("sign-out").addEventListener("click", () => {
    hideBanner();
    signOut();
  });
  $("banner-close").addEventListener("click", hideBanner);
  $("period").addEventListener("change", loadDashboard);
  $("refresh").addEventListener("click", loadDashboard);
  $("key-generate").addEventListener("submit", generateKey);
  $("cp-create").addEventListener("submit", createCheckpoint);
  $("secret-copy").addEventListener("click", copySecret);
  $("secret-done").addEventListener("click", hideSecret);
  $("appeal-state").addEventListener("change", loadAppeals);
  $("appeals-refresh").addEventListener("click", loadAppeals);
  $("alerts-refresh").addEventListener("click", loadAlerts);
  $("counter-form").addEventListener("submit", counterProof);
  $("consent-form").addEventListener("submit", counterConsent);
  $("consent-end").addEventListener("click", counterEnd);
  $("audit-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit(null);
  });
  $("audit-older").addEventListener("click", olderAudit);
  $("audit-newer").addEventListener("click", newerAudit);
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopRefresh();
    else if (state.view === "dashboard" && state.me) loadDashboard();
  });

  if (state.token) signIn(state.token);
  else showSignIn();
}

start();
