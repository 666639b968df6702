// The checkpoint scanner: set up once online (checkpoint key, pinned anchor), then judge
// health codes from the camera or an image with no network, exactly as `yuekang checkpoint scan`
// does, and upload the scan records when the network comes back.
//
// For people without a phone, the document mode (查证件, 刷证核验) asks the server instead:
// POST /v1/verify/document with the checkpoint key. It works online only, queues nothing, and the
// number typed is sent once and cleared -- never kept, logged or stored on the device.
//
// The kind of place (venue, transport, border), which picks the policy, is not the device's to
// choose: it is the checkpoint's registration on the server, fetched with the key
// (GET /v1/checkpoint) as a statement signed by the anchor the device pinned, like the trust data.
//
// Verification is verify.js (pure, tested against the shared verdict table); state lives in
// IndexedDB (scanner-store.js); scanner-sw.js keeps the page itself available offline.

import { api, ApiError, isoTime, language, languageSwitcher, translatePage, translator } from "/static/app/common.js";
import { BundleError, judge, openAnchored, readBundle, TrustStore, anchorFingerprint, PLACE_KINDS } from "/static/app/verify.js";
import { reasonMessage } from "/static/app/verify-reasons.js";
import * as db from "/static/app/scanner-store.js";

// ---------------------------------------------------------------------------------------------
// Text: [zh-Hans, zh-Hant, en, pt]

const TEXT = {
  title: ["粤康码核验", "粵康碼核驗", "Health code check", "Verificação do código"],
  "insecure.title": ["无法在此连接上核验", "無法在此連線上核驗", "Cannot verify over this connection", "Não é possível verificar nesta ligação"],
  "insecure.body": [
    "核验签名需要安全连接（HTTPS）。请用 https:// 地址打开本页；本机开发可用 http://localhost 或 http://127.0.0.1。",
    "核驗簽名需要安全連線（HTTPS）。請用 https:// 位址開啟本頁；本機開發可用 http://localhost 或 http://127.0.0.1。",
    "Checking signatures needs a secure connection (HTTPS). Open this page at its https:// address; for development on this machine, http://localhost or http://127.0.0.1 work.",
    "A verificação de assinaturas exige uma ligação segura (HTTPS). Abra esta página pelo endereço https://; para desenvolvimento local, use http://localhost ou http://127.0.0.1.",
  ],
  "setup.title": ["设置核验点", "設定核驗點", "Set up this checkpoint", "Configurar este posto"],
  "setup.intro": [
    "首次使用需联网。请输入核验点接入密钥和您收到的信任锚指纹。",
    "首次使用需連網。請輸入核驗點接入密鑰和您收到的信任錨指紋。",
    "The first setup needs the network. Enter the checkpoint key and the trust-anchor fingerprint you were given.",
    "A primeira configuração precisa de rede. Introduza a chave do posto e a impressão digital da âncora que recebeu.",
  ],
  "setup.key": ["核验点接入密钥", "核驗點接入密鑰", "Checkpoint key", "Chave do posto"],
  "setup.fingerprint": ["信任锚指纹（kid）", "信任錨指紋（kid）", "Trust-anchor fingerprint (kid)", "Impressão digital da âncora (kid)"],
  "setup.fingerprint.hint": ["留空则从服务器获取后核对", "留空則從伺服器取得後核對", "Leave empty to fetch it and compare", "Deixe vazio para obter e comparar"],
  "setup.place": ["场所类型", "場所類型", "Kind of place", "Tipo de local"],
  "setup.place.note": [
    "由管理员登记核验点时设定，联网同步时从服务器获取（经信任锚签名）；本设备不能更改。",
    "由管理員登記核驗點時設定，連網同步時從伺服器取得（經信任錨簽署）；本裝置不能更改。",
    "Set by the administrator when this checkpoint was registered and synced from the server, signed by the trust anchor: it cannot be changed on this device.",
    "Definido pelo administrador no registo deste posto e sincronizado do servidor, assinado pela âncora: não pode ser alterado neste dispositivo.",
  ],
  "place.unknown": ["尚未同步", "尚未同步", "Not synced yet", "Ainda não sincronizado"],
  "place.registered": ["{kind} · {name}", "{kind} · {name}", "{kind} · {name}", "{kind} · {name}"],
  "registration.refused": ["已拒绝服务器的核验点登记：{detail}", "已拒絕伺服器的核驗點登記：{detail}", "Refused the server's checkpoint registration: {detail}", "Registo do posto recusado: {detail}"],
  "registration.other_checkpoint": ["属于其他核验点", "屬於其他核驗點", "it is another checkpoint's", "é de outro posto"],
  "setup.submit": ["保存并同步", "儲存並同步", "Save and sync", "Guardar e sincronizar"],
  "setup.confirm": [
    "服务器的信任锚指纹如下。请与您收到的指纹逐字核对：",
    "伺服器的信任錨指紋如下。請與您收到的指紋逐字核對：",
    "The server's trust-anchor fingerprint is below. Compare it character by character with the one you were given:",
    "A impressão digital da âncora do servidor está abaixo. Compare-a carácter a carácter com a que recebeu:",
  ],
  "setup.confirm.yes": ["一致，固定此信任锚", "一致，固定此信任錨", "It matches: pin it", "Coincide: fixar"],
  "setup.confirm.no": ["不一致", "不一致", "It does not match", "Não coincide"],
  "setup.mismatch": [
    "服务器的信任锚指纹为 {got}，与输入的 {want} 不符：已拒绝。",
    "伺服器的信任錨指紋為 {got}，與輸入的 {want} 不符：已拒絕。",
    "The server's anchor is {got}, not {want}: refused.",
    "A âncora do servidor é {got}, não {want}: recusada.",
  ],
  "setup.rejected": ["未固定信任锚。请联系管理员核实指纹。", "未固定信任錨。請聯絡管理員核實指紋。", "Nothing pinned. Check the fingerprint with your administrator.", "Nada fixado. Confirme a impressão digital com o administrador."],
  "setup.key_refused": ["服务器不认识此接入密钥（无效或已停用），请核对后重新输入", "伺服器不認識此接入密鑰（無效或已停用），請核對後重新輸入", "The server does not know this checkpoint key (wrong or disabled): check it and enter it again", "O servidor não reconhece esta chave (errada ou desativada): verifique-a e introduza-a de novo"],
  "setup.pinned": ["已固定信任锚", "已固定信任錨", "Pinned trust anchor", "Âncora fixada"],
  "setup.reset": ["清除本设备的全部设置", "清除本裝置的全部設定", "Forget everything on this device", "Apagar tudo neste dispositivo"],
  "setup.reset.confirm": [
    "清除接入密钥、信任锚和核验数据？未上传的扫码记录会保留。",
    "清除接入密鑰、信任錨和核驗資料？未上傳的掃碼記錄會保留。",
    "Forget the key, the anchor and the trust data? Scans not yet uploaded are kept.",
    "Apagar a chave, a âncora e os dados de confiança? Os registos por enviar são mantidos.",
  ],
  "setup.needs_network": ["首次设置需要联网。", "首次設定需要連網。", "The first setup needs the network.", "A primeira configuração precisa de rede."],
  "place.venue": ["场所（商场、餐馆等）", "場所（商場、餐館等）", "Venue", "Estabelecimento"],
  "place.transport": ["交通（车站、机场）", "交通（車站、機場）", "Transport", "Transportes"],
  "place.border": ["口岸", "口岸", "Border post", "Posto fronteiriço"],
  "place.short.venue": ["场所", "場所", "Venue", "Local"],
  "place.short.transport": ["交通", "交通", "Transport", "Transportes"],
  "place.short.border": ["口岸", "口岸", "Border", "Fronteira"],
  "place.short.unknown": ["场所类型未同步", "場所類型未同步", "Kind of place not synced", "Tipo de local por sincronizar"],
  "trust.version": ["核验数据 v{version} · {age}签发", "核驗資料 v{version} · {age}簽發", "Trust data v{version} · issued {age}", "Dados v{version} · emitidos {age}"],
  "trust.none": ["尚无核验数据", "尚無核驗資料", "No trust data", "Sem dados de confiança"],
  "net.online": ["在线", "在線", "Online", "Em linha"],
  "net.offline": ["离线", "離線", "Offline", "Sem rede"],
  queue: ["待上传 {count}", "待上傳 {count}", "{count} to upload", "{count} por enviar"],
  "scan.start": ["开启摄像头", "開啟攝影機", "Start camera", "Ligar câmara"],
  "scan.stop": ["关闭摄像头", "關閉攝影機", "Stop camera", "Desligar câmara"],
  "scan.image": ["从图片识别", "從圖片識別", "Read from a picture", "Ler de uma imagem"],
  "scan.aim": ["将二维码置于框内", "將二維碼置於框內", "Hold the QR code inside the frame", "Coloque o código QR dentro da moldura"],
  "scan.starting": ["正在开启摄像头…", "正在開啟攝影機…", "Starting the camera…", "A ligar a câmara…"],
  "scan.off": ["摄像头已关闭", "攝影機已關閉", "Camera off", "Câmara desligada"],
  "scan.no_camera": [
    "摄像头不可用（{error}）。可改用图片识别。",
    "攝影機無法使用（{error}）。可改用圖片識別。",
    "No camera ({error}). Read the code from a picture instead.",
    "Câmara indisponível ({error}). Leia o código de uma imagem.",
  ],
  // Why getUserMedia failed, in words rather than the browser's error name.
  "camera.NotFoundError": ["未找到摄像头", "未找到攝影機", "none found", "nenhuma encontrada"],
  "camera.NotAllowedError": ["未获准使用摄像头", "未獲准使用攝影機", "not allowed", "sem permissão"],
  "camera.NotReadableError": ["摄像头正被其他应用使用", "攝影機正被其他應用程式使用", "in use by another app", "em uso por outra aplicação"],
  "camera.other": ["无法启动", "無法啟動", "it did not start", "não arrancou"],
  "scan.no_decoder": ["二维码识别组件未能加载", "二維碼識別元件未能載入", "The QR decoder did not load", "O leitor de QR não carregou"],
  "scan.nothing": ["图片中未识别到二维码", "圖片中未識別到二維碼", "No QR code found in the picture", "Nenhum código QR na imagem"],
  "decision.allow": ["通行", "通行", "ALLOW", "PERMITIDO"],
  "decision.deny": ["禁止通行", "禁止通行", "DENY", "NEGADO"],
  "decision.manual_check": ["人工核验", "人工核驗", "MANUAL CHECK", "VERIFICAÇÃO MANUAL"],
  "decision.cannot_verify": ["无法核验", "無法核驗", "CANNOT VERIFY", "IMPOSSÍVEL VERIFICAR"],
  "status.green": ["绿码", "綠碼", "Green", "Verde"],
  "status.yellow": ["黄码", "黃碼", "Yellow", "Amarelo"],
  "status.red": ["红码", "紅碼", "Red", "Vermelho"],
  "field.status": ["健康码", "健康碼", "Code", "Código"],
  "field.status_void": ["码面显示（无效）", "碼面顯示（無效）", "Code shows (void)", "O código mostra (nulo)"],
  "field.origin": ["来源", "來源", "Origin", "Origem"],
  "field.expires": ["有效至", "有效至", "Valid until", "Válido até"],
  "field.assurance": ["身份核验", "身份核驗", "Identity", "Identidade"],
  "assurance.proofed": ["已实名核验", "已實名核驗", "Identity verified", "Identidade verificada"],
  "assurance.counter": ["窗口核验", "窗口核驗", "Verified at a counter", "Verificada no balcão"],
  "assurance.dependant": ["亲友代办", "親友代辦", "Family member's code", "Código de familiar"],
  "assurance.partner": ["澳门核验", "澳門核驗", "Verified by Macao", "Verificada por Macau"],
  "instruction.identity_check": [
    "请核对证件：确认证件与本人相符后再放行",
    "請核對證件：確認證件與本人相符後再放行",
    "Check the ID document: let the person through only if it is theirs",
    "Verifique o documento: deixe passar só se for desta pessoa",
  ],
  "origin.guangdong": ["粤康码", "粵康碼", "Guangdong health code", "Código de Guangdong"],
  "origin.converted_from_macao": ["由澳门健康码转换", "由澳門健康碼轉換", "Converted from a Macao code", "Convertido de um código de Macau"],
  "origin.issued_by_macao": ["澳门健康码", "澳門健康碼", "Macao health code", "Código de saúde de Macau"],
  "origin.document_check": ["刷证核验（在线）", "刷證核驗（在線）", "Document check (online)", "Verificação por documento (em linha)"],
  "origin.converted": ["由 {partner} 健康码转换", "由 {partner} 健康碼轉換", "Converted from a {partner} code", "Convertido de um código de {partner}"],
  "rule.green": ["绿码", "綠碼", "Green code", "Código verde"],
  "rule.not_green": ["非绿码", "非綠碼", "Not a green code", "Código não verde"],
  "rule.yellow": ["黄码：请工作人员核验", "黃碼：請工作人員核驗", "Yellow: staff must check", "Amarelo: verificação pelo pessoal"],
  "rule.green_with_recent_test": ["绿码，近期核酸阴性", "綠碼，近期核酸陰性", "Green with a recent negative test", "Verde com teste negativo recente"],
  "rule.no_recent_test": ["绿码，但无近期核酸阴性结果", "綠碼，但無近期核酸陰性結果", "Green, but no recent negative test", "Verde, mas sem teste negativo recente"],
  "rule.identity_check": ["绿码，近期核酸阴性；须核对身份", "綠碼，近期核酸陰性；須核對身份", "Green with a recent test; identity to check", "Verde com teste recente; identidade a verificar"],
  "rule.no_registration": [
    "本设备尚未取得核验点登记（场所类型）：请联网同步",
    "本裝置尚未取得核驗點登記（場所類型）：請連網同步",
    "This device has no checkpoint registration (kind of place) yet: sync online",
    "Este dispositivo ainda não tem o registo do posto (tipo de local): sincronize com rede",
  ],
  "rule.bad_policy": ["核验数据中的通行规则无法读取，请同步", "核驗資料中的通行規則無法讀取，請同步", "The place rules in the trust data cannot be read: sync", "As regras do local não podem ser lidas: sincronize"],
  "verdict.next": ["继续扫码", "繼續掃碼", "Next", "Seguinte"],
  "verdict.next_document": ["下一位", "下一位", "Next person", "Pessoa seguinte"],
  "verdict.scanned": ["扫码时间 {time}", "掃碼時間 {time}", "Scanned at {time}", "Lido em {time}"],
  "verdict.checked": ["在线查询时间 {time}", "在線查詢時間 {time}", "Checked online at {time}", "Verificado em linha em {time}"],
  "mode.label": ["核验方式", "核驗方式", "How to check", "Modo de verificação"],
  "mode.scan": ["扫码核验", "掃碼核驗", "Scan a code", "Ler código"],
  "mode.document": ["查证件", "查證件", "Check a document", "Verificar documento"],
  "doc.title": ["刷证核验", "刷證核驗", "Check an ID document", "Verificar um documento"],
  "doc.intro": [
    "为没有手机的人核验：输入其证件号码，联网查询健康码状态。",
    "為沒有手機的人核驗：輸入其證件號碼，連網查詢健康碼狀態。",
    "For people without a phone: type their document number to look up their health code online.",
    "Para quem não tem telemóvel: introduza o número do documento para consultar o código em linha.",
  ],
  "doc.type": ["证件类型", "證件類型", "Document", "Documento"],
  "doc.number": ["证件号码", "證件號碼", "Document number", "Número do documento"],
  "doc.submit": ["查询", "查詢", "Check", "Verificar"],
  "doc.checking": ["正在查询…", "正在查詢…", "Checking…", "A verificar…"],
  "doc.empty": ["请输入证件号码", "請輸入證件號碼", "Enter the document number", "Introduza o número do documento"],
  "doc.invalid_number": ["证件号码格式或校验位有误", "證件號碼格式或校驗位有誤", "The number's format or check digit is wrong", "O formato ou o dígito de controlo do número está errado"],
  "doc.rate_limited": ["查询过于频繁，请稍后再试", "查詢過於頻繁，請稍後再試", "Too many checks: try again shortly", "Demasiadas verificações: tente daqui a pouco"],
  "doc.needs_network": [
    "查证件需要联网。扫码核验在离线时仍可使用。",
    "查證件需要連網。掃碼核驗在離線時仍可使用。",
    "Checking a document needs the network. Scanning codes still works offline.",
    "Verificar documentos precisa de rede. A leitura de códigos continua a funcionar sem rede.",
  ],
  "doc.retry": ["查询失败，请重试", "查詢失敗，請重試", "The check failed: try again", "A verificação falhou: tente de novo"],
  "doc.failed": ["查询失败：{detail}", "查詢失敗：{detail}", "The check failed: {detail}", "A verificação falhou: {detail}"],
  "doc.note": [
    "仅限联网使用。证件号码查询后即清除，不会保存在本设备上。",
    "僅限連網使用。證件號碼查詢後即清除，不會保存在本裝置上。",
    "Online only. The number is cleared once checked and never kept on this device.",
    "Só com rede. O número é apagado após a verificação e nunca fica neste dispositivo.",
  ],
  "doctype.prc_id": ["居民身份证", "居民身份證", "PRC resident ID", "BI da RPC"],
  "doctype.residence_permit": ["港澳台居民居住证", "港澳台居民居住證", "HK/Macao/Taiwan residence permit", "Autorização de residência (HK/Macau/Taiwan)"],
  "doctype.hk_macao_permit": ["港澳居民来往内地通行证", "港澳居民來往內地通行證", "Mainland Travel Permit (HK/Macao)", "Salvo-conduto para o Interior"],
  "doctype.macao_id": ["澳门居民身份证", "澳門居民身份證", "Macao resident ID", "BIR de Macau"],
  "doctype.hkid": ["香港身份证", "香港身份證", "HKID", "BI de Hong Kong"],
  "doctype.passport": ["护照", "護照", "Passport", "Passaporte"],
  "tools.sync": ["同步核验数据", "同步核驗資料", "Sync trust data", "Sincronizar dados"],
  "tools.upload": ["上传扫码记录", "上傳掃碼記錄", "Upload scans", "Enviar registos"],
  "tools.settings": ["设置", "設定", "Settings", "Definições"],
  "sync.done": ["已同步：版本 {version}（{kind}），{revoked} 个已撤销", "已同步：版本 {version}（{kind}），{revoked} 個已撤銷", "Synced version {version} ({kind}), {revoked} revoked", "Sincronizada a versão {version} ({kind}), {revoked} revogados"],
  "sync.full": ["完整", "完整", "full", "completa"],
  "sync.delta": ["增量", "增量", "delta", "delta"],
  "sync.current": ["核验数据已是最新（版本 {version}）", "核驗資料已是最新（版本 {version}）", "Trust data up to date (version {version})", "Dados atualizados (versão {version})"],
  "sync.offline": ["离线：使用已保存的核验数据", "離線：使用已儲存的核驗資料", "Offline: using the saved trust data", "Sem rede: a usar os dados guardados"],
  "sync.refused": ["已拒绝服务器的核验数据：{detail}", "已拒絕伺服器的核驗資料：{detail}", "Refused the server's trust data: {detail}", "Dados do servidor recusados: {detail}"],
  "sync.unauthorised": ["接入密钥无效或已停用", "接入密鑰無效或已停用", "The checkpoint key is wrong or disabled", "A chave do posto é inválida ou foi desativada"],
  "sync.failed": ["同步失败：{detail}", "同步失敗：{detail}", "Sync failed: {detail}", "Falha na sincronização: {detail}"],
  "bundle.bad_signature": ["签名与固定的信任锚不符", "簽名與固定的信任錨不符", "not signed by the pinned anchor", "não assinado pela âncora fixada"],
  "bundle.rollback": ["版本比已保存的旧（疑似回滚）", "版本比已儲存的舊（疑似回滾）", "older than the version held (a rollback)", "mais antigos do que os guardados (reversão)"],
  "bundle.malformed": ["格式无效", "格式無效", "malformed", "formato inválido"],
  "bundle.other_issuer": ["属于其他签发机构", "屬於其他簽發機構", "for another issuer", "de outro emissor"],
  "bundle.unsupported_browser": ["本浏览器不支持其中的签名算法，请更新浏览器", "本瀏覽器不支援其中的簽名演算法，請更新瀏覽器", "this browser lacks a signature algorithm it uses: update the browser", "este navegador não suporta um algoritmo usado: atualize-o"],
  "bundle.delta_mismatch": ["增量与已保存的版本不符", "增量與已儲存的版本不符", "a delta for another version", "delta para outra versão"],
  "upload.done": ["已上传 {count} 条扫码记录", "已上傳 {count} 條掃碼記錄", "Uploaded {count} scan(s)", "{count} registo(s) enviados"],
  "upload.refused": ["{count} 条记录被拒绝（时间有误），已移出队列", "{count} 條記錄被拒絕（時間有誤），已移出佇列", "{count} scan(s) refused (wrong clock) and set aside", "{count} registo(s) recusados (relógio errado)"],
  "upload.failed": ["上传失败，记录已保留：{detail}", "上傳失敗，記錄已保留：{detail}", "Upload failed; the scans are kept: {detail}", "Falha no envio; registos mantidos: {detail}"],
  "storage.failed": ["本地存储不可用：{detail}", "本機儲存無法使用：{detail}", "Local storage unavailable: {detail}", "Armazenamento local indisponível: {detail}"],
};

const LANGS = ["zh-Hans", "zh-Hant", "en", "pt"];
const t = translator(Object.fromEntries(Object.entries(TEXT).map(([key, texts]) => [key, Object.fromEntries(LANGS.map((lang, i) => [lang, texts[i]]))])));
const lang = language();

// ---------------------------------------------------------------------------------------------
// Settings

const SYNC_EVERY_MS = 10 * 60 * 1000;
const UPLOAD_EVERY_MS = 60 * 1000;
const RETRY_FIRST_MS = 5 * 1000;
const RETRY_MAX_MS = 2 * 60 * 1000;
const FRAME_EVERY_MS = 120;
const MAX_FRAME_SIDE = 960;
const SAME_CODE_QUIET_MS = 5000; // one person's code held up for several frames is one scan
const VERDICT_SHOWN_MS = 10000;
const UPLOAD_BATCH = 1000;
const CODE_ID = /^[A-Za-z0-9_-]{22}$/;
const READER_OPTIONS = { formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 1 };

const $ = (id) => document.getElementById(id);
const nowSeconds = () => Math.floor(Date.now() / 1000);

const state = {
  settings: null, // {key}
  registration: null, // {checkpoint, name, kind, issuedAt, text}: signed by the anchor
  anchor: null, // the pinned anchor JWK
  store: null, // TrustStore
  syncedAt: null,
  stream: null,
  recent: new Map(), // code text -> when the camera last saw it
  verdictTimer: null,
  uploading: false,
  syncing: false,
  pendingAnchor: null,
  cameraWanted: false,
  reachable: null, // did the server answer the last request? navigator.onLine alone is not enough
  mode: "scan", // scan (codes, offline) | document (ID documents, online only)
  checking: false, // a document check is under way
};

// Numbers only, for the Macao resident ID (1234567(8) is read without its brackets); letters too
// for every other document (the X of a PRC ID, H/M of a travel permit, passports).
const NUMERIC_DOCUMENTS = new Set(["macao_id"]);

// Scans from the camera and the file input take turns, so no two verdicts race.
let turn = Promise.resolve();
const oneAtATime = (work) => {
  turn = turn.then(() => work()).catch((error) => notice(error.message, "error"));
  return turn;
};

// ---------------------------------------------------------------------------------------------
// Start

function secureContextMissing() {
  return !window.isSecureContext || !globalThis.crypto?.subtle;
}

async function start() {
  translatePage(t);
  languageSwitcher($("languages"));
  if (secureContextMissing()) {
    // WebCrypto checks every signature; without it the page must not pretend to verify.
    $("insecure").classList.remove("hidden");
    $("status").classList.add("hidden");
    return;
  }
  bindEvents();
  registerWorker();
  try {
    await restore();
  } catch (error) {
    notice(t("storage.failed", { detail: error.message }), "error");
  }
  render();
  if (!state.anchor) {
    showSetup();
    return;
  }
  showScanner();
  syncAndUpload();
  setInterval(syncAndUpload, SYNC_EVERY_MS);
  setInterval(() => uploadQueue(), UPLOAD_EVERY_MS);
}

// navigator.onLine says only that some network is up (a gate's Wi-Fi may lead nowhere), and the
// "online" event does not always come: so every request also tells whether the server answered,
// and while it does not, sync and upload are retried with a growing delay.
let retryDelay = RETRY_FIRST_MS;
let retryTimer = null;

function reachable(answered) {
  state.reachable = answered;
  if (answered) {
    retryDelay = RETRY_FIRST_MS;
    clearTimeout(retryTimer);
    retryTimer = null;
  } else if (retryTimer === null) {
    retryTimer = setTimeout(() => {
      retryTimer = null;
      retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
      syncAndUpload();
    }, retryDelay);
  }
  render();
}

function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  // The worker lives under /static/app/; the server lets it control /scanner (Service-Worker-Allowed).
  navigator.serviceWorker.register("/static/app/scanner-sw.js", { scope: "/scanner" }).catch((error) => {
    console.warn("service worker not registered:", error);
  });
}

/** The store as saved: the pinned anchor, then the bundle and its deltas, re-checked now. */
async function restore() {
  state.settings = (await db.getValue("settings")) ?? null;
  state.anchor = (await db.getValue("anchor")) ?? null;
  state.syncedAt = (await db.getValue("syncedAt")) ?? null;
  if (!state.anchor) return;
  let store = await TrustStore.fromAnchor(state.anchor);
  // Re-checked like the bundle: a statement edited in storage is no registration at all.
  const registration = await db.getValue("registration");
  if (registration && state.settings) {
    try {
      state.registration = await readRegistration(registration, store.anchor, state.settings.key);
    } catch (error) {
      notice(t("registration.refused", { detail: registrationProblem(error) }), "error");
    }
  }
  const bundle = await db.getValue("bundle");
  const deltas = (await db.getValue("deltas")) ?? [];
  const now = nowSeconds();
  try {
    if (bundle) store = await store.load(bundle, now);
    for (const delta of deltas) store = await store.load(delta, now);
  } catch (error) {
    notice(t("sync.refused", { detail: bundleProblem(error) }), "error");
  }
  state.store = store;
}

function bindEvents() {
  $("setup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveSetup();
  });
  $("confirm-yes").addEventListener("click", () => pinConfirmed());
  $("confirm-no").addEventListener("click", () => {
    state.pendingAnchor = null;
    $("anchor-confirm").classList.add("hidden");
    $("setup-error").textContent = t("setup.rejected");
  });
  $("reset").addEventListener("click", () => reset());
  $("camera-toggle").addEventListener("click", () => (state.stream ? stopCamera() : startCamera()));
  $("image-input").addEventListener("change", (event) => {
    const file = event.target.files?.[0];
    event.target.value = "";
    if (file) oneAtATime(() => readImage(file));
  });
  $("verdict").addEventListener("click", () => hideVerdict());
  $("sync").addEventListener("click", () => sync());
  $("upload").addEventListener("click", () => uploadQueue(true));
  $("settings-open").addEventListener("click", () => showSetup());
  $("mode-scan").addEventListener("click", () => setMode("scan"));
  $("mode-document").addEventListener("click", () => setMode("document"));
  $("doc-type").addEventListener("change", () => documentTypeChosen());
  $("document-form").addEventListener("submit", (event) => {
    event.preventDefault();
    checkDocument();
  });
  window.addEventListener("online", () => {
    render();
    syncAndUpload();
  });
  window.addEventListener("offline", () => render());
  // The trust data's age and freshness change with time, not only with events.
  setInterval(render, 30 * 1000);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopCamera(false);
    else if (state.anchor && state.mode === "scan" && !$("scan").classList.contains("hidden") && state.cameraWanted) startCamera();
  });
}

// ---------------------------------------------------------------------------------------------
// Setup: key, place, pinned anchor

function showSetup() {
  stopCamera(false);
  $("setup").classList.remove("hidden");
  for (const id of ["modes", "scan", "document", "tools"]) $(id).classList.add("hidden");
  $("api-key").value = state.settings?.key ?? "";
  $("place").textContent = placeText();
  const pinned = Boolean(state.anchor);
  $("fingerprint-row").classList.toggle("hidden", pinned);
  $("pinned-row").classList.toggle("hidden", !pinned);
  $("reset").classList.toggle("hidden", !pinned);
  if (pinned) anchorFingerprint(state.anchor).then((kid) => ($("pinned-kid").textContent = kid));
}

function showScanner() {
  $("setup").classList.add("hidden");
  $("modes").classList.remove("hidden");
  $("tools").classList.remove("hidden");
  state.cameraWanted = true;
  setMode("scan");
}

/** Scan codes (the camera runs) or check ID documents (the camera rests: a code held up
 * meanwhile must not cover the form with a verdict). */
function setMode(mode) {
  state.mode = mode;
  const scanning = mode === "scan";
  $("mode-scan").setAttribute("aria-pressed", String(scanning));
  $("mode-document").setAttribute("aria-pressed", String(!scanning));
  $("scan").classList.toggle("hidden", !scanning);
  $("document").classList.toggle("hidden", scanning);
  clearDocumentMessages();
  if (scanning) {
    if (state.cameraWanted) startCamera();
  } else {
    stopCamera(false);
    documentTypeChosen();
    $("doc-number").focus();
  }
  render();
}

async function saveSetup() {
  $("setup-error").textContent = "";
  const key = $("api-key").value.trim();
  if (!key) {
    $("setup-error").textContent = t("setup.key");
    return;
  }
  // A key the server refuses is said here, on the form, before anything is saved or pinned:
  // a device that looks ready and cannot sync is worse than one that is not set up.
  if (await keyRefused(key)) {
    $("setup-error").textContent = t("setup.key_refused");
    $("api-key").setAttribute("aria-invalid", "true");
    return;
  }
  $("api-key").removeAttribute("aria-invalid");
  // Another key is another checkpoint, whose registration is yet to come.
  if (state.settings?.key !== key) await forgetRegistration();
  state.settings = { key };
  if (state.anchor) {
    await db.setValue("settings", state.settings);
    render();
    showScanner();
    await syncAndUpload();
    return;
  }
  let jwk;
  let kid;
  try {
    jwk = await api("/v1/trust-anchor");
    kid = await anchorFingerprint(jwk);
  } catch (error) {
    $("setup-error").textContent = navigator.onLine ? t("sync.failed", { detail: error.message }) : t("setup.needs_network");
    return;
  }
  const wanted = $("fingerprint").value.trim();
  if (wanted) {
    // Pinned only if the server's key has the fingerprint given out of band: whoever serves it.
    if (wanted !== kid) {
      $("setup-error").textContent = t("setup.mismatch", { got: kid, want: wanted });
      return;
    }
    await pin(jwk);
    return;
  }
  state.pendingAnchor = jwk;
  $("anchor-kid").textContent = kid;
  $("anchor-confirm").classList.remove("hidden");
}

/** True only when the server answers that it does not know this key (401); no network, or any
 * other answer, leaves the decision to the sync that follows. */
async function keyRefused(key) {
  try {
    await api("/v1/checkpoint", { token: key });
    return false;
  } catch (error) {
    return error instanceof ApiError && error.status === 401;
  }
}

async function pinConfirmed() {
  if (!state.pendingAnchor) return;
  await pin(state.pendingAnchor);
}

async function pin(jwk) {
  state.pendingAnchor = null;
  $("anchor-confirm").classList.add("hidden");
  state.anchor = jwk;
  state.store = await TrustStore.fromAnchor(jwk);
  await db.setValues({ anchor: jwk, settings: state.settings });
  await db.deleteValues(["bundle", "deltas", "syncedAt", "registration"]);
  state.registration = null;
  render();
  showScanner();
  await syncAndUpload();
}

async function reset() {
  if (!window.confirm(t("setup.reset.confirm"))) return;
  await db.deleteValues(["anchor", "settings", "bundle", "deltas", "syncedAt", "registration"]);
  Object.assign(state, { settings: null, anchor: null, store: null, syncedAt: null, registration: null });
  render();
  showSetup();
}

// ---------------------------------------------------------------------------------------------
// Sync the trust bundle

async function syncAndUpload() {
  await sync();
  await uploadQueue();
}

function bundleProblem(error) {
  return error instanceof BundleError ? t(`bundle.${error.kind}`) : error.message;
}

async function sync() {
  await syncRegistration();
  await syncBundle();
}

/** Fetch the bundle (a delta on top of the version held when possible) and keep it. */
async function syncBundle({ full = false } = {}) {
  if (!state.store || !state.settings || state.syncing) return;
  if (!navigator.onLine) {
    notice(t("sync.offline"));
    reachable(false);
    return;
  }
  state.syncing = true;
  try {
    const held = full ? null : state.store.bundle;
    const headers = { Authorization: `Bearer ${state.settings.key}` };
    let path = "/v1/trust-bundle";
    if (held) {
      headers["If-None-Match"] = `"v${held.version}"`;
      path += `?since=${held.version}`;
    }
    let response;
    try {
      response = await fetch(path, { headers, cache: "no-store" });
    } catch {
      notice(t("sync.offline"));
      reachable(false);
      return;
    }
    reachable(true);
    const now = nowSeconds();
    if (response.status === 304) {
      state.syncedAt = now;
      await db.setValue("syncedAt", now);
      notice(t("sync.current", { version: held.version }));
      return;
    }
    if (response.status === 401 || response.status === 403) {
      notice(t("sync.unauthorised"), "error");
      return;
    }
    if (!response.ok) {
      notice(t("sync.failed", { detail: `HTTP ${response.status}` }), "error");
      return;
    }
    const text = await response.text();
    let incoming;
    let updated;
    try {
      incoming = await readBundle(text, state.store.anchor);
      updated = state.store.apply(incoming, now);
    } catch (error) {
      if (error instanceof BundleError && error.kind === "delta_mismatch" && !full) {
        state.syncing = false;
        return syncBundle({ full: true });
      }
      notice(t("sync.refused", { detail: bundleProblem(error) }), "error");
      return;
    }
    const isDelta = incoming.base !== null;
    if (isDelta) {
      const deltas = (await db.getValue("deltas")) ?? [];
      await db.setValues({ deltas: [...deltas, text], syncedAt: now });
    } else {
      await db.setValues({ bundle: text, deltas: [], syncedAt: now });
    }
    state.store = updated;
    state.syncedAt = now;
    notice(t("sync.done", { version: updated.bundle.version, kind: t(isDelta ? "sync.delta" : "sync.full"), revoked: updated.revokedCount }));
  } finally {
    state.syncing = false;
    render();
  }
}

// ---------------------------------------------------------------------------------------------
// The checkpoint's registration: its kind of place, as the operator registered it

const REGISTRATION_HEADER = "yk-checkpoint+jws";
const REGISTRATION_TYP = "yk.checkpoint.v1";

class RegistrationError extends Error {
  constructor(kind, detail) {
    super(detail);
    this.kind = kind;
  }
}

function registrationProblem(error) {
  if (!(error instanceof RegistrationError)) return error.message;
  return t(error.kind === "other_checkpoint" ? "registration.other_checkpoint" : `bundle.${error.kind}`);
}

/** The registration statement (checkpoints/registration.py), believed only when the pinned
 * anchor signed it and it names the checkpoint whose key this device holds; throws
 * RegistrationError. */
async function readRegistration(text, anchor, key) {
  let payload;
  try {
    payload = await openAnchored(text, REGISTRATION_HEADER, anchor, ["checkpoint registration", "registration"]);
  } catch (error) {
    if (error instanceof BundleError) throw new RegistrationError(error.kind, error.message);
    throw error;
  }
  const { typ, checkpoint, name, kind, issued_at: issuedAt } = payload;
  if (typ !== REGISTRATION_TYP || typeof checkpoint !== "string" || typeof name !== "string" || !PLACE_KINDS.includes(kind) || !Number.isInteger(issuedAt)) {
    throw new RegistrationError("malformed", "not a yk.checkpoint.v1 payload");
  }
  // ykc_<id hex>_<secret>: the statement must be about the checkpoint this key belongs to.
  const keyId = /^ykc_([0-9a-f]{32})_/.exec(key ?? "")?.[1];
  if (checkpoint.replaceAll("-", "").toLowerCase() !== keyId) throw new RegistrationError("other_checkpoint", "another checkpoint's registration");
  return { checkpoint, name, kind, issuedAt, text };
}

/** Ask the server what this checkpoint is registered as; keep it when it checks and is not
 * older than the one held. Quiet when offline: the bundle's sync says so. */
async function syncRegistration() {
  if (!state.store || !state.settings || !navigator.onLine) return;
  let response;
  try {
    response = await fetch("/v1/checkpoint", { headers: { Authorization: `Bearer ${state.settings.key}` }, cache: "no-store" });
  } catch {
    return;
  }
  if (response.status === 401) {
    // The server does not know this key: whatever registration the device holds is no longer
    // proved to be its own (a key edited in storage could borrow another checkpoint's), so
    // nothing is decided until a key the server knows fetches one. The bundle's sync, next,
    // says the key is wrong.
    if (state.registration) {
      await forgetRegistration();
      render();
    }
    return;
  }
  if (!response.ok) return;
  let incoming;
  try {
    incoming = await readRegistration(await response.text(), state.store.anchor, state.settings.key);
  } catch (error) {
    notice(t("registration.refused", { detail: registrationProblem(error) }), "error");
    return;
  }
  if (state.registration && incoming.issuedAt < state.registration.issuedAt) return;
  state.registration = incoming;
  await db.setValue("registration", incoming.text);
  render();
}

async function forgetRegistration() {
  state.registration = null;
  await db.deleteValues(["registration"]);
}

function placeText() {
  const registration = state.registration;
  if (!registration) return t("place.unknown");
  return t("place.registered", { kind: t(`place.${registration.kind}`), name: registration.name });
}

// ---------------------------------------------------------------------------------------------
// Scan records: queued locally, uploaded when the network is there

const DECIDED = ["allow", "deny", "manual_check"];

async function queueScan(result, now) {
  // Nothing about the person but the code id: the same record the CLI queues.
  await db.enqueue({
    scan_id: crypto.randomUUID(),
    code_id: CODE_ID.test(result.code_id ?? "") ? result.code_id : null,
    scanned_at: new Date(now * 1000).toISOString(),
    verdict: result.verdict,
    reason: result.reasons.length ? result.reasons[0] : null,
    // What the gate decided, which operators count apart from the verdict (a genuine green code
    // can be denied at a border); none when the device could not decide.
    decision: DECIDED.includes(result.decision) ? result.decision : null,
  });
  await renderQueue();
  uploadQueue();
}

/** Send the queue in batches; the server stores each scan_id once, so a retry is harmless. */
async function uploadQueue(loud = false) {
  if (!state.settings || state.uploading) return;
  if (!navigator.onLine) {
    reachable(false);
    return;
  }
  state.uploading = true;
  let sent = 0;
  try {
    for (;;) {
      const batch = await db.queued(UPLOAD_BATCH);
      if (!batch.length) break;
      let result;
      try {
        result = await api("/v1/scans", { method: "POST", token: state.settings.key, body: { scans: batch } });
      } catch (error) {
        const answered = error instanceof ApiError;
        reachable(answered);
        if (loud || answered) notice(t("upload.failed", { detail: error.message }), "error");
        break;
      }
      reachable(true);
      // Refused scans (dated in the future or too old) would be refused again: set them aside.
      const refused = new Set(result.refused ?? []);
      if (refused.size) {
        const aside = (await db.getValue("refused")) ?? [];
        await db.setValue("refused", [...aside, ...batch.filter((scan) => refused.has(scan.scan_id))]);
        notice(t("upload.refused", { count: refused.size }), "error");
      }
      await db.dequeue(batch.map((scan) => scan.scan_id));
      sent += batch.length;
    }
    if (sent && (loud || !$("notice").classList.contains("error"))) notice(t("upload.done", { count: sent }));
  } finally {
    state.uploading = false;
    await renderQueue();
  }
}

// ---------------------------------------------------------------------------------------------
// Document checks (刷证核验): online only, nothing queued, nothing kept

function documentTypeChosen() {
  $("doc-number").inputMode = NUMERIC_DOCUMENTS.has($("doc-type").value) ? "numeric" : "text";
}

function clearDocumentMessages() {
  $("doc-number-error").textContent = "";
  $("document-error").textContent = "";
  $("doc-number").removeAttribute("aria-invalid");
}

function documentFieldError(text) {
  $("doc-number-error").textContent = text;
  $("doc-number").setAttribute("aria-invalid", "true");
  $("doc-number").focus();
}

async function checkDocument() {
  if (!state.settings || state.checking) return;
  clearDocumentMessages();
  const input = $("doc-number");
  const number = input.value.trim();
  if (!number) {
    documentFieldError(t("doc.empty"));
    return;
  }
  // The number is personal data: it leaves the field for the request body only, whatever the
  // answer. Nothing here logs it, and nothing is written to IndexedDB or localStorage.
  input.value = "";
  const docType = $("doc-type").value;
  if (!navigator.onLine) {
    documentOffline();
    return;
  }
  state.checking = true;
  const submit = $("document-submit");
  submit.disabled = true;
  submit.textContent = t("doc.checking");
  $("document-form").setAttribute("aria-busy", "true");
  try {
    let answer;
    try {
      // api() asks in the page's language (Accept-Language) and with the checkpoint key.
      answer = await api("/v1/verify/document", { method: "POST", token: state.settings.key, body: { doc_type: docType, doc_number: number } });
    } catch (error) {
      documentFailed(error);
      return;
    }
    reachable(true);
    showVerdict(fromServer(answer), nowSeconds(), { online: true });
  } finally {
    state.checking = false;
    submit.disabled = false;
    submit.textContent = t("doc.submit");
    $("document-form").removeAttribute("aria-busy");
  }
}

/** The server's answer in the shape verify.js gives: reasons and warnings as codes. */
function fromServer(answer) {
  const codes = (items) => (Array.isArray(items) ? items.map((item) => item.code) : []);
  return { ...answer, reasons: codes(answer.reasons), warnings: codes(answer.warnings), assurance: answer.assurance ?? null };
}

/** No server answered: the banner says this mode needs the network (render() shows it while
 * the server does not answer); nothing is kept to send later. */
function documentOffline() {
  reachable(false);
  $("document-offline").classList.remove("hidden");
}

function documentFailed(error) {
  if (!(error instanceof ApiError)) {
    // fetch() rejects when no server answers: offline, or the gate's network leads nowhere.
    if (error instanceof TypeError) documentOffline();
    else $("document-error").textContent = t("doc.retry");
    return;
  }
  reachable(true);
  if (error.status === 422) documentFieldError(t("doc.invalid_number"));
  else if (error.status === 429) $("document-error").textContent = t("doc.rate_limited");
  else if (error.status === 401 || error.status === 403) $("document-error").textContent = t("sync.unauthorised");
  // The server's message is in the page's language (it answers errors in the Accept-Language
  // the page sends).
  else $("document-error").textContent = t("doc.failed", { detail: error.message });
}

// ---------------------------------------------------------------------------------------------
// Camera and decoding

let decoderReady = null;

function decoder() {
  if (!globalThis.ZXingWASM) throw new Error(t("scan.no_decoder"));
  // The wasm comes from us (npm's zxing-wasm, served under /static/vendor/), never from a CDN.
  decoderReady ??= (async () => {
    ZXingWASM.prepareZXingModule({
      overrides: { locateFile: (path, prefix) => (path.endsWith(".wasm") ? "/static/vendor/zxing/reader/zxing_reader.wasm" : prefix + path) },
    });
    return ZXingWASM;
  })();
  return decoderReady;
}

async function decode(input) {
  const zxing = await decoder();
  const results = await zxing.readBarcodes(input, READER_OPTIONS);
  return results.find((result) => result.isValid && result.text)?.text ?? null;
}

async function startCamera() {
  if (state.stream) return;
  state.cameraWanted = true;
  $("camera-toggle").textContent = t("scan.stop");
  cameraMessage(t("scan.starting"));
  if (!navigator.mediaDevices?.getUserMedia) {
    cameraFailed(new Error("getUserMedia"));
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
    });
    state.stream = stream;
    const video = $("camera");
    video.srcObject = stream;
    await video.play();
    cameraMessage(t("scan.aim"));
    $("viewfinder").classList.add("live");
    scheduleFrame();
  } catch (error) {
    cameraFailed(error);
  }
}

function cameraFailed(error) {
  stopCamera(false);
  const why = ["NotFoundError", "NotAllowedError", "NotReadableError"].includes(error.name) ? error.name : "other";
  cameraMessage(t("scan.no_camera", { error: t(`camera.${why}`) }), true);
}

function stopCamera(byUser = true) {
  if (byUser) state.cameraWanted = false;
  if (state.stream) for (const track of state.stream.getTracks()) track.stop();
  state.stream = null;
  $("camera").srcObject = null;
  $("viewfinder").classList.remove("live");
  $("camera-toggle").textContent = t("scan.start");
  if (byUser) cameraMessage(t("scan.off"));
}

function cameraMessage(text, isError = false) {
  $("camera-message").textContent = text;
  $("camera-message").classList.toggle("error", isError);
}

const frameCanvas = document.createElement("canvas");
const frameContext = frameCanvas.getContext("2d", { willReadFrequently: true });

function scheduleFrame() {
  if (state.stream) setTimeout(() => oneAtATime(readFrame), FRAME_EVERY_MS);
}

async function readFrame() {
  const video = $("camera");
  if (!state.stream) return;
  try {
    if (video.readyState >= video.HAVE_CURRENT_DATA && video.videoWidth) {
      const scale = Math.min(1, MAX_FRAME_SIDE / Math.max(video.videoWidth, video.videoHeight));
      const width = Math.round(video.videoWidth * scale);
      const height = Math.round(video.videoHeight * scale);
      if (frameCanvas.width !== width || frameCanvas.height !== height) Object.assign(frameCanvas, { width, height });
      frameContext.drawImage(video, 0, 0, width, height);
      const text = await decode(frameContext.getImageData(0, 0, width, height));
      if (text) await onCode(text, "camera");
    }
  } catch (error) {
    cameraMessage(error.message, true);
  } finally {
    scheduleFrame();
  }
}

async function readImage(file) {
  let text;
  try {
    text = await decode(file);
  } catch (error) {
    notice(error.message, "error");
    return;
  }
  if (!text) {
    notice(t("scan.nothing"), "error");
    return;
  }
  await onCode(text, "image");
}

async function onCode(text, source) {
  // A frame decoded just as the page turned to documents: the camera is off, and so is its scan.
  if (source === "camera" && state.mode !== "scan") return;
  // A code held in front of the camera is one scan, however many frames show it; it counts
  // again once it has been out of sight for a while. A picture chosen on purpose always counts.
  const nowMs = Date.now();
  for (const [seen, at] of state.recent) if (nowMs - at > SAME_CODE_QUIET_MS) state.recent.delete(seen);
  const known = state.recent.has(text);
  state.recent.set(text, nowMs);
  if (source === "camera" && known) return;
  const now = nowSeconds();
  const place = state.registration?.kind ?? null;
  const result = await judge(state.store, text, { now, place: place ?? "venue" });
  // Without its registration the device does not know which policy is its own: it judges the
  // code but decides nothing, rather than guess a place.
  if (place === null && result.decision !== "cannot_verify") Object.assign(result, { decision: "cannot_verify", decision_reason: "no_registration" });
  showVerdict(result, now);
  await queueScan(result, now);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function notice(text, kind = "info") {
  const element = $("notice");
  element.textContent = text;
  element.classList.toggle("error", kind === "error");
}

// Made once: every render (at least every 30 s) and every verdict formats with them.
const AGE_FORMAT = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });

function relativeAge(seconds) {
  const ago = Math.max(0, seconds);
  if (ago < 60) return AGE_FORMAT.format(0, "minute");
  if (ago < 3600) return AGE_FORMAT.format(-Math.floor(ago / 60), "minute");
  if (ago < 2 * 86400) return AGE_FORMAT.format(-Math.floor(ago / 3600), "hour");
  return AGE_FORMAT.format(-Math.floor(ago / 86400), "day");
}

/** Local time as 2026-12-07 08:17:19 (or without seconds) in every language: read alike by
 * everyone at a gate, with no AM/PM or 清晨 to misread. */
function formatTime(seconds, { withSeconds = true } = {}) {
  return isoTime(seconds * 1000, { seconds: withSeconds });
}

/** The trust data's state: always on screen, since it decides whether verdicts can be believed. */
function trustSummary() {
  const store = state.store;
  const now = nowSeconds();
  const freshness = store ? store.freshness(now) : "none";
  if (!store?.bundle) return { freshness, text: t("trust.none"), warning: reasonMessage("no_trust", lang) };
  const bundle = store.bundle;
  const text = t("trust.version", { version: bundle.version, age: relativeAge(now - bundle.issuedAt) });
  const warning = { stale: "trust_stale", expired: "trust_expired", wrong_clock: "wrong_clock" }[freshness];
  return { freshness, text, warning: warning ? reasonMessage(warning, lang) : null };
}

function render() {
  const summary = trustSummary();
  const trust = $("trust-state");
  trust.textContent = summary.text;
  trust.className = `pill trust-${summary.freshness}`;
  const warning = $("trust-warning");
  warning.textContent = summary.warning ?? "";
  warning.className = `trust-warning trust-${summary.freshness}`;
  warning.classList.toggle("hidden", !summary.warning || !state.anchor);
  const online = navigator.onLine && state.reachable !== false;
  $("net-state").textContent = t(online ? "net.online" : "net.offline");
  $("net-state").className = `pill ${online ? "online" : "offline"}`;
  // Always in sight once set up: a device that does not know its place decides nothing.
  $("place-state").textContent = t(`place.short.${state.registration?.kind ?? "unknown"}`);
  $("place-state").className = `pill${state.registration ? "" : " unregistered"}${state.settings ? "" : " hidden"}`;
  if (!$("setup").classList.contains("hidden")) $("place").textContent = placeText();
  // The document mode says up front when it cannot work; scanning codes needs no network.
  $("document-offline").classList.toggle("hidden", online);
  renderQueue();
}

async function renderQueue() {
  let count = 0;
  try {
    count = await db.queueLength();
  } catch {
    // storage unavailable: already reported at start
  }
  $("queue-state").textContent = t("queue", { count });
  $("queue-state").dataset.count = String(count);
  $("queue-state").classList.toggle("waiting", count > 0);
  // The verdict covers the status bar: it repeats the network and the queue.
  $("verdict-state").textContent = `${$("net-state").textContent} · ${$("queue-state").textContent}`;
}

function originText(origin) {
  if (!origin) return null;
  const key = `origin.${origin}`;
  if (TEXT[key]) return t(key);
  const converted = /^converted_from_(.+)$/.exec(origin);
  return converted ? t("origin.converted", { partner: converted[1] }) : origin;
}

/** The line that says why: the place's rule (translated here), the instruction an officer must
 * follow, or the verifier's reason for a code that does not count or cannot be judged. */
function decidingReason(result) {
  const reason = result.decision_reason;
  if (result.decision === "manual_check" && reason === "identity_check") return t("instruction.identity_check");
  if (reason && TEXT[`rule.${reason}`]) return t(`rule.${reason}`);
  const code = reason ?? result.reasons[0];
  return code ? reasonMessage(code, lang) : "";
}

/** A verdict over the whole screen: judged here from a code, or (`online`) the server's answer
 * to a document check. The decision's colour and word fill the screen, the reason that decided
 * it is the largest line, and the code's own colour is a detail underneath. */
function showVerdict(result, now, { online = false } = {}) {
  const panel = $("verdict");
  panel.className = `verdict decision-${result.decision}`;
  panel.dataset.decision = result.decision;
  panel.dataset.reasons = result.reasons.join(" ");
  panel.dataset.reason = result.decision_reason ?? "";
  panel.dataset.origin = result.origin ?? "";
  panel.dataset.assurance = result.assurance ?? "";
  $("verdict-word").textContent = t(`decision.${result.decision}`);
  const because = decidingReason(result);
  $("verdict-reason").textContent = because;
  $("verdict-reason").classList.toggle("hidden", !because);
  $("verdict-name").textContent = result.masked_name ?? "";
  $("verdict-name").classList.toggle("hidden", !result.masked_name);

  // A revoked code still shows what it says, but its colour counts for nothing.
  const code = $("verdict-code");
  const status = $("verdict-status");
  code.classList.toggle("hidden", !result.status);
  if (result.status) {
    const counts = result.verdict === "valid";
    $("verdict-code-label").textContent = t(counts ? "field.status" : "field.status_void");
    status.textContent = t(`status.${result.status}`);
    status.className = `status ${counts ? `status-${result.status}` : "status-void"}`;
  }

  const facts = $("verdict-facts");
  facts.replaceChildren();
  const fact = (label, value, className = "") => {
    if (value === null || value === undefined || value === "") return;
    const item = document.createElement("div");
    const term = document.createElement("dt");
    term.textContent = t(label);
    const detail = document.createElement("dd");
    detail.textContent = value;
    if (className) detail.className = className;
    item.append(term, detail);
    facts.append(item);
  };
  // How the holder's identity was proved, for a code that counts: nothing when it does not say.
  const assurance = `assurance.${result.assurance}`;
  if (result.verdict === "valid" && result.assurance && TEXT[assurance]) fact("field.assurance", t(assurance), "assurance");
  fact("field.origin", originText(result.origin));
  if (result.expires_at !== null && result.expires_at !== undefined) fact("field.expires", formatTime(result.expires_at, { withSeconds: false }));

  // Every reason and warning, but the one already said in large type.
  const reasons = $("verdict-reasons");
  reasons.replaceChildren();
  for (const reason of [...result.reasons, ...result.warnings]) {
    const warning = result.warnings.includes(reason);
    if (!warning && reason === result.decision_reason && !TEXT[`rule.${reason}`]) continue;
    const item = document.createElement("li");
    item.textContent = reasonMessage(reason, lang);
    item.dataset.code = reason;
    if (warning) item.className = "warning";
    reasons.append(item);
  }
  // A document's verdict is the server's, not the trust data's.
  $("verdict-next").textContent = t(online ? "verdict.next_document" : "verdict.next");
  $("verdict-trust").textContent = online ? t("verdict.checked", { time: formatTime(now) }) : `${trustSummary().text} · ${t("verdict.scanned", { time: formatTime(now) })}`;
  panel.classList.remove("hidden");
  clearTimeout(state.verdictTimer);
  state.verdictTimer = setTimeout(hideVerdict, VERDICT_SHOWN_MS);
  render();
  // Asked for from the keyboard: the keyboard goes on from the verdict.
  if (online) $("verdict-next").focus({ preventScroll: true });
}

function hideVerdict() {
  clearTimeout(state.verdictTimer);
  const panel = $("verdict");
  const wasShown = !panel.classList.contains("hidden");
  panel.classList.add("hidden");
  // Ready for the next person's document.
  if (wasShown && state.mode === "document" && !$("document").classList.contains("hidden")) $("doc-number").focus({ preventScroll: true });
}

start();
