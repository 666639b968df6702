// The reason taxonomy of src/yuekang/codec/reasons.py, word for word: a checkpoint operator must
// read the same message whichever verifier answered (the CLI, POST /v1/verify, this page).
// tests/web/test_verify_vectors.py compares this table with the Python MESSAGES.

export const REASON_LANGUAGES = ["zh-Hans", "zh-Hant", "en", "pt"];
export const DEFAULT_LANGUAGE = "zh-Hans";

export const REASON_MESSAGES = Object.freeze({
  malformed: {
    "zh-Hans": "二维码格式无效",
    "zh-Hant": "二維碼格式無效",
    en: "Not a valid health code",
    pt: "Código de saúde inválido",
  },
  unsupported_version: {
    "zh-Hans": "不支持的健康码版本",
    "zh-Hant": "不支援的健康碼版本",
    en: "Unsupported health code version",
    pt: "Versão do código de saúde não suportada",
  },
  unknown_key: {
    "zh-Hans": "签发密钥未知",
    "zh-Hant": "簽發密鑰未知",
    en: "Signed with an unknown key",
    pt: "Assinado com uma chave desconhecida",
  },
  algorithm_not_allowed: {
    "zh-Hans": "签名算法不被允许",
    "zh-Hant": "簽名演算法不被允許",
    en: "Signature algorithm not allowed",
    pt: "Algoritmo de assinatura não permitido",
  },
  bad_signature: {
    "zh-Hans": "签名无效，疑似伪造或篡改",
    "zh-Hant": "簽名無效，疑似偽造或篡改",
    en: "Invalid signature: forged or altered",
    pt: "Assinatura inválida: falsificado ou alterado",
  },
  expired: {
    "zh-Hans": "健康码已过期，请刷新",
    "zh-Hant": "健康碼已過期，請重新整理",
    en: "Code expired: ask for a fresh one",
    pt: "Código expirado: peça um novo",
  },
  not_yet_valid: {
    "zh-Hans": "健康码尚未生效，请检查设备时间",
    "zh-Hant": "健康碼尚未生效，請檢查裝置時間",
    en: "Code not yet valid: check the device clock",
    pt: "Código ainda não válido: verifique o relógio",
  },
  revoked: {
    "zh-Hans": "健康码已被撤销",
    "zh-Hant": "健康碼已被撤銷",
    en: "Code revoked",
    pt: "Código revogado",
  },
  untrusted_issuer: {
    "zh-Hans": "签发机构不受信任",
    "zh-Hant": "簽發機構不受信任",
    en: "Issuer not trusted",
    pt: "Emissor não confiável",
  },
  key_not_valid: {
    "zh-Hans": "签发密钥已失效",
    "zh-Hant": "簽發密鑰已失效",
    en: "Signing key no longer valid",
    pt: "Chave de assinatura já não é válida",
  },
  trust_stale: {
    "zh-Hans": "核验数据已过期，请尽快同步",
    "zh-Hant": "核驗資料已過期，請盡快同步",
    en: "Trust data out of date: sync soon",
    pt: "Dados de confiança desatualizados: sincronize em breve",
  },
  trust_expired: {
    "zh-Hans": "核验数据已失效，无法核验，请同步",
    "zh-Hant": "核驗資料已失效，無法核驗，請同步",
    en: "Trust data expired: cannot verify until synced",
    pt: "Dados de confiança expirados: sincronize para verificar",
  },
  wrong_clock: {
    "zh-Hans": "设备时间有误，请校准",
    "zh-Hant": "裝置時間有誤，請校準",
    en: "Device clock is wrong: set it right",
    pt: "Relógio do dispositivo errado: acerte-o",
  },
  no_trust: {
    "zh-Hans": "尚未同步核验数据",
    "zh-Hant": "尚未同步核驗資料",
    en: "No trust data yet: sync first",
    pt: "Sem dados de confiança: sincronize primeiro",
  },
  no_valid_code: {
    "zh-Hans": "该证件无有效健康码",
    "zh-Hant": "該證件無有效健康碼",
    en: "No valid health code for this document",
    pt: "Sem código de saúde válido para este documento",
  },
});

/** The short message for a reason code in `language` (zh-Hans when the language is unknown). */
export function reasonMessage(reason, language = DEFAULT_LANGUAGE) {
  const texts = REASON_MESSAGES[reason];
  if (!texts) return reason;
  return texts[language] ?? texts[DEFAULT_LANGUAGE];
}
