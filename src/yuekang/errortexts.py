"""What every refusal of the API says to people, in the pages' four languages.

An error's ``code`` is the contract clients branch on (``errorcodes.py``); its ``message`` is for
the person in front of the screen, so it is chosen by ``Accept-Language`` (zh-Hans by default,
as the verdicts' reasons are: ``codec.reasons.pick_language``) when the answer leaves the
service (``app.YuekangAPI``). The specific English text a service wrote for developers and logs
stays beside it as ``detail``. A field's message is built from its reason (pydantic's type, or a
service's own, e.g. ``check_digit``) and the field's name in the language, so "String should have
at least 1 character" on ``name`` reads 请填写姓名.

Tests hold the catalogue to the error list and the request models: every code and every request
field has its words in all four languages.
"""

# ruff: noqa: E501 -- a catalogue of sentences, one per line, reads better unbroken

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from starlette.types import Message, Scope, Send

from yuekang.codec.reasons import LANGUAGES, pick_language
from yuekang.headers import joined

Texts = tuple[str, str, str, str]
"""One text in zh-Hans, zh-Hant, en and pt: the order of ``LANGUAGES``."""

ERRORS: Final[Mapping[str, Texts]] = {
    "appeal_already_decided": (
        "这项申诉已经处理完毕",
        "這項申訴已經處理完畢",
        "This appeal has already been decided.",
        "Este recurso já foi decidido.",
    ),
    "appeal_not_found": (
        "找不到这项申诉",
        "找不到這項申訴",
        "No such appeal.",
        "Recurso não encontrado.",
    ),
    "appeal_outdated": (
        "申诉提交后状态已变化，请驳回后让居民就新状态申诉",
        "申訴提交後狀態已變化，請駁回後讓居民就新狀態申訴",
        "The status changed after this appeal was filed: reject it so the resident can contest the new one.",
        "O estado mudou depois de o recurso ser apresentado: rejeite-o para que o residente conteste o novo.",
    ),
    "appeal_pending": (
        "您已有一项申诉正在审核，请等待结果",
        "您已有一項申訴正在審核，請等待結果",
        "You already have an appeal under review; please wait for its result.",
        "Já tem um recurso em análise; aguarde o resultado.",
    ),
    "bad_header": (
        "CSV 表头的列不正确，未作任何更改",
        "CSV 表頭的欄位不正確，未作任何更改",
        "The CSV header has unknown, missing or repeated columns; nothing was applied.",
        "O cabeçalho CSV tem colunas desconhecidas, em falta ou repetidas; nada foi aplicado.",
    ),
    "bad_key_document": (
        "合作方的密钥文件无效",
        "合作方的密鑰文件無效",
        "The partner's key document is not valid.",
        "O documento de chaves do parceiro não é válido.",
    ),
    "bad_request": ("请求无效", "請求無效", "The request is not valid.", "O pedido não é válido."),
    "bad_signature": (
        "签名无效",
        "簽名無效",
        "The signature does not verify.",
        "A assinatura não é válida.",
    ),
    "batch_not_found": (
        "找不到这批数据",
        "找不到這批數據",
        "No such batch.",
        "Lote não encontrado.",
    ),
    "batch_too_large": (
        "这批数据行数过多，未作任何更改",
        "這批數據行數過多，未作任何更改",
        "The batch has too many rows; nothing was applied.",
        "O lote tem demasiadas linhas; nada foi aplicado.",
    ),
    "busy_retry": (
        "系统繁忙，请求未生效，请重试",
        "系統繁忙，請求未生效，請重試",
        "The service was busy and nothing was applied; please try again.",
        "O serviço estava ocupado e nada foi aplicado; tente de novo.",
    ),
    "checkpoint_not_found": (
        "找不到这个查验点",
        "找不到這個查驗點",
        "No such checkpoint.",
        "Posto de verificação não encontrado.",
    ),
    "code_not_found": (
        "找不到这个健康码",
        "找不到這個健康碼",
        "No such health code.",
        "Código de saúde não encontrado.",
    ),
    "code_too_large": (
        "健康码内容过多，无法生成（配置错误）",
        "健康碼內容過多，無法生成（配置錯誤）",
        "The code would be too large to draw (a configuration error).",
        "O código seria grande demais (erro de configuração).",
    ),
    "conflict": (
        "与当前状态冲突",
        "與當前狀態衝突",
        "This conflicts with the current state.",
        "Isto entra em conflito com o estado atual.",
    ),
    "consent_attempts_exceeded": (
        "验证码错误次数过多，请重新发送",
        "驗證碼錯誤次數過多，請重新發送",
        "Too many wrong codes: send a new one.",
        "Demasiados códigos errados: envie um novo.",
    ),
    "consent_code_expired": (
        "验证码已过期，请重新发送",
        "驗證碼已過期，請重新發送",
        "The code has expired: send a new one.",
        "O código expirou: envie um novo.",
    ),
    "consent_code_wrong": (
        "验证码不正确",
        "驗證碼不正確",
        "The code is not correct.",
        "O código não está correto.",
    ),
    "consent_insufficient": (
        "同意的信息项不完整",
        "同意的資料項不完整",
        "The consent does not cover the information needed.",
        "O consentimento não abrange a informação necessária.",
    ),
    "consent_not_pending": (
        "没有等待确认的同意",
        "沒有等待確認的同意",
        "No consent is waiting to be confirmed.",
        "Não há consentimento à espera de confirmação.",
    ),
    "consent_pending": (
        "家人尚未同意",
        "家人尚未同意",
        "Your family member has not consented yet.",
        "O seu familiar ainda não deu consentimento.",
    ),
    "consent_phone_missing": (
        "未提供家人的手机号，请到服务窗口办理",
        "未提供家人的手機號碼，請到服務櫃檯辦理",
        "No phone was given for this family member: consent is given at a service counter.",
        "Não foi indicado telemóvel deste familiar: o consentimento é dado num balcão de atendimento.",
    ),
    "consent_resend_too_soon": (
        "刚刚已发送验证码，请稍后再试",
        "剛剛已發送驗證碼，請稍後再試",
        "A code was just sent; please wait a moment.",
        "Acabou de ser enviado um código; aguarde um momento.",
    ),
    "conversion_not_delivered": (
        "对方的健康码尚未送达",
        "對方的健康碼尚未送達",
        "The partner's code has not arrived yet.",
        "O código do parceiro ainda não chegou.",
    ),
    "conversion_not_found": (
        "找不到这次转码",
        "找不到這次轉碼",
        "No such conversion.",
        "Conversão não encontrada.",
    ),
    # Not "nothing was applied": a commit cut off by its timeout (a synchronous standby gone)
    # may have committed on the primary. A retry with the same Idempotency-Key is applied once.
    "database_unavailable": (
        "服务暂时不可用，请稍后重试",
        "服務暫時不可用，請稍後重試",
        "The service is unavailable for a moment; please try again shortly.",
        "O serviço está momentaneamente indisponível; tente de novo dentro de pouco.",
    ),
    "decryption_failed": (
        "无法解密",
        "無法解密",
        "The content could not be decrypted.",
        "Não foi possível decifrar o conteúdo.",
    ),
    "dependant_is_guardian": (
        "这是您本人的证件",
        "這是您本人的證件",
        "That is your own document.",
        "Esse é o seu próprio documento.",
    ),
    "dependant_limit": (
        "家庭成员已达上限",
        "家庭成員已達上限",
        "You already hold the most family members allowed.",
        "Já tem o número máximo de familiares.",
    ),
    "dependant_not_found": (
        "找不到这位家庭成员",
        "找不到這位家庭成員",
        "No such family member.",
        "Familiar não encontrado.",
    ),
    "dependant_of_another_account": (
        "此人已被其他账号添加为家庭成员，请到服务窗口办理",
        "此人已被其他帳號添加為家庭成員，請到服務櫃檯辦理",
        "Another account holds this person as a family member; a service counter can settle it.",
        "Outra conta tem esta pessoa como familiar; um balcão de atendimento pode resolver.",
    ),
    "document_already_bound": (
        "此证件已绑定在另一个账号上，请到服务窗口办理",
        "此證件已綁定在另一個帳號上，請到服務櫃檯辦理",
        "This document is bound to another account; a service counter can settle it.",
        "Este documento está associado a outra conta; um balcão de atendimento pode resolver.",
    ),
    "empty_batch": (
        "这批数据没有任何行",
        "這批數據沒有任何行",
        "The batch has no rows.",
        "O lote não tem linhas.",
    ),
    "exchange_error": (
        "转码请求被拒绝",
        "轉碼請求被拒絕",
        "The exchange request was refused.",
        "O pedido de conversão foi recusado.",
    ),
    "feed_client_exists": (
        "同名的数据源已存在",
        "同名的數據源已存在",
        "A feed client of that name exists.",
        "Já existe um cliente de dados com esse nome.",
    ),
    "forbidden": (
        "没有权限",
        "沒有權限",
        "You are not allowed to do this.",
        "Não tem permissão para isto.",
    ),
    "guardian_not_adult": (
        "只有成年人可以添加家庭成员",
        "只有成年人可以添加家庭成員",
        "Only an adult can add family members.",
        "Só um adulto pode adicionar familiares.",
    ),
    "guardian_unverified": (
        "请先完成本人实名认证，再添加家庭成员",
        "請先完成本人實名認證，再添加家庭成員",
        "Prove your own identity before adding family members.",
        "Comprove a sua identidade antes de adicionar familiares.",
    ),
    "guardianship_not_found": (
        "找不到这项监护关系",
        "找不到這項監護關係",
        "No such arrangement.",
        "Tutela não encontrada.",
    ),
    "idempotency_key_required": (
        "缺少 Idempotency-Key",
        "缺少 Idempotency-Key",
        "An Idempotency-Key header is required.",
        "É necessário o cabeçalho Idempotency-Key.",
    ),
    "idempotency_key_reused": (
        "这个 Idempotency-Key 已用于其他请求",
        "這個 Idempotency-Key 已用於其他請求",
        "This Idempotency-Key was used for another request.",
        "Esta Idempotency-Key foi usada noutro pedido.",
    ),
    "idempotency_key_stale": (
        "此前生成的健康码已失效，请重新申领",
        "此前生成的健康碼已失效，請重新申領",
        "The code first made for this request is no longer valid: ask again.",
        "O código feito para este pedido já não é válido: peça de novo.",
    ),
    "identity_already_bound": (
        "账号已绑定另一份已认证的证件",
        "帳號已綁定另一份已認證的證件",
        "Your account already has another proved document.",
        "A sua conta já tem outro documento comprovado.",
    ),
    "identity_mismatch": (
        "姓名、证件号码和出生日期核验不一致，请检查后重试",
        "姓名、證件號碼和出生日期核驗不一致，請檢查後重試",
        "The name, document number and birth date do not match the register; please check them.",
        "O nome, o número do documento e a data de nascimento não correspondem ao registo; verifique-os.",
    ),
    "identity_not_bound": (
        "尚未绑定证件",
        "尚未綁定證件",
        "No identity is bound yet.",
        "Ainda não associou um documento de identificação.",
    ),
    "identity_required": (
        "请先绑定证件，再申领健康码",
        "請先綁定證件，再申領健康碼",
        "Bind an identity document before asking for a code.",
        "Associe um documento de identificação antes de pedir um código.",
    ),
    "identity_unverified": (
        "证件尚未认证，请先完成实名认证",
        "證件尚未認證，請先完成實名認證",
        "Your identity has not been proved yet: prove it first.",
        "A sua identidade ainda não foi comprovada: comprove-a primeiro.",
    ),
    "internal_error": (
        "系统出现意外错误，已记录，请求未生效",
        "系統出現意外錯誤，已記錄，請求未生效",
        "An unexpected error occurred and was logged; nothing was applied.",
        "Ocorreu um erro inesperado, que foi registado; nada foi aplicado.",
    ),
    "invalid_checkpoint_key": (
        "查验点密钥无效或已停用",
        "查驗點密鑰無效或已停用",
        "The checkpoint key is not valid or is disabled.",
        "A chave do posto de verificação não é válida ou está desativada.",
    ),
    "invalid_document": (
        "证件信息有误",
        "證件資料有誤",
        "The document details are not valid.",
        "Os dados do documento não são válidos.",
    ),
    "invalid_feed_key": (
        "数据源密钥无效或已停用",
        "數據源密鑰無效或已停用",
        "The feed client key is not valid or is disabled.",
        "A chave do cliente de dados não é válida ou está desativada.",
    ),
    "invalid_idempotency_key": (
        "Idempotency-Key 格式不正确",
        "Idempotency-Key 格式不正確",
        "The Idempotency-Key is not 1–128 printable ASCII characters.",
        "A Idempotency-Key não tem 1 a 128 caracteres ASCII imprimíveis.",
    ),
    "invalid_operator_token": (
        "工作人员令牌无效或已停用",
        "工作人員令牌無效或已停用",
        "The staff token is not valid or is disabled.",
        "O token de funcionário não é válido ou está desativado.",
    ),
    "invalid_refresh_token": (
        "登录已失效，请重新登录",
        "登入已失效，請重新登入",
        "Your sign-in is no longer valid; please sign in again.",
        "A sua sessão já não é válida; inicie sessão de novo.",
    ),
    "invalid_rule_set": (
        "规则集校验未通过，现行规则不变",
        "規則集校驗未通過，現行規則不變",
        "The rule set does not validate; the rules in force stay.",
        "O conjunto de regras não é válido; mantêm-se as regras em vigor.",
    ),
    "invalid_token": (
        "登录凭证无效，请重新登录",
        "登入憑證無效，請重新登入",
        "Your sign-in is not valid; please sign in again.",
        "A sua sessão não é válida; inicie sessão de novo.",
    ),
    "key_not_found": ("找不到这个密钥", "找不到這個密鑰", "No such key.", "Chave não encontrada."),
    "key_not_ready": (
        "密钥发布时间不足一个同步周期，请稍后再启用",
        "密鑰發佈時間不足一個同步週期，請稍後再啟用",
        "The key was published less than one sync interval ago; activate it later.",
        "A chave foi publicada há menos de um intervalo de sincronização; ative-a mais tarde.",
    ),
    "key_state": (
        "密钥当前状态不允许此操作",
        "密鑰當前狀態不允許此操作",
        "The key's state does not allow this.",
        "O estado da chave não permite isto.",
    ),
    "kind_not_allowed": (
        "此数据源不能发送这类数据",
        "此數據源不能發送這類數據",
        "This feed client may not send this kind of feed.",
        "Este cliente de dados não pode enviar este tipo de dados.",
    ),
    "line_too_long": (
        "有一行数据过长，未作任何更改",
        "有一行數據過長，未作任何更改",
        "A line is too long; nothing was applied.",
        "Uma linha é demasiado longa; nada foi aplicado.",
    ),
    "malformed_json": (
        "请求内容不是有效的 JSON",
        "請求內容不是有效的 JSON",
        "The request body is not valid JSON.",
        "O corpo do pedido não é JSON válido.",
    ),
    "method_not_allowed": (
        "不支持这种请求方法",
        "不支援這種請求方法",
        "This method is not allowed here.",
        "Este método não é permitido aqui.",
    ),
    "missing_token": ("请先登录", "請先登入", "Please sign in first.", "Inicie sessão primeiro."),
    "nat_missing": (
        "没有核酸检测记录",
        "沒有核酸檢測記錄",
        "There is no nucleic-acid test result.",
        "Não há resultado de teste de ácido nucleico.",
    ),
    "nat_not_negative": (
        "最近一次核酸检测结果不是阴性",
        "最近一次核酸檢測結果不是陰性",
        "The latest nucleic-acid test is not negative.",
        "O último teste de ácido nucleico não é negativo.",
    ),
    "nat_too_old": (
        "核酸检测结果已超过有效时间",
        "核酸檢測結果已超過有效時間",
        "The nucleic-acid test is too old.",
        "O teste de ácido nucleico é demasiado antigo.",
    ),
    "no_anchor_key": (
        "尚未生成信任根密钥",
        "尚未生成信任根密鑰",
        "There is no trust anchor key yet.",
        "Ainda não há chave de âncora de confiança.",
    ),
    "no_signing_key": (
        "暂时无法签发健康码，请稍后再试",
        "暫時無法簽發健康碼，請稍後再試",
        "Codes cannot be signed at the moment; please try later.",
        "De momento não é possível assinar códigos; tente mais tarde.",
    ),
    "not_eligible_here": (
        "不符合此处的要求",
        "不符合此處的要求",
        "This does not meet the requirements here.",
        "Isto não cumpre os requisitos aqui.",
    ),
    "not_found": ("找不到所请求的内容", "找不到所請求的內容", "Not found.", "Não encontrado."),
    "otp_attempts_exceeded": (
        "验证码错误次数过多，请重新获取",
        "驗證碼錯誤次數過多，請重新獲取",
        "Too many wrong codes: ask for a new one.",
        "Demasiados códigos errados: peça um novo.",
    ),
    "otp_expired": (
        "验证码已过期，请重新获取",
        "驗證碼已過期，請重新獲取",
        "The code has expired: ask for a new one.",
        "O código expirou: peça um novo.",
    ),
    "otp_invalid": (
        "验证码不正确",
        "驗證碼不正確",
        "The code is not correct.",
        "O código não está correto.",
    ),
    "otp_resend_wait": (
        "验证码刚刚已发送，请稍后再获取",
        "驗證碼剛剛已發送，請稍後再獲取",
        "A code was just sent; please wait before asking again.",
        "Acabou de ser enviado um código; aguarde antes de pedir outro.",
    ),
    "package_expired": (
        "转码数据包已过期",
        "轉碼數據包已過期",
        "The exchange package has expired.",
        "O pacote de conversão expirou.",
    ),
    "package_lifetime_too_long": (
        "转码数据包有效期过长",
        "轉碼數據包有效期過長",
        "The exchange package lives too long.",
        "O pacote de conversão tem validade demasiado longa.",
    ),
    "package_malformed": (
        "转码数据包格式不正确",
        "轉碼數據包格式不正確",
        "The exchange package is malformed.",
        "O pacote de conversão está mal formado.",
    ),
    "package_not_yet_valid": (
        "转码数据包尚未生效",
        "轉碼數據包尚未生效",
        "The exchange package is not valid yet.",
        "O pacote de conversão ainda não é válido.",
    ),
    "package_replayed": (
        "这个转码数据包已使用过",
        "這個轉碼數據包已使用過",
        "This exchange package was already used.",
        "Este pacote de conversão já foi usado.",
    ),
    "partner_issuer_mismatch": (
        "密钥文件的签发方与登记的合作方不符",
        "密鑰文件的簽發方與登記的合作方不符",
        "The key document speaks for another issuer than the registered one.",
        "O documento de chaves é de outro emissor que não o registado.",
    ),
    "partner_key_not_found": (
        "找不到合作方的这个密钥",
        "找不到合作方的這個密鑰",
        "No such key of that partner.",
        "Chave do parceiro não encontrada.",
    ),
    "partner_not_configured": (
        "与该合作方的互认暂未配置",
        "與該合作方的互認暫未配置",
        "Recognition with this partner is not configured.",
        "O reconhecimento com este parceiro não está configurado.",
    ),
    "partner_not_found": (
        "找不到这个合作方",
        "找不到這個合作方",
        "No such partner.",
        "Parceiro não encontrado.",
    ),
    "payload_too_large": (
        "请求内容过大",
        "請求內容過大",
        "The request body is too large.",
        "O corpo do pedido é demasiado grande.",
    ),
    "phone_in_use": (
        "这个手机号已被另一个账号使用",
        "這個手機號碼已被另一個帳號使用",
        "This phone number is used by another account.",
        "Este número de telemóvel é usado por outra conta.",
    ),
    "phone_not_registered_to_holder": (
        "此手机号未登记在证件持有人名下，可由家人代为添加，或到服务窗口核验",
        "此手機號碼未登記在證件持有人名下，可由家人代為添加，或到服務櫃檯核驗",
        "This phone is not registered to the document holder: a family member can add them, or a counter can verify them.",
        "Este telemóvel não está registado em nome do titular: um familiar pode adicioná-lo, ou um balcão pode verificá-lo.",
    ),
    "phone_required": (
        "账号没有手机号，无法通过手机完成认证",
        "帳號沒有手機號碼，無法透過手機完成認證",
        "An account without a phone cannot prove an identity by phone.",
        "Uma conta sem telemóvel não pode comprovar a identidade por telemóvel.",
    ),
    "proofing_unavailable": (
        "实名认证服务暂时不可用，请稍后重试",
        "實名認證服務暫時不可用，請稍後重試",
        "Identity checking is unavailable for a moment; please try again shortly.",
        "A verificação de identidade está momentaneamente indisponível; tente de novo dentro de pouco.",
    ),
    "rate_limited": (
        "操作过于频繁，请稍后再试",
        "操作過於頻繁，請稍後再試",
        "Too many attempts; please try again later.",
        "Demasiadas tentativas; tente mais tarde.",
    ),
    "request_mismatch": (
        "签名的请求与实际请求不符",
        "簽名的請求與實際請求不符",
        "The signed request does not match the request.",
        "O pedido assinado não corresponde ao pedido.",
    ),
    "request_replayed": (
        "这个请求已处理过",
        "這個請求已處理過",
        "This request was already processed.",
        "Este pedido já foi processado.",
    ),
    "request_too_old": (
        "请求时间已过期，请检查时钟",
        "請求時間已過期，請檢查時鐘",
        "The request is too old; check the clock.",
        "O pedido é demasiado antigo; verifique o relógio.",
    ),
    "resident_not_found": (
        "找不到这位居民",
        "找不到這位居民",
        "No such resident.",
        "Residente não encontrado.",
    ),
    "retired_sender_key": (
        "发送方的密钥已退役",
        "發送方的密鑰已退役",
        "The sender's key is retired.",
        "A chave do remetente foi retirada.",
    ),
    "role_required": (
        "您的角色无权执行此操作",
        "您的角色無權執行此操作",
        "Your role may not do this.",
        "A sua função não permite isto.",
    ),
    "rule_set_version_exists": (
        "该规则集版本已存在且内容不同，请提升版本号",
        "該規則集版本已存在且內容不同，請提升版本號",
        "That rule-set version exists with other content: bump the version.",
        "Essa versão do conjunto de regras existe com outro conteúdo: aumente a versão.",
    ),
    "session_ended": (
        "您已退出登录，请重新登录",
        "您已登出，請重新登入",
        "You were signed out; please sign in again.",
        "A sua sessão terminou; inicie sessão de novo.",
    ),
    "session_expired": (
        "登录已过期，请重新登录",
        "登入已過期，請重新登入",
        "Your sign-in has expired; please sign in again.",
        "A sua sessão expirou; inicie sessão de novo.",
    ),
    "session_not_found": (
        "找不到这个登录会话",
        "找不到這個登入工作階段",
        "No such session.",
        "Sessão não encontrada.",
    ),
    "signature_malformed": (
        "签名格式不正确",
        "簽名格式不正確",
        "The signature is malformed.",
        "A assinatura está mal formada.",
    ),
    "signature_missing": (
        "缺少签名",
        "缺少簽名",
        "The signature is missing.",
        "Falta a assinatura.",
    ),
    "sms_unavailable": (
        "短信暂时无法发送，请稍后重试",
        "短訊暫時無法發送，請稍後重試",
        "The text message could not be sent; please try again shortly.",
        "Não foi possível enviar a mensagem; tente de novo dentro de pouco.",
    ),
    "source_code_invalid": (
        "原健康码无效",
        "原健康碼無效",
        "The source code is not valid.",
        "O código de origem não é válido.",
    ),
    "source_mismatch": (
        "原健康码与申请人不符",
        "原健康碼與申請人不符",
        "The source code does not belong to this person.",
        "O código de origem não pertence a esta pessoa.",
    ),
    "source_not_green": (
        "只有绿码可以转换",
        "只有綠碼可以轉換",
        "Only a green code can be converted.",
        "Só um código verde pode ser convertido.",
    ),
    "status_missing": (
        "暂时无法读取您的健康状态，请联系客服",
        "暫時無法讀取您的健康狀態，請聯絡客服",
        "Your health status cannot be read; please contact the hotline.",
        "Não é possível ler o seu estado de saúde; contacte a linha de apoio.",
    ),
    "status_not_contested": (
        "只有红码或黄码可以申诉",
        "只有紅碼或黃碼可以申訴",
        "Only a red or yellow status can be appealed.",
        "Só um estado vermelho ou amarelo pode ser contestado.",
    ),
    "status_not_green": (
        "只有绿码才能转码",
        "只有綠碼才能轉碼",
        "Only a green code can be transferred.",
        "Só um código verde pode ser transferido.",
    ),
    "token_expired": (
        "登录已超时，正在续期",
        "登入已逾時，正在續期",
        "Your access has timed out; renew it.",
        "O seu acesso expirou; renove-o.",
    ),
    "travel_outside_region": (
        "行程不在互认范围内",
        "行程不在互認範圍內",
        "The journey is outside the recognised region.",
        "A viagem está fora da região reconhecida.",
    ),
    "unauthorized": ("未通过身份验证", "未通過身份驗證", "Not authorised.", "Não autorizado."),
    "unavailable": (
        "服务暂时不可用，请稍后重试",
        "服務暫時不可用，請稍後重試",
        "Unavailable for a moment; please try again shortly.",
        "Indisponível de momento; tente de novo dentro de pouco.",
    ),
    "unknown_feed_kind": (
        "没有这种数据类型",
        "沒有這種數據類型",
        "No such kind of feed.",
        "Tipo de dados desconhecido.",
    ),
    "unknown_sender_key": (
        "不认识发送方的密钥",
        "不認識發送方的密鑰",
        "The sender's key is unknown.",
        "A chave do remetente é desconhecida.",
    ),
    "unmapped_document_type": (
        "暂不支持这种证件的互认",
        "暫不支援這種證件的互認",
        "This kind of document cannot be recognised.",
        "Este tipo de documento não pode ser reconhecido.",
    ),
    "unsupported_media_type": (
        "不支持这种内容格式",
        "不支援這種內容格式",
        "This content type is not supported here.",
        "Este tipo de conteúdo não é suportado aqui.",
    ),
    "validation_error": (
        "填写的信息有误",
        "填寫的資料有誤",
        "Some details are not valid.",
        "Alguns dados não são válidos.",
    ),
    "wrong_audience": (
        "数据包的接收方不是本系统",
        "數據包的接收方不是本系統",
        "The package is addressed to another recipient.",
        "O pacote destina-se a outro destinatário.",
    ),
    "wrong_issuer": (
        "签发方不符",
        "簽發方不符",
        "The issuer does not match.",
        "O emissor não corresponde.",
    ),
    "wrong_recipient_key": (
        "数据包不是用本系统的密钥加密的",
        "數據包不是用本系統的密鑰加密的",
        "The package is encrypted for another key.",
        "O pacote está cifrado para outra chave.",
    ),
}

FIELDS: Final[Mapping[str, Texts]] = {
    "action": ("操作", "操作", "action", "ação"),
    "actor_type": ("操作者类型", "操作者類型", "kind of actor", "tipo de autor"),
    "alg": ("算法", "演算法", "algorithm", "algoritmo"),
    "before_id": ("起始编号", "起始編號", "starting id", "id inicial"),
    "birth_date": ("出生日期", "出生日期", "birth date", "data de nascimento"),
    "case_reference": ("案件编号", "案件編號", "case reference", "referência do caso"),
    "challenge_id": ("验证码请求", "驗證碼請求", "code request", "pedido de código"),
    "code": ("验证码", "驗證碼", "code", "código"),
    "compromised": ("是否泄露", "是否洩露", "compromised", "comprometida"),
    "consent": ("同意", "同意", "consent", "consentimento"),
    "consent.accepted": ("同意确认", "同意確認", "consent", "consentimento"),
    "consent.fields": ("同意的信息项", "同意的資料項", "consented details", "dados consentidos"),
    "consent.recipient": ("接收方", "接收方", "recipient", "destinatário"),
    "consent.text_version": (
        "同意书版本",
        "同意書版本",
        "consent text version",
        "versão do texto de consentimento",
    ),
    "days": ("天数", "天數", "days", "dias"),
    "decision": ("决定", "決定", "decision", "decisão"),
    "doc_number": ("证件号码", "證件號碼", "document number", "número do documento"),
    "doc_type": ("证件类型", "證件類型", "document type", "tipo de documento"),
    "document_seen": ("已查看证件", "已查看證件", "document seen", "documento visto"),
    "from": ("开始时间", "開始時間", "from", "de"),
    "kind": ("类型", "類型", "kind", "tipo"),
    "kinds": ("类型", "類型", "kinds", "tipos"),
    "lang": ("语言", "語言", "language", "língua"),
    "limit": ("数量上限", "數量上限", "limit", "limite"),
    "name": ("姓名", "姓名", "name", "nome"),
    "phone": ("手机号", "手機號碼", "phone number", "número de telemóvel"),
    "qr_text": ("二维码内容", "二維碼內容", "QR content", "conteúdo do QR"),
    "reason": ("理由", "理由", "reason", "motivo"),
    "refresh_token": ("续期凭证", "續期憑證", "refresh token", "token de renovação"),
    "region": ("手机号所属地区", "手機號碼所屬地區", "phone region", "região do telemóvel"),
    "region_code": ("地区代码", "地區代碼", "region code", "código de região"),
    "relationship": ("关系", "關係", "relationship", "relação"),
    "scans": ("扫码记录", "掃碼記錄", "scans", "leituras"),
    "scans.code_id": ("健康码编号", "健康碼編號", "code id", "id do código"),
    "scans.decision": ("通行决定", "通行決定", "decision", "decisão"),
    "scans.reason": ("原因", "原因", "reason", "motivo"),
    "scans.scan_id": ("扫码编号", "掃碼編號", "scan id", "id da leitura"),
    "scans.scanned_at": ("扫码时间", "掃碼時間", "scan time", "hora da leitura"),
    "scans.verdict": ("查验结果", "查驗結果", "verdict", "resultado"),
    "since": ("起始时间", "起始時間", "since", "desde"),
    "state": ("状态", "狀態", "state", "estado"),
    "status": ("健康状态", "健康狀態", "status", "estado"),
    "text": ("说明", "說明", "text", "texto"),
    "to": ("结束时间", "結束時間", "to", "até"),
    "valid_days": ("有效天数", "有效天數", "valid days", "dias de validade"),
    # named by services rather than by a request model
    "rule_set": ("规则集", "規則集", "rule set", "conjunto de regras"),
    "conditions": ("条件", "條件", "conditions", "condições"),
    "source.code": ("原健康码", "原健康碼", "source code", "código de origem"),
    "subject.phone": ("手机号", "手機號碼", "phone number", "número de telemóvel"),
    "subject.name": ("姓名", "姓名", "name", "nome"),
    "subject.birth_date": ("出生日期", "出生日期", "birth date", "data de nascimento"),
    "subject.doc_number": ("证件号码", "證件號碼", "document number", "número do documento"),
    "body": ("请求内容", "請求內容", "request body", "corpo do pedido"),
}
"""Request fields by their path (list positions left out). ``{Field}`` in a template is the name
with a capital letter, for the start of a sentence."""

REASONS: Final[Mapping[str, Texts]] = {
    "missing": (
        "请填写{field}",
        "請填寫{field}",
        "Please enter the {field}.",
        "Falta preencher: {field}.",
    ),
    "unknown_field": (
        "不认识的字段：{field}",
        "不認識的欄位：{field}",
        "Unknown field: {field}.",
        "Campo desconhecido: {field}.",
    ),
    "string_too_short": (
        "{field}至少需要 {limit} 个字符",
        "{field}至少需要 {limit} 個字元",
        "{Field} needs at least {limit} characters.",
        "{Field} precisa de pelo menos {limit} caracteres.",
    ),
    "string_too_long": (
        "{field}最多 {limit} 个字符",
        "{field}最多 {limit} 個字元",
        "{Field} has at most {limit} characters.",
        "{Field} tem no máximo {limit} caracteres.",
    ),
    "too_short": (
        "{field}至少需要 {limit} 项",
        "{field}至少需要 {limit} 項",
        "{Field} needs at least {limit} items.",
        "{Field} precisa de pelo menos {limit} elementos.",
    ),
    "too_long": (
        "{field}最多 {limit} 项",
        "{field}最多 {limit} 項",
        "{Field} has at most {limit} items.",
        "{Field} tem no máximo {limit} elementos.",
    ),
    "string_pattern_mismatch": (
        "{field}格式不正确",
        "{field}格式不正確",
        "{Field} is not in the right form.",
        "{Field} não está no formato certo.",
    ),
    "format": (
        "{field}格式不正确",
        "{field}格式不正確",
        "{Field} is not in the right form.",
        "{Field} não está no formato certo.",
    ),
    "greater_than": (
        "{field}须大于 {limit}",
        "{field}須大於 {limit}",
        "{Field} must be greater than {limit}.",
        "{Field} tem de ser maior que {limit}.",
    ),
    "greater_than_equal": (
        "{field}不能小于 {limit}",
        "{field}不能小於 {limit}",
        "{Field} must be at least {limit}.",
        "{Field} tem de ser pelo menos {limit}.",
    ),
    "less_than": (
        "{field}须小于 {limit}",
        "{field}須小於 {limit}",
        "{Field} must be less than {limit}.",
        "{Field} tem de ser menor que {limit}.",
    ),
    "less_than_equal": (
        "{field}不能大于 {limit}",
        "{field}不能大於 {limit}",
        "{Field} must be at most {limit}.",
        "{Field} tem de ser no máximo {limit}.",
    ),
    "literal_error": (
        "{field}不是可选的值",
        "{field}不是可選的值",
        "{Field} is not one of the allowed values.",
        "{Field} não é um dos valores permitidos.",
    ),
    "enum": (
        "{field}不是可选的值",
        "{field}不是可選的值",
        "{Field} is not one of the allowed values.",
        "{Field} não é um dos valores permitidos.",
    ),
    "date_parsing": (
        "{field}应为日期（如 2026-12-07）",
        "{field}應為日期（如 2026-12-07）",
        "{Field} must be a date (such as 2026-12-07).",
        "{Field} tem de ser uma data (como 2026-12-07).",
    ),
    "date_from_datetime_parsing": (
        "{field}应为日期（如 2026-12-07）",
        "{field}應為日期（如 2026-12-07）",
        "{Field} must be a date (such as 2026-12-07).",
        "{Field} tem de ser uma data (como 2026-12-07).",
    ),
    "date_type": (
        "{field}应为日期（如 2026-12-07）",
        "{field}應為日期（如 2026-12-07）",
        "{Field} must be a date (such as 2026-12-07).",
        "{Field} tem de ser uma data (como 2026-12-07).",
    ),
    "datetime_parsing": (
        "{field}应为时间（如 2026-12-07T08:17:00Z）",
        "{field}應為時間（如 2026-12-07T08:17:00Z）",
        "{Field} must be a time (such as 2026-12-07T08:17:00Z).",
        "{Field} tem de ser uma hora (como 2026-12-07T08:17:00Z).",
    ),
    "datetime_from_date_parsing": (
        "{field}应为时间（如 2026-12-07T08:17:00Z）",
        "{field}應為時間（如 2026-12-07T08:17:00Z）",
        "{Field} must be a time (such as 2026-12-07T08:17:00Z).",
        "{Field} tem de ser uma hora (como 2026-12-07T08:17:00Z).",
    ),
    "datetime_type": (
        "{field}应为时间（如 2026-12-07T08:17:00Z）",
        "{field}應為時間（如 2026-12-07T08:17:00Z）",
        "{Field} must be a time (such as 2026-12-07T08:17:00Z).",
        "{Field} tem de ser uma hora (como 2026-12-07T08:17:00Z).",
    ),
    "timezone_aware": (
        "{field}需要带时区（如 Z 或 +08:00）",
        "{field}需要帶時區（如 Z 或 +08:00）",
        "{Field} needs a UTC offset (Z or +08:00).",
        "{Field} precisa de um fuso (Z ou +08:00).",
    ),
    "int_type": (
        "{field}应为整数",
        "{field}應為整數",
        "{Field} must be a whole number.",
        "{Field} tem de ser um número inteiro.",
    ),
    "int_parsing": (
        "{field}应为整数",
        "{field}應為整數",
        "{Field} must be a whole number.",
        "{Field} tem de ser um número inteiro.",
    ),
    "int_from_float": (
        "{field}应为整数",
        "{field}應為整數",
        "{Field} must be a whole number.",
        "{Field} tem de ser um número inteiro.",
    ),
    "float_type": (
        "{field}应为数字",
        "{field}應為數字",
        "{Field} must be a number.",
        "{Field} tem de ser um número.",
    ),
    "float_parsing": (
        "{field}应为数字",
        "{field}應為數字",
        "{Field} must be a number.",
        "{Field} tem de ser um número.",
    ),
    "bool_type": (
        "{field}应为是或否",
        "{field}應為是或否",
        "{Field} must be true or false.",
        "{Field} tem de ser verdadeiro ou falso.",
    ),
    "bool_parsing": (
        "{field}应为是或否",
        "{field}應為是或否",
        "{Field} must be true or false.",
        "{Field} tem de ser verdadeiro ou falso.",
    ),
    "string_type": (
        "{field}应为文字",
        "{field}應為文字",
        "{Field} must be text.",
        "{Field} tem de ser texto.",
    ),
    "string_unicode": (
        "{field}含有无效字符",
        "{field}含有無效字元",
        "{Field} holds characters that are not valid.",
        "{Field} contém caracteres inválidos.",
    ),
    "list_type": (
        "{field}应为列表",
        "{field}應為列表",
        "{Field} must be a list.",
        "{Field} tem de ser uma lista.",
    ),
    "dict_type": (
        "{field}应为对象",
        "{field}應為物件",
        "{Field} must be an object.",
        "{Field} tem de ser um objeto.",
    ),
    "model_type": (
        "{field}应为对象",
        "{field}應為物件",
        "{Field} must be an object.",
        "{Field} tem de ser um objeto.",
    ),
    "model_attributes_type": (
        "{field}应为对象",
        "{field}應為物件",
        "{Field} must be an object.",
        "{Field} tem de ser um objeto.",
    ),
    "uuid_parsing": (
        "{field}不是有效的编号",
        "{field}不是有效的編號",
        "{Field} is not a valid id.",
        "{Field} não é um id válido.",
    ),
    "uuid_type": (
        "{field}不是有效的编号",
        "{field}不是有效的編號",
        "{Field} is not a valid id.",
        "{Field} não é um id válido.",
    ),
    "value_error": ("{field}无效", "{field}無效", "{Field} is not valid.", "{Field} não é válido."),
    "invalid": ("{field}无效", "{field}無效", "{Field} is not valid.", "{Field} não é válido."),
    # domain reasons, named by the services
    "region_required": (
        "请选择手机号所属地区（澳门或香港）",
        "請選擇手機號碼所屬地區（澳門或香港）",
        "Choose the phone's region (Macao or Hong Kong).",
        "Escolha a região do telemóvel (Macau ou Hong Kong).",
    ),
    "check_digit": (
        "{field}的校验位不符，请检查是否输错",
        "{field}的校驗位不符，請檢查是否輸錯",
        "{Field}: the check digit does not match; please check for a typo.",
        "{Field}: o dígito de controlo não corresponde; verifique se há um erro.",
    ),
    "region": (
        "{field}的地区代码不正确",
        "{field}的地區代碼不正確",
        "{Field} has an unknown region code.",
        "{Field} tem um código de região desconhecido.",
    ),
    "unknown_region": (
        "地区代码不存在",
        "地區代碼不存在",
        "Unknown region code.",
        "Código de região desconhecido.",
    ),
    "date": (
        "{field}中的日期无效",
        "{field}中的日期無效",
        "{Field} holds no valid date.",
        "{Field} não contém uma data válida.",
    ),
    "birth_date_mismatch": (
        "出生日期与证件号码不符",
        "出生日期與證件號碼不符",
        "The birth date does not match the document number.",
        "A data de nascimento não corresponde ao número do documento.",
    ),
    "mismatch": (
        "{field}不一致",
        "{field}不一致",
        "{Field} does not match.",
        "{Field} não corresponde.",
    ),
    "unknown": (
        "{field}包含不认识的项",
        "{field}包含不認識的項",
        "{Field} holds an unknown item.",
        "{Field} contém um elemento desconhecido.",
    ),
    "limit": (
        "已达上限（{limit}）",
        "已達上限（{limit}）",
        "The limit ({limit}) is reached.",
        "O limite ({limit}) foi atingido.",
    ),
    "control_characters": (
        "{field}含有控制字符",
        "{field}含有控制字元",
        "{Field} holds control characters.",
        "{Field} contém caracteres de controlo.",
    ),
    "decision_not_deny": (
        "无效的码只能记为禁止通行",
        "無效的碼只能記為禁止通行",
        "A code that is not valid is recorded as denied.",
        "Um código que não é válido é registado como recusado.",
    ),
    "code_id_missing": (
        "有效的核验结果须注明健康码编号",
        "有效的核驗結果須註明健康碼編號",
        "A valid verdict names the code it was given to.",
        "Um veredicto válido indica o código a que foi dado.",
    ),
    "reason_with_valid": (
        "有效的核验结果不附原因",
        "有效的核驗結果不附原因",
        "A valid verdict has no reason.",
        "Um veredicto válido não tem motivo.",
    ),
    "reason_missing": (
        "无效或无法核验的结果须注明原因",
        "無效或無法核驗的結果須註明原因",
        "A verdict that is not valid gives its reason.",
        "Um veredicto que não é válido indica o motivo.",
    ),
    "scan_id_repeated": (
        "同一批记录中扫码编号不能重复",
        "同一批記錄中掃碼編號不能重複",
        "Each scan id appears once in a batch.",
        "Cada identificador de leitura aparece uma vez por lote.",
    ),
}
"""A field's message by its reason; ``{field}`` is the field's name, ``{limit}`` the bound the
reason names (a length, a number), when it has one."""

FIELD_REASONS: Final[Mapping[tuple[str, str], Texts]] = {
    ("birth_date", "date"): (
        "出生日期不能晚于今天",
        "出生日期不能晚於今天",
        "The birth date cannot be in the future.",
        "A data de nascimento não pode ser futura.",
    ),
}
"""Where a reason reads better said of one field in particular."""

_BY_STATUS: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}
# How a field's message follows the error's: zh "：" and "；", the others ": " and " ".
_JOIN: Final = {
    "zh-Hans": ("：", "；"),
    "zh-Hant": ("：", "；"),
    "en": (": ", " "),
    "pt": (": ", " "),
}


def _text(texts: Texts, language: str) -> str:
    return texts[LANGUAGES.index(language)]


def language_of(scope: Scope) -> str:
    """The answer's language: the request's ``Accept-Language``, all of it."""
    return pick_language(joined(scope, b"accept-language"))


def error_message(code: str, language: str, status: int = 400) -> str:
    """The message for ``code``; a code outside the list (none should be) reads as its status's."""
    texts = (
        ERRORS.get(code)
        or ERRORS[_BY_STATUS.get(status, "internal_error" if status >= 500 else "bad_request")]
    )
    return _text(texts, language)


def field_name(path: str, language: str) -> str:
    """A field's name for people: ``scans.3.verdict`` is ``scans.verdict``'s, an unnamed field
    its own path."""
    key = ".".join(part for part in path.split(".") if not part.isdigit())
    texts = FIELDS.get(key) or FIELDS.get(key.rpartition(".")[2])
    return _text(texts, language) if texts else path


def field_message(field: Mapping[str, Any], language: str) -> str:
    """What is wrong with one field, in ``language``."""
    reason = str(field.get("reason", ""))
    limit = field.get("limit", "")
    path = str(field.get("field", "body"))
    texts = FIELD_REASONS.get((path, reason)) or REASONS.get(reason) or REASONS["invalid"]
    name = field_name(path, language)
    return (
        _text(texts, language)
        .replace("{Field}", name[:1].upper() + name[1:])
        .replace("{field}", name)
        .replace("{limit}", str(limit))
    )


def localize(error: Mapping[str, Any], language: str, status: int) -> dict[str, Any]:
    """``error`` (the body's ``error`` member) with its messages in ``language``: the service's
    own text kept as ``detail``."""
    code = str(error.get("code", ""))
    out: dict[str, Any] = dict(error)
    message = error_message(code, language, status)
    fields = error.get("fields")
    if isinstance(fields, list) and fields:
        localized = []
        for field in fields:
            if not isinstance(field, Mapping):
                continue
            entry = dict(field)
            entry["message"] = field_message(field, language)
            if field.get("message"):
                entry["detail"] = field["message"]
            localized.append(entry)
        out["fields"] = localized
        said = list(dict.fromkeys(entry["message"] for entry in localized))
        if said:
            colon, separator = _JOIN[language]
            message = message.rstrip("。.") + colon + separator.join(said)
    out["message"] = message
    if error.get("message") and error["message"] != message:
        out["detail"] = error["message"]
    return out


def localize_body(body: bytes, language: str, status: int) -> bytes | None:
    """An error answer's JSON body localized, or None when it is not ``{"error": {...}}``."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("error"), dict):
        return None
    document["error"] = localize(document["error"], language, status)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def localizing(scope: Scope, send: Send) -> Send:
    """``send`` for one HTTP request, with an error answer's messages put in the request's
    language and ``Content-Language`` saying which. Only a JSON answer of status 400 or more,
    sent in one piece, is read; every other answer passes as it is."""
    held: Message | None = None

    async def sending(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start":
            if message["status"] >= 400 and _json(message["headers"]):
                held = message
                return
        elif held is not None:
            start, held = held, None
            if message["type"] == "http.response.body" and not message.get("more_body"):
                start, message = _localized(scope, start, message)
            await send(start)
        await send(message)

    return sending


def _json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"content-type" and value.startswith(b"application/json") for name, value in headers
    )


def _localized(scope: Scope, start: Message, body: Message) -> tuple[Message, Message]:
    language = language_of(scope)
    localized = localize_body(body["body"], language, start["status"])
    if localized is None:
        return start, body
    headers = [
        (name, value)
        for name, value in start["headers"]
        if name not in (b"content-length", b"content-language")
    ]
    headers += [
        (b"content-length", str(len(localized)).encode()),
        (b"content-language", language.encode()),
        (b"vary", b"Accept-Language"),
    ]
    return {**start, "headers": headers}, {**body, "body": localized}
