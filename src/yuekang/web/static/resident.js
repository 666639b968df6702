// The resident's page: sign in, bind an identity, show the code, contest a status, convert to a
// Macao code. Everything goes through the same JSON API as any other client.
import {
  ApiError,
  api,
  idempotencyKey,
  language,
  languageSwitcher,
  translatePage,
  translator,
} from "/static/app/common.js";

const TEXT = {
  title: { "zh-Hans": "粤康码", "zh-Hant": "粵康碼", en: "Yuekang Health Code", pt: "Código de Saúde de Guangdong" },
  "signin.title": { "zh-Hans": "手机号登录", "zh-Hant": "手機號碼登入", en: "Sign in with your phone", pt: "Entrar com o telemóvel" },
  "signin.phone": { "zh-Hans": "手机号码", "zh-Hant": "手機號碼", en: "Phone number", pt: "Número de telemóvel" },
  "signin.send": { "zh-Hans": "获取验证码", "zh-Hant": "取得驗證碼", en: "Send code", pt: "Enviar código" },
  "signin.code": { "zh-Hans": "短信验证码", "zh-Hant": "短訊驗證碼", en: "Code from the SMS", pt: "Código do SMS" },
  "signin.verify": { "zh-Hans": "登录", "zh-Hant": "登入", en: "Sign in", pt: "Entrar" },
  "signin.dev": { "zh-Hans": "开发环境验证码：{code}", "zh-Hant": "開發環境驗證碼：{code}", en: "Development code: {code}", pt: "Código de desenvolvimento: {code}" },
  "bind.title": { "zh-Hans": "实名认证", "zh-Hant": "實名認證", en: "Your identity document", pt: "O seu documento de identificação" },
  "bind.note": { "zh-Hans": "证件信息加密保存，健康码上只显示打码姓名。", "zh-Hant": "證件資料加密保存，健康碼上只顯示遮蔽姓名。", en: "Stored encrypted; your code shows only a masked name.", pt: "Guardado cifrado; o código mostra apenas o nome mascarado." },
  "bind.name": { "zh-Hans": "姓名", "zh-Hant": "姓名", en: "Full name", pt: "Nome completo" },
  "bind.doc_type": { "zh-Hans": "证件类型", "zh-Hant": "證件類型", en: "Document", pt: "Documento" },
  "bind.doc_number": { "zh-Hans": "证件号码", "zh-Hant": "證件號碼", en: "Document number", pt: "Número do documento" },
  "bind.birth_date": { "zh-Hans": "出生日期", "zh-Hant": "出生日期", en: "Date of birth", pt: "Data de nascimento" },
  "bind.submit": { "zh-Hans": "提交", "zh-Hant": "提交", en: "Confirm", pt: "Confirmar" },
  "doc.prc_id": { "zh-Hans": "居民身份证", "zh-Hant": "居民身份證", en: "PRC resident ID", pt: "BI da RPC" },
  "doc.residence_permit": { "zh-Hans": "港澳台居民居住证", "zh-Hant": "港澳台居民居住證", en: "HK/Macao/Taiwan residence permit", pt: "Autorização de residência (HK/Macau/Taiwan)" },
  "doc.hk_macao_permit": { "zh-Hans": "港澳居民来往内地通行证", "zh-Hant": "港澳居民來往內地通行證", en: "Mainland Travel Permit (HK/Macao)", pt: "Salvo-conduto para o Interior" },
  "doc.macao_id": { "zh-Hans": "澳门居民身份证", "zh-Hant": "澳門居民身份證", en: "Macao resident ID", pt: "BIR de Macau" },
  "doc.hkid": { "zh-Hans": "香港身份证", "zh-Hant": "香港身份證", en: "HKID", pt: "BI de Hong Kong" },
  "doc.passport": { "zh-Hans": "护照", "zh-Hant": "護照", en: "Passport", pt: "Passaporte" },
  "status.green": { "zh-Hans": "绿码", "zh-Hant": "綠碼", en: "Green", pt: "Verde" },
  "status.yellow": { "zh-Hans": "黄码", "zh-Hant": "黃碼", en: "Yellow", pt: "Amarelo" },
  "status.red": { "zh-Hans": "红码", "zh-Hant": "紅碼", en: "Red", pt: "Vermelho" },
  "status.why": { "zh-Hans": "赋码原因", "zh-Hant": "賦碼原因", en: "Why this colour", pt: "Porquê esta cor" },
  "status.until": { "zh-Hans": "无新信息时，此结论有效至 {when}", "zh-Hant": "無新資料時，此結論有效至 {when}", en: "Without new information this holds until {when}", pt: "Sem novas informações, válido até {when}" },
  "tile.nat": { "zh-Hans": "核酸检测", "zh-Hant": "核酸檢測", en: "Nucleic-acid test", pt: "Teste de ácido nucleico" },
  "tile.vaccine": { "zh-Hans": "疫苗接种", "zh-Hant": "疫苗接種", en: "Vaccination", pt: "Vacinação" },
  "nat.none": { "zh-Hans": "暂无记录", "zh-Hant": "暫無記錄", en: "No record", pt: "Sem registo" },
  "nat.negative": { "zh-Hans": "{hours}小时内阴性", "zh-Hant": "{hours}小時內陰性", en: "Negative within {hours} h", pt: "Negativo em {hours} h" },
  "nat.older": { "zh-Hans": "阴性（{date}）", "zh-Hant": "陰性（{date}）", en: "Negative ({date})", pt: "Negativo ({date})" },
  "nat.positive": { "zh-Hans": "阳性（{date}）", "zh-Hant": "陽性（{date}）", en: "Positive ({date})", pt: "Positivo ({date})" },
  "vx.none": { "zh-Hans": "未接种", "zh-Hant": "未接種", en: "None", pt: "Nenhuma" },
  "vx.doses": { "zh-Hans": "已接种{doses}剂", "zh-Hant": "已接種{doses}劑", en: "{doses} dose(s)", pt: "{doses} dose(s)" },
  "code.expires": { "zh-Hans": "有效至 {time}，到期前自动刷新", "zh-Hant": "有效至 {time}，到期前自動更新", en: "Valid until {time}; renews itself before then", pt: "Válido até {time}; renova-se antes" },
  "code.converted": { "zh-Hans": "由澳门健康码转换", "zh-Hant": "由澳門健康碼轉換", en: "Converted from a Macao health code", pt: "Convertido do código de saúde de Macau" },
  "appeal.open": { "zh-Hans": "对赋码有异议？申诉", "zh-Hant": "對賦碼有異議？申訴", en: "Think this is wrong? Appeal", pt: "Discorda? Recorrer" },
  "appeal.title": { "zh-Hans": "申诉", "zh-Hant": "申訴", en: "Appeal", pt: "Recurso" },
  "appeal.text": { "zh-Hans": "请说明原因", "zh-Hant": "請說明原因", en: "Tell us why", pt: "Explique porquê" },
  "appeal.submit": { "zh-Hans": "提交申诉", "zh-Hant": "提交申訴", en: "Send appeal", pt: "Enviar recurso" },
  "appeal.pending": { "zh-Hans": "审核中（{when} 提交）", "zh-Hant": "審核中（{when} 提交）", en: "Being reviewed (sent {when})", pt: "Em análise (enviado {when})" },
  "appeal.accepted": { "zh-Hans": "已受理：{reason}", "zh-Hant": "已受理：{reason}", en: "Accepted: {reason}", pt: "Aceite: {reason}" },
  "appeal.rejected": { "zh-Hans": "未通过：{reason}", "zh-Hant": "未通過：{reason}", en: "Not accepted: {reason}", pt: "Não aceite: {reason}" },
  "macao.title": { "zh-Hans": "粤澳互认", "zh-Hant": "粵澳互認", en: "Going to Macao", pt: "Ir a Macau" },
  "macao.note": { "zh-Hans": "绿码可转换为澳门健康码（需本人同意）。", "zh-Hant": "綠碼可轉換為澳門健康碼（須本人同意）。", en: "A green code can become a Macao health code, with your consent.", pt: "Um código verde pode ser convertido no código de Macau, com o seu consentimento." },
  "macao.open": { "zh-Hans": "转换为澳门健康码", "zh-Hant": "轉換為澳門健康碼", en: "Convert to a Macao code", pt: "Converter para o código de Macau" },
  "macao.consent": { "zh-Hans": "个人信息跨境提供同意书", "zh-Hant": "個人資料跨境提供同意書", en: "Consent to send your data", pt: "Consentimento para o envio de dados" },
  "macao.recipient": { "zh-Hans": "接收方：{name}", "zh-Hant": "接收方：{name}", en: "Recipient: {name}", pt: "Destinatário: {name}" },
  "macao.agree": { "zh-Hans": "同意并转换", "zh-Hant": "同意並轉換", en: "I agree: convert", pt: "Concordo: converter" },
  "macao.cancel": { "zh-Hans": "取消", "zh-Hant": "取消", en: "Cancel", pt: "Cancelar" },
  "macao.result": { "zh-Hans": "澳门健康码", "zh-Hant": "澳門健康碼", en: "Macao health code", pt: "Código de saúde de Macau" },
  "macao.unavailable": { "zh-Hans": "暂不可用", "zh-Hant": "暫不可用", en: "Not available now", pt: "Indisponível de momento" },
  "macao.state.queued": { "zh-Hans": "已提交，等待澳门系统处理…", "zh-Hant": "已提交，等待澳門系統處理…", en: "Sent; waiting for Macao…", pt: "Enviado; a aguardar Macau…" },
  "macao.state.delivering": { "zh-Hans": "正在发送…", "zh-Hant": "正在傳送…", en: "Sending…", pt: "A enviar…" },
  "macao.state.delivered": { "zh-Hans": "已生成澳门健康码", "zh-Hant": "已產生澳門健康碼", en: "Your Macao code is ready", pt: "O seu código de Macau está pronto" },
  "macao.state.refused": { "zh-Hans": "未能转换：{code}", "zh-Hant": "未能轉換：{code}", en: "Not converted: {code}", pt: "Não convertido: {code}" },
  "macao.state.failed": { "zh-Hans": "澳门系统暂不可达，请稍后再试", "zh-Hant": "澳門系統暫不可達，請稍後再試", en: "Macao could not be reached; try later", pt: "Macau inacessível; tente mais tarde" },
  "field.name": { "zh-Hans": "姓名", "zh-Hant": "姓名", en: "Name", pt: "Nome" },
  "field.document": { "zh-Hans": "证件类型及号码", "zh-Hant": "證件類型及號碼", en: "Document type and number", pt: "Tipo e número do documento" },
  "field.birth_date": { "zh-Hans": "出生日期", "zh-Hant": "出生日期", en: "Date of birth", pt: "Data de nascimento" },
  "field.phone": { "zh-Hans": "手机号码", "zh-Hant": "手機號碼", en: "Phone number", pt: "Telemóvel" },
  "field.status": { "zh-Hans": "健康码状态", "zh-Hant": "健康碼狀態", en: "Health code status", pt: "Estado do código" },
  "field.nat": { "zh-Hans": "最近核酸检测结果及日期", "zh-Hant": "最近核酸檢測結果及日期", en: "Latest test result and date", pt: "Último teste e data" },
  "field.travel": { "zh-Hans": "14天内是否离开粤澳", "zh-Hant": "14天內是否離開粵澳", en: "Travel outside Guangdong/Macao in 14 days", pt: "Viagens fora de Guangdong/Macau em 14 dias" },
  signout: { "zh-Hans": "退出登录", "zh-Hant": "登出", en: "Sign out", pt: "Sair" },
  "error.network": { "zh-Hans": "网络不可用，请稍后重试", "zh-Hant": "網絡不可用，請稍後重試", en: "No network; try again", pt: "Sem rede; tente de novo" },
};

const t = translator(TEXT);
const $ = (id) => document.getElementById(id);
const state = { token: localStorage.getItem("yk.session"), code: null, renewAt: Infinity, renewing: false, imageUrl: null, watching: false };
const LOCALE = { "zh-Hans": "zh-CN", "zh-Hant": "zh-HK", en: "en-GB", pt: "pt-PT" }[language()];
// Codes and clocks are shown in Guangdong time, whatever the phone's own zone.
const TIME_ZONE = "Asia/Shanghai";

function show(section) {
  for (const id of ["signin", "bind", "code"]) $(id).classList.toggle("hidden", id !== section);
}

/** What to show for a failed call: the API's message (with its code if asked), else "network". */
function errorText(error, withCode = false) {
  if (!(error instanceof ApiError)) return t("error.network");
  return withCode ? `${error.message} (${error.code})` : error.message;
}

function fail(error) {
  $("fatal").textContent = errorText(error, true);
}

// Made once: the clock formats a time every second.
const TIME_OPTIONS = { timeZone: TIME_ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
const TIME_ONLY = new Intl.DateTimeFormat(LOCALE, TIME_OPTIONS);
const DATE_TIME = new Intl.DateTimeFormat(LOCALE, { ...TIME_OPTIONS, year: "numeric", month: "2-digit", day: "2-digit" });

function formatTime(when, withDate = false) {
  return (withDate ? DATE_TIME : TIME_ONLY).format(new Date(when));
}

async function authed(path, options = {}) {
  try {
    return await api(path, { ...options, token: state.token });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signOut();
    throw error;
  }
}

function signOut() {
  localStorage.removeItem("yk.session");
  state.token = null;
  state.code = null;
  state.renewAt = Infinity;
  show("signin");
}

// --- sign in -------------------------------------------------------------------------------------

async function sendCode(event) {
  event.preventDefault();
  $("phone-error").textContent = "";
  try {
    const sent = await api("/v1/auth/otp", { method: "POST", body: { phone: $("phone").value.trim() } });
    $("otp-form").classList.remove("hidden");
    // Development servers hand the code back; production ones only send the SMS.
    $("dev-code").textContent = sent.dev_code ? t("signin.dev", { code: sent.dev_code }) : "";
    $("otp").focus();
  } catch (error) {
    $("phone-error").textContent = errorText(error);
  }
}

async function verifyCode(event) {
  event.preventDefault();
  $("otp-error").textContent = "";
  try {
    const token = await api("/v1/auth/token", {
      method: "POST",
      body: { phone: $("phone").value.trim(), code: $("otp").value.trim() },
    });
    state.token = token.access_token;
    localStorage.setItem("yk.session", state.token);
    await start();
  } catch (error) {
    $("otp-error").textContent = errorText(error);
  }
}

// --- identity ------------------------------------------------------------------------------------

async function bind(event) {
  event.preventDefault();
  for (const el of document.querySelectorAll("#bind-form .field-error")) el.textContent = "";
  $("bind-error").textContent = "";
  const form = new FormData($("bind-form"));
  try {
    await authed("/v1/me/identity", {
      method: "PUT",
      body: Object.fromEntries(["name", "doc_type", "doc_number", "birth_date"].map((k) => [k, form.get(k)])),
    });
    await showCode();
  } catch (error) {
    if (!(error instanceof ApiError)) return fail(error);
    // The API names each bad field; show each message next to its field.
    let placed = false;
    for (const field of error.fields) {
      const target = document.querySelector(`[data-error-for="${CSS.escape(field.field)}"]`);
      if (target) {
        target.textContent = field.message;
        placed = true;
      }
    }
    if (!placed) $("bind-error").textContent = `${error.message} (${error.code})`;
  }
}

// --- the code ------------------------------------------------------------------------------------

async function loadImage(code) {
  // The image is the owner's only: fetched with the session, shown from a blob URL.
  const response = await fetch(`/v1/codes/${encodeURIComponent(code.code_id)}.png`, {
    headers: { Authorization: `Bearer ${state.token}` },
  });
  if (!response.ok) throw new ApiError(response.status, null);
  const url = URL.createObjectURL(await response.blob());
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = url;
  $("qr").src = url;
  $("qr").alt = code.status;
}

function claims(qrText) {
  try {
    const payload = qrText.slice(4).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
  } catch {
    return {};
  }
}

async function refreshCode() {
  const code = await authed("/v1/codes", { method: "POST", headers: { "Idempotency-Key": idempotencyKey() } });
  state.code = code;
  await loadImage(code);
  const card = $("code-card");
  card.dataset.status = code.status;
  $("status-word").textContent = t(`status.${code.status}`);
  $("expiry").textContent = t("code.expires", { time: formatTime(code.expires_at) });
  document.querySelector('meta[name="theme-color"]').content =
    { green: "#12a150", yellow: "#e8b100", red: "#d92c2c" }[code.status];
  $("source-note").classList.toggle("hidden", !claims(code.qr_text).src);
  // Renew a minute before expiry (or at 80% of a very short life), with no reload. The clock's
  // tick checks it: a timer set for an hour would not fire on time after the phone slept.
  const issued = new Date(code.issued_at).getTime();
  const expires = new Date(code.expires_at).getTime();
  state.renewAt = Math.max(issued + 5_000, Math.min(expires - 60_000, issued + (expires - issued) * 0.8));
}

async function renew() {
  state.renewing = true;
  try {
    await refreshCode();
    await showStatus();
  } catch (error) {
    fail(error);
    state.renewAt = Date.now() + 10_000; // try again shortly, not every second
  } finally {
    state.renewing = false;
  }
}

async function showStatus() {
  const status = await authed(`/v1/me/status?lang=${encodeURIComponent(language())}`);
  $("explanation").replaceChildren(...status.explanation.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
  $("valid-until").textContent = status.valid_until ? t("status.until", { when: formatTime(status.valid_until, true) }) : "";
  const nat = status.nat;
  $("nat-value").textContent = !nat
    ? t("nat.none")
    : nat.latest_result === "positive"
      ? t("nat.positive", { date: formatTime(nat.latest_sampled_at, true).slice(0, 10) })
      : nat.negative_within_hours
        ? t("nat.negative", { hours: nat.negative_within_hours })
        : t("nat.older", { date: formatTime(nat.latest_sampled_at, true).slice(0, 10) });
  $("vx-value").textContent = status.vaccination.doses ? t("vx.doses", { doses: status.vaccination.doses }) : t("vx.none");
  $("appeal-open").classList.toggle("hidden", !status.can_appeal);
  // Only a green code can be converted: the offer is not shown to anyone else.
  $("macao-offer").classList.toggle("hidden", status.status !== "green");
  // A status that changed since the code was issued (an appeal accepted, a new test) gets a
  // new code at once, so the colour on screen is never behind the decision.
  if (state.code && status.status !== state.code.status) await refreshCode();
  await showAppeals();
}

async function showAppeals() {
  const appeals = await authed("/v1/me/appeals");
  const box = $("appeal-history");
  box.replaceChildren(
    ...appeals.map((appeal) => {
      const item = document.createElement("p");
      item.className = "appeal-item";
      item.dataset.state = appeal.state;
      item.textContent =
        appeal.state === "pending"
          ? t("appeal.pending", { when: formatTime(appeal.filed_at, true) })
          : t(`appeal.${appeal.state}`, { reason: appeal.decision_reason || "" });
      return item;
    }),
  );
  const pending = appeals.some((a) => a.state === "pending");
  if (appeals.length) $("appeal").classList.remove("hidden");
  // One appeal at a time: while one is being reviewed there is nothing more to file.
  if (pending) $("appeal-open").classList.add("hidden");
  $("appeal-form").classList.toggle("hidden", pending || $("appeal-open").classList.contains("hidden"));
}

async function fileAppeal(event) {
  event.preventDefault();
  $("appeal-error").textContent = "";
  try {
    await authed("/v1/me/appeals", { method: "POST", body: { text: $("appeal-text").value.trim() } });
    $("appeal-text").value = "";
    await showAppeals();
  } catch (error) {
    $("appeal-error").textContent = errorText(error);
  }
}

function tick() {
  $("clock").textContent = formatTime(Date.now(), true);
  if (state.code && !state.renewing && Date.now() >= state.renewAt) renew();
}

async function showCode() {
  show("code");
  const me = await authed("/v1/me");
  $("masked-name").textContent = me.identity ? me.identity.masked_name : "";
  await refreshCode();
  await showStatus();
  // While the page is open the status is looked at again now and then, and whenever the page
  // comes back to the front: an operator's decision or a feed shows without a reload. Every 10 s
  // while the code is not green (someone waiting on an appeal or a test); every minute while it
  // is, since at a peak these reads are the largest load of all (PERFORMANCE.md). Started once
  // per page: signing out and in again must not start a second loop, and nobody signed in is
  // not asked about.
  if (state.watching) return;
  state.watching = true;
  const look = () => (state.token ? showStatus().catch(() => {}) : Promise.resolve());
  const poll = () => {
    const green = state.code && state.code.status === "green";
    setTimeout(() => look().finally(poll), green ? 60_000 : 10_000);
  };
  poll();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") look();
  });
}

// --- Macao ---------------------------------------------------------------------------------------

let consentScreen = null;

async function openMacao() {
  $("macao-error").textContent = "";
  consentScreen = await api("/v1/exchange/macao/consent");
  $("macao").classList.remove("hidden");
  $("macao-recipient").textContent = t("macao.recipient", { name: consentScreen.recipient_name });
  $("macao-fields").replaceChildren(
    ...consentScreen.fields.map((field) => Object.assign(document.createElement("li"), { textContent: t(`field.${field}`) })),
  );
  $("macao-text").textContent = consentScreen.text[language()] || consentScreen.text["zh-Hans"];
  $("macao-agree").disabled = !consentScreen.available;
  if (!consentScreen.available) $("macao-error").textContent = t("macao.unavailable");
}

async function agreeMacao() {
  $("macao-error").textContent = "";
  try {
    const conversion = await authed("/v1/exchange/macao/outbound", {
      method: "POST",
      headers: { "Idempotency-Key": idempotencyKey() },
      body: {
        consent: {
          recipient: consentScreen.recipient,
          fields: consentScreen.fields,
          accepted: true,
          text_version: consentScreen.text_version,
        },
      },
    });
    $("macao").classList.add("hidden");
    $("macao-result").classList.remove("hidden");
    await followMacao(conversion.id);
  } catch (error) {
    $("macao-error").textContent = errorText(error, true);
  }
}

async function followMacao(id) {
  const conversion = await authed(`/v1/exchange/macao/outbound/${encodeURIComponent(id)}`);
  $("macao-state").textContent = t(`macao.state.${conversion.state}`, { code: conversion.error_code || "" });
  $("macao-result").dataset.state = conversion.state;
  if (conversion.state === "delivered") {
    const response = await fetch(`/v1/exchange/macao/outbound/${encodeURIComponent(id)}.png`, {
      headers: { Authorization: `Bearer ${state.token}` },
    });
    if (response.ok) {
      $("macao-qr").src = URL.createObjectURL(await response.blob());
      $("macao-qr").classList.remove("hidden");
    }
    return;
  }
  if (conversion.state === "queued" || conversion.state === "delivering") {
    setTimeout(() => followMacao(id).catch(fail), 1_000);
  }
}

// --- start ---------------------------------------------------------------------------------------

async function start() {
  if (!state.token) return show("signin");
  try {
    await authed("/v1/me/identity");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return show("bind");
    if (error instanceof ApiError && error.status === 401) return;
    return fail(error);
  }
  await showCode();
}

translatePage(t);
languageSwitcher($("languages"));
tick();
setInterval(tick, 1_000);
$("phone-form").addEventListener("submit", sendCode);
$("otp-form").addEventListener("submit", verifyCode);
$("bind-form").addEventListener("submit", bind);
$("appeal-open").addEventListener("click", () => {
  $("appeal").classList.remove("hidden");
  $("appeal-form").classList.remove("hidden");
  $("appeal-text").focus();
});
$("appeal-form").addEventListener("submit", fileAppeal);
$("macao-open").addEventListener("click", () => openMacao().catch(fail));
$("macao-agree").addEventListener("click", agreeMacao);
$("macao-cancel").addEventListener("click", () => $("macao").classList.add("hidden"));
$("sign-out").addEventListener("click", signOut);
start().catch(fail);
