// The resident's page: sign in, bind an identity, show the code, contest a status, convert to a
// Macao code. Everything goes through the same JSON API as any other client.
import {
  ApiError,
  api,
  idempotencyKey,
  isoDay,
  isoTime,
  language,
  languageSwitcher,
  translatePage,
  translator,
} from "/static/app/common.js";

const TEXT = {
  title: { "zh-Hans": "粤康码", "zh-Hant": "粵康碼", en: "Yuekang Health Code", pt: "Código de Saúde de Guangdong" },
  "signin.title": { "zh-Hans": "手机号登录", "zh-Hant": "手機號碼登入", en: "Sign in with your phone", pt: "Entrar com o telemóvel" },
  "signin.region": { "zh-Hans": "手机号归属地", "zh-Hant": "手機號碼所屬地區", en: "Phone number from", pt: "Número de" },
  "signin.region_required": { "zh-Hans": "8 位号码请选择中国澳门或中国香港", "zh-Hant": "8 位號碼請選擇中國澳門或中國香港", en: "For an 8-digit number, choose Macao or Hong Kong", pt: "Para um número de 8 dígitos, escolha Macau ou Hong Kong" },
  "region.CN": { "zh-Hans": "中国内地 +86", "zh-Hant": "中國內地 +86", en: "Mainland China +86", pt: "China continental +86" },
  "region.MO": { "zh-Hans": "中国澳门 +853", "zh-Hant": "中國澳門 +853", en: "Macao +853", pt: "Macau +853" },
  "region.HK": { "zh-Hans": "中国香港 +852", "zh-Hant": "中國香港 +852", en: "Hong Kong +852", pt: "Hong Kong +852" },
  "signin.phone": { "zh-Hans": "手机号码", "zh-Hant": "手機號碼", en: "Phone number", pt: "Número de telemóvel" },
  "signin.send": { "zh-Hans": "获取验证码", "zh-Hant": "取得驗證碼", en: "Send code", pt: "Enviar código" },
  "signin.code": { "zh-Hans": "短信验证码", "zh-Hant": "短訊驗證碼", en: "Code from the SMS", pt: "Código do SMS" },
  "signin.verify": { "zh-Hans": "登录", "zh-Hant": "登入", en: "Sign in", pt: "Entrar" },
  "signin.resend": { "zh-Hans": "{seconds} 秒后可重新获取", "zh-Hant": "{seconds} 秒後可重新取得", en: "Send again in {seconds} s", pt: "Reenviar dentro de {seconds} s" },
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
  "code.kept_expires": { "zh-Hans": "有效至 {time}（离线保存的码，联网后刷新）", "zh-Hant": "有效至 {time}（離線保存的碼，連網後更新）", en: "Valid until {time} (kept offline; renews once online)", pt: "Válido até {time} (guardado offline; renova-se quando houver rede)" },
  "code.expires": { "zh-Hans": "有效至 {time}，到期前自动刷新", "zh-Hant": "有效至 {time}，到期前自動更新", en: "Valid until {time}; renews itself before then", pt: "Válido até {time}; renova-se antes" },
  "code.expired": { "zh-Hans": "已过期，请联网刷新", "zh-Hant": "已過期，請連網更新", en: "Expired: connect to the internet to renew", pt: "Expirado: ligue-se à internet para renovar" },
  "elder.toggle": { "zh-Hans": "关怀模式", "zh-Hant": "關懷模式", en: "Larger text", pt: "Texto maior" },
  "reason.override": { "zh-Hans": "工作人员已复核，赋{colour}（{since} 起）。", "zh-Hant": "工作人員已覆核，賦{colour}（{since} 起）。", en: "Staff reviewed your status and gave it {colour} on {since}.", pt: "Os funcionários reviram o seu estado e atribuíram-lhe {colour} em {since}." },
  "colour.green": { "zh-Hans": "绿码", "zh-Hant": "綠碼", en: "green", pt: "verde" },
  "colour.yellow": { "zh-Hans": "黄码", "zh-Hant": "黃碼", en: "yellow", pt: "amarelo" },
  "colour.red": { "zh-Hans": "红码", "zh-Hant": "紅碼", en: "red", pt: "vermelho" },
  "steps.title": { "zh-Hans": "下一步", "zh-Hant": "下一步", en: "What to do next", pt: "O que fazer a seguir" },
  "steps.red.stay": { "zh-Hans": "请留在家中或按通知隔离，暂不前往公共场所、不乘坐公共交通。", "zh-Hant": "請留在家中或按通知隔離，暫不前往公共場所、不乘搭公共交通工具。", en: "Stay at home, or in isolation as you were told; do not go to public places or use public transport.", pt: "Fique em casa, ou em isolamento conforme indicado; não vá a locais públicos nem use transportes públicos." },
  "steps.red.test": { "zh-Hans": "按社区或疾控部门的通知做核酸检测。", "zh-Hant": "按社區或疾控部門的通知做核酸檢測。", en: "Get tested when your community or the disease-control office tells you to.", pt: "Faça o teste quando a sua comunidade ou os serviços de saúde lhe indicarem." },
  "steps.yellow.test": { "zh-Hans": "尽快就近做核酸检测；结果阴性后健康码会自动更新。", "zh-Hant": "盡快就近做核酸檢測；結果陰性後健康碼會自動更新。", en: "Get a nucleic-acid test nearby soon; negative results update your code by themselves.", pt: "Faça em breve um teste de ácido nucleico perto de si; resultados negativos atualizam o código automaticamente." },
  "steps.yellow.avoid": { "zh-Hans": "结果出来前减少外出，不去人员密集场所。", "zh-Hant": "結果出來前減少外出，不去人多擠迫的地方。", en: "Until then, go out less and avoid crowded places.", pt: "Até lá, saia menos e evite locais com muita gente." },
  "steps.override": { "zh-Hans": "此状态由工作人员设定，新的检测结果不会自动改变它；如有异议请申诉或致电咨询热线。", "zh-Hant": "此狀態由工作人員設定，新的檢測結果不會自動改變它；如有異議請申訴或致電諮詢熱線。", en: "Staff set this status: a new test result does not change it by itself. If you think it is wrong, appeal or call the helpline.", pt: "Esta situação foi definida pelos funcionários: um novo resultado de teste não a altera por si. Se acha que está errada, recorra ou ligue para a linha de apoio." },
  "steps.appeal": { "zh-Hans": "认为赋码有误？点下方“申诉”说明情况。", "zh-Hant": "認為賦碼有誤？按下方「申訴」說明情況。", en: "Think this is wrong? Use “Appeal” below to tell us why.", pt: "Acha que está errado? Use «Recorrer» abaixo para explicar porquê." },
  "steps.hotline": { "zh-Hans": "咨询热线：", "zh-Hant": "諮詢熱線：", en: "Helpline: ", pt: "Linha de apoio: " },
  "appeal.wrote": { "zh-Hans": "您的申诉：", "zh-Hant": "您的申訴：", en: "You wrote: ", pt: "Escreveu: " },
  "code.converted": { "zh-Hans": "由澳门健康码转换", "zh-Hant": "由澳門健康碼轉換", en: "Converted from a Macao health code", pt: "Convertido do código de saúde de Macau" },
  "appeal.open": { "zh-Hans": "对赋码有异议？申诉", "zh-Hant": "對賦碼有異議？申訴", en: "Think this is wrong? Appeal", pt: "Discorda? Recorrer" },
  "appeal.title": { "zh-Hans": "申诉", "zh-Hant": "申訴", en: "Appeal", pt: "Recurso" },
  "appeal.text": { "zh-Hans": "请说明原因", "zh-Hant": "請說明原因", en: "Tell us why", pt: "Explique porquê" },
  "appeal.submit": { "zh-Hans": "提交申诉", "zh-Hant": "提交申訴", en: "Send appeal", pt: "Enviar recurso" },
  "appeal.pending": { "zh-Hans": "审核中（{when} 提交）", "zh-Hant": "審核中（{when} 提交）", en: "Being reviewed (sent {when})", pt: "Em análise (enviado {when})" },
  "appeal.accepted": { "zh-Hans": "申诉已通过：{reason}", "zh-Hant": "申訴已通過：{reason}", en: "Appeal granted: {reason}", pt: "Recurso aceite: {reason}" },
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
  "signout.all": { "zh-Hans": "退出所有设备", "zh-Hant": "登出所有裝置", en: "Sign out on every phone", pt: "Sair em todos os telemóveis" },
  "error.network": { "zh-Hans": "网络不可用，请稍后重试", "zh-Hant": "網絡不可用，請稍後重試", en: "No network; try again", pt: "Sem rede; tente de novo" },

  // Proving the identity (residents/binding.py): each outcome in words.
  "bind.error.identity_mismatch": { "zh-Hans": "信息与户籍登记不一致，请按证件上的姓名、号码和出生日期填写", "zh-Hant": "資料與戶籍登記不一致，請按證件上的姓名、號碼和出生日期填寫", en: "These details do not match the population register. Enter the name, number and date of birth exactly as printed on the document.", pt: "Os dados não coincidem com o registo da população. Escreva o nome, o número e a data de nascimento tal como constam do documento." },
  "bind.error.phone_not_registered_to_holder": { "zh-Hans": "本手机号不是证件本人实名登记的号码：可由家人代办，或携带证件到服务窗口核验", "zh-Hant": "本手機號碼不是證件本人實名登記的號碼：可由家人代辦，或攜帶證件到服務窗口核驗", en: "This phone number is not registered to the document's holder: a family member can hold your code for you, or bring the document to a service counter to be verified.", pt: "Este número não está registado em nome do titular do documento: um familiar pode ter o seu código, ou dirija-se com o documento a um balcão de atendimento." },
  "bind.error.document_already_bound": { "zh-Hans": "该证件已由另一个实名核验的账号绑定，请携带证件到服务窗口办理", "zh-Hant": "該證件已由另一個實名核驗的帳號綁定，請攜帶證件到服務窗口辦理", en: "This document is bound to another account that verified it. Please bring the document to a service counter.", pt: "Este documento está associado a outra conta que o verificou. Dirija-se com o documento a um balcão de atendimento." },
  "bind.error.proofing_unavailable": { "zh-Hans": "实名核验服务暂时不可用，未作任何绑定，请稍后再试", "zh-Hant": "實名核驗服務暫時不可用，未作任何綁定，請稍後再試", en: "The identity check is not available just now. Nothing was bound; please try again later.", pt: "A verificação de identidade não está disponível de momento. Nada foi associado; tente mais tarde." },
  "bind.error.rate_limited": { "zh-Hans": "核验次数过多，请稍后再试", "zh-Hant": "核驗次數過多，請稍後再試", en: "Too many verification attempts; please try again later.", pt: "Demasiadas tentativas de verificação; tente mais tarde." },
  "bind.error.identity_already_bound": { "zh-Hans": "本账号已绑定另一张已核验的证件", "zh-Hant": "本帳號已綁定另一張已核驗的證件", en: "This account already holds another verified document.", pt: "Esta conta já tem outro documento verificado." },
  "wait.s": { "zh-Hans": "（{n} 秒后可重试）", "zh-Hant": "（{n} 秒後可重試）", en: " (try again in {n} s)", pt: " (tente de novo dentro de {n} s)" },
  "wait.m": { "zh-Hans": "（约 {n} 分钟后可重试）", "zh-Hant": "（約 {n} 分鐘後可重試）", en: " (try again in about {n} min)", pt: " (tente de novo dentro de cerca de {n} min)" },
  "wait.h": { "zh-Hans": "（约 {n} 小时后可重试）", "zh-Hant": "（約 {n} 小時後可重試）", en: " (try again in about {n} h)", pt: " (tente de novo dentro de cerca de {n} h)" },
  "bind.reclaimed": { "zh-Hans": "该证件此前被另一个未经实名核验的账号绑定，现已从该账号解除，并绑定到您的账号。", "zh-Hant": "該證件此前被另一個未經實名核驗的帳號綁定，現已從該帳號解除，並綁定到您的帳號。", en: "This document had been bound to another account that never verified it. It has been released from that account and is now bound to yours.", pt: "Este documento estava associado a outra conta que nunca o verificou. Foi libertado dessa conta e está agora associado à sua." },
  "unverified.title": { "zh-Hans": "身份待核验", "zh-Hant": "身份待核驗", en: "Identity not yet verified", pt: "Identidade por verificar" },
  "unverified.text": { "zh-Hans": "您的证件是在实名核验上线前绑定的，核验通过前无法获取健康码。请按证件重新填写下面的信息完成核验；也可以改填本人名下的另一张证件。", "zh-Hant": "您的證件是在實名核驗上線前綁定的，核驗通過前無法取得健康碼。請按證件重新填寫下面的資料完成核驗；也可以改填本人名下的另一張證件。", en: "Your document was bound before identity checks began, and there is no code until it is verified. Enter its details again below, exactly as printed, or another document of yours.", pt: "O seu documento foi associado antes de existirem verificações de identidade e não há código até ser verificado. Volte a escrever os dados abaixo, tal como constam do documento, ou os de outro documento seu." },
  "unverified.bound": { "zh-Hans": "当前绑定：{name} · {doc} {number}", "zh-Hant": "目前綁定：{name} · {doc} {number}", en: "Bound now: {name} · {doc} {number}", pt: "Associado agora: {name} · {doc} {number}" },

  // How the identity was proved (residents/assurance.py), as the scanner says it too.
  "assurance.proofed": { "zh-Hans": "已实名核验", "zh-Hant": "已實名核驗", en: "Identity verified", pt: "Identidade verificada" },
  "assurance.counter": { "zh-Hans": "窗口核验", "zh-Hant": "窗口核驗", en: "Verified at a counter", pt: "Verificada no balcão" },
  "assurance.partner": { "zh-Hans": "澳门核验", "zh-Hant": "澳門核驗", en: "Verified by Macao", pt: "Verificada por Macau" },
  "assurance.dependant": { "zh-Hans": "亲友代办", "zh-Hant": "親友代辦", en: "Family member's code", pt: "Código de familiar" },
  "assurance.unverified": { "zh-Hans": "身份待核验", "zh-Hant": "身份待核驗", en: "Identity not yet verified", pt: "Identidade por verificar" },
  "identity.title": { "zh-Hans": "实名信息", "zh-Hant": "實名資料", en: "Your identity", pt: "A sua identidade" },
  "identity.proofed_at": { "zh-Hans": "核验于 {when}", "zh-Hant": "核驗於 {when}", en: "on {when}", pt: "em {when}" },

  // Family members (亲友代办).
  "family.title": { "zh-Hans": "家人（亲友代办）", "zh-Hant": "家人（親友代辦）", en: "Family members", pt: "Familiares" },
  "family.note": { "zh-Hans": "为没有智能手机的孩子和老人代办健康码。每位家人都要通过户籍核验；成年家人须本人同意。", "zh-Hant": "為沒有智能手機的孩子和長者代辦健康碼。每位家人都要通過戶籍核驗；成年家人須本人同意。", en: "Hold the health codes of children and older relatives without a smartphone. Each is checked against the population register; an adult must agree.", pt: "Tenha os códigos de saúde de crianças e familiares idosos sem smartphone. Cada um é verificado no registo da população; um adulto tem de concordar." },
  "family.empty": { "zh-Hans": "还没有添加家人", "zh-Hant": "還沒有添加家人", en: "No family members yet", pt: "Ainda sem familiares" },
  "family.add": { "zh-Hans": "添加家人", "zh-Hant": "添加家人", en: "Add a family member", pt: "Adicionar familiar" },
  "family.name": { "zh-Hans": "家人姓名", "zh-Hant": "家人姓名", en: "Their full name", pt: "Nome completo do familiar" },
  "family.relationship": { "zh-Hans": "家人是您的", "zh-Hant": "家人是您的", en: "They are your", pt: "Relação consigo" },
  "family.phone": { "zh-Hans": "家人本人的手机号（选填）", "zh-Hant": "家人本人的手機號碼（選填）", en: "Their own mobile number (optional)", pt: "Telemóvel do próprio familiar (opcional)" },
  "family.phone.note": { "zh-Hans": "必须是家人本人实名登记的号码，不能填您自己的：我们会向这个号码发送验证码，请家人告诉您。没有手机的，也可以由家人携带证件到服务窗口确认同意。", "zh-Hant": "必須是家人本人實名登記的號碼，不能填您自己的：我們會向這個號碼發送驗證碼，請家人告訴您。沒有手機的，也可以由家人攜帶證件到服務窗口確認同意。", en: "It must be the number registered to them, not yours: we text it a code, which they tell you. Without a phone they can agree at a service counter, with their document.", pt: "Tem de ser o número registado em nome do familiar, não o seu: enviamos-lhe um código, que ele lhe diz. Sem telemóvel, pode concordar num balcão de atendimento, com o documento." },
  "family.minor.note": { "zh-Hans": "未满 18 周岁的家人添加后即可使用。", "zh-Hant": "未滿 18 歲的家人添加後即可使用。", en: "A family member under 18 is active as soon as they are added.", pt: "Um familiar com menos de 18 anos fica ativo logo que é adicionado." },
  "family.submit": { "zh-Hans": "添加", "zh-Hant": "添加", en: "Add", pt: "Adicionar" },
  "family.cancel": { "zh-Hans": "取消", "zh-Hant": "取消", en: "Cancel", pt: "Cancelar" },
  "family.added": { "zh-Hans": "已添加{name}", "zh-Hant": "已添加{name}", en: "{name} added", pt: "{name} adicionado(a)" },
  "family.state.active": { "zh-Hans": "已生效", "zh-Hant": "已生效", en: "Active", pt: "Ativo" },
  "family.state.pending_consent": { "zh-Hans": "等待家人同意", "zh-Hant": "等待家人同意", en: "Waiting for their consent", pt: "A aguardar o consentimento" },
  "family.show": { "zh-Hans": "出示健康码", "zh-Hant": "出示健康碼", en: "Show their code", pt: "Mostrar o código" },
  "family.remove": { "zh-Hans": "移除", "zh-Hant": "移除", en: "Remove", pt: "Remover" },
  "family.remove.confirm": { "zh-Hans": "确定移除{name}？其健康码将立即作废。", "zh-Hant": "確定移除{name}？其健康碼將立即作廢。", en: "Remove {name}? Their codes stop working at once.", pt: "Remover {name}? Os códigos deixam de funcionar de imediato." },
  "family.remove.yes": { "zh-Hans": "确认移除", "zh-Hant": "確認移除", en: "Yes, remove", pt: "Sim, remover" },
  "family.removed": { "zh-Hans": "已移除{name}", "zh-Hant": "已移除{name}", en: "{name} removed", pt: "{name} removido(a)" },
  "family.consent.code": { "zh-Hans": "家人收到的 6 位验证码", "zh-Hant": "家人收到的 6 位驗證碼", en: "The 6-digit code they received", pt: "O código de 6 dígitos que recebeu" },
  "family.consent.submit": { "zh-Hans": "确认同意", "zh-Hant": "確認同意", en: "Confirm", pt: "Confirmar" },
  "family.consent.resend": { "zh-Hans": "重新发送验证码", "zh-Hant": "重新發送驗證碼", en: "Send a new code", pt: "Enviar novo código" },
  "family.consent.resent": { "zh-Hans": "已向家人重新发送验证码", "zh-Hant": "已向家人重新發送驗證碼", en: "A new code was sent to them", pt: "Foi-lhe enviado um novo código" },
  "family.consent.format": { "zh-Hans": "请输入 6 位数字", "zh-Hant": "請輸入 6 位數字", en: "Enter the 6 digits", pt: "Escreva os 6 dígitos" },
  "family.consent.done": { "zh-Hans": "{name}已同意，可以出示健康码", "zh-Hant": "{name}已同意，可以出示健康碼", en: "{name} agreed: their code can be shown", pt: "{name} concordou: o código pode ser mostrado" },
  "family.consent.counter_only": { "zh-Hans": "请家人携带证件到服务窗口确认同意，办理编号：", "zh-Hant": "請家人攜帶證件到服務窗口確認同意，辦理編號：", en: "They agree at a service counter with their document; reference:", pt: "Concorda num balcão de atendimento, com o documento; referência:" },
  "family.consent.counter": { "zh-Hans": "也可以由家人携带证件到服务窗口确认同意，办理编号：", "zh-Hant": "也可以由家人攜帶證件到服務窗口確認同意，辦理編號：", en: "Or they can agree at a service counter with their document; reference:", pt: "Ou pode concordar num balcão de atendimento, com o documento; referência:" },
  "family.card.label": { "zh-Hans": "亲友代办 · {name}", "zh-Hant": "親友代辦 · {name}", en: "Family member · {name}", pt: "Familiar · {name}" },
  "family.card.relationship": { "zh-Hans": "您的{relationship}", "zh-Hant": "您的{relationship}", en: "Your {relationship}", pt: "Relação: {relationship}" },
  "family.back": { "zh-Hans": "返回我的健康码", "zh-Hant": "返回我的健康碼", en: "Back to my code", pt: "Voltar ao meu código" },
  "family.error.dependant_limit": { "zh-Hans": "最多可添加 {n} 位家人", "zh-Hant": "最多可添加 {n} 位家人", en: "You can add at most {n} family members", pt: "Pode adicionar no máximo {n} familiares" },
  "family.error.guardian_unverified": { "zh-Hans": "请先完成本人实名核验", "zh-Hant": "請先完成本人實名核驗", en: "Verify your own identity first", pt: "Verifique primeiro a sua própria identidade" },
  "family.error.guardian_not_adult": { "zh-Hans": "只有成年人可以添加家人", "zh-Hant": "只有成年人可以添加家人", en: "Only adults can add family members", pt: "Só adultos podem adicionar familiares" },
  "family.error.consent_code_wrong": { "zh-Hans": "验证码错误", "zh-Hant": "驗證碼錯誤", en: "Wrong code", pt: "Código errado" },
  "family.error.consent_code_expired": { "zh-Hans": "验证码已过期，请重新发送", "zh-Hant": "驗證碼已過期，請重新發送", en: "The code has expired; send a new one", pt: "O código expirou; envie um novo" },
  "family.error.consent_attempts_exceeded": { "zh-Hans": "错误次数过多，请重新发送验证码", "zh-Hant": "錯誤次數過多，請重新發送驗證碼", en: "Too many wrong codes; send a new one", pt: "Demasiados códigos errados; envie um novo" },
  "family.error.consent_pending": { "zh-Hans": "等待家人同意", "zh-Hant": "等待家人同意", en: "Waiting for their consent", pt: "A aguardar o consentimento" },
  "family.error.consent_not_pending": { "zh-Hans": "没有等待家人同意的请求", "zh-Hant": "沒有等待家人同意的請求", en: "Nothing is waiting for their agreement", pt: "Nada aguarda a concordância deste familiar" },
  "family.error.consent_phone_missing": { "zh-Hans": "没有填写家人的手机号，无法发送验证码：请家人携带证件到服务窗口确认同意", "zh-Hant": "沒有填寫家人的手機號碼，無法發送驗證碼：請家人攜帶證件到服務窗口確認同意", en: "No phone was given for them, so no code can be sent: they can agree at a service counter with their document", pt: "Não foi indicado telemóvel, por isso não há código: pode concordar num balcão de atendimento, com o documento" },
  "family.error.consent_resend_too_soon": { "zh-Hans": "验证码刚刚发出，请一分钟后再试", "zh-Hant": "驗證碼剛剛發出，請一分鐘後再試", en: "A code was sent less than a minute ago; try again shortly", pt: "Foi enviado um código há menos de um minuto; tente daqui a pouco" },
  "family.error.phone_not_registered_to_holder": { "zh-Hans": "该手机号不是家人本人实名登记的号码：请填写家人自己的手机号，或由家人携带证件到服务窗口确认", "zh-Hant": "該手機號碼不是家人本人實名登記的號碼：請填寫家人自己的手機號碼，或由家人攜帶證件到服務窗口確認", en: "This number is not registered to your family member: enter their own number, or they can agree at a service counter with their document", pt: "Este número não está registado em nome do familiar: indique o número dele, ou ele pode concordar num balcão de atendimento, com o documento" },
  "family.error.dependant_is_guardian": { "zh-Hans": "这是您本人的证件", "zh-Hant": "這是您本人的證件", en: "This is your own document", pt: "Este é o seu próprio documento" },
  "family.error.dependant_not_found": { "zh-Hans": "该家人已不在您的列表中", "zh-Hant": "該家人已不在您的列表中", en: "This family member is no longer on your list", pt: "Este familiar já não está na sua lista" },
  "rel.child": { "zh-Hans": "子女", "zh-Hant": "子女", en: "child", pt: "filho(a)" },
  "rel.parent": { "zh-Hans": "父母", "zh-Hant": "父母", en: "parent", pt: "pai/mãe" },
  "rel.spouse": { "zh-Hans": "配偶", "zh-Hant": "配偶", en: "spouse", pt: "cônjuge" },
  "rel.grandparent": { "zh-Hans": "祖父母/外祖父母", "zh-Hant": "祖父母/外祖父母", en: "grandparent", pt: "avô/avó" },
  "rel.grandchild": { "zh-Hans": "孙子女/外孙子女", "zh-Hant": "孫子女/外孫子女", en: "grandchild", pt: "neto(a)" },
  "rel.sibling": { "zh-Hans": "兄弟姐妹", "zh-Hant": "兄弟姊妹", en: "brother or sister", pt: "irmão/irmã" },
  "rel.other": { "zh-Hans": "其他亲友", "zh-Hant": "其他親友", en: "other relative or friend", pt: "outro familiar ou amigo" },

  // Arrangements naming this person's phone (an adult family member's own view).
  "guardians.title": { "zh-Hans": "代办授权", "zh-Hant": "代辦授權", en: "Who holds your code", pt: "Quem tem o seu código" },
  "guardians.note": { "zh-Hans": "以下账号正在为您代办健康码，您可以随时解除。", "zh-Hant": "以下帳號正在為您代辦健康碼，您可以隨時解除。", en: "These accounts hold your health code for you. You can end this at any time.", pt: "Estas contas têm o seu código de saúde. Pode terminar isto a qualquer momento." },
  "guardians.item": { "zh-Hans": "您是对方的{relationship}", "zh-Hant": "您是對方的{relationship}", en: "you are their {relationship}", pt: "relação: {relationship}" },
  "guardians.end": { "zh-Hans": "解除代办", "zh-Hant": "解除代辦", en: "End it", pt: "Terminar" },
  "guardians.end.confirm": { "zh-Hans": "确定解除？{name}将不能再为您出示健康码。", "zh-Hant": "確定解除？{name}將不能再為您出示健康碼。", en: "End it? {name} will no longer be able to show your code.", pt: "Terminar? {name} deixa de poder mostrar o seu código." },
  "guardians.end.yes": { "zh-Hans": "确认解除", "zh-Hant": "確認解除", en: "Yes, end it", pt: "Sim, terminar" },
  "guardians.ended": { "zh-Hans": "已解除{name}的代办", "zh-Hant": "已解除{name}的代辦", en: "{name} no longer holds your code", pt: "{name} deixou de ter o seu código" },
};

const t = translator(TEXT);
const $ = (id) => document.getElementById(id);
// The session's two tokens, kept by this browser (docs/API.md, "Sessions"): the access token
// goes with every request; the refresh token renews it, once.
const SESSION_KEY = "yk.session";
// The last code shown, kept so that the page opens with it when there is no network: its image
// (a data: URL), colour, times and masked name -- what the screen shows anyway, never a document
// number. Forgotten on sign-out.
const KEPT_KEY = "yk.lastcode";
// 关怀模式 (elder mode), remembered on this phone.
const ELDER_KEY = "yk.elder";

function storedSession() {
  try {
    const stored = JSON.parse(localStorage.getItem(SESSION_KEY));
    return stored && stored.access_token && stored.refresh_token ? stored : null;
  } catch {
    return null; // a token from before sessions could be renewed: sign in again
  }
}

const state = {
  token: storedSession()?.access_token || null,
  // The sign-in challenge whose code is being typed.
  challenge: null,
  code: null,
  renewAt: Infinity,
  renewing: false,
  imageUrl: null,
  watching: false,
  // The bound identity as GET /v1/me answered it, and whether binding took it from another account.
  identity: null,
  reclaimed: false,
  // The family member whose code is on screen: {id, name, code, renewAt, renewing, imageUrl}.
  dep: null,
  guardiansShown: false,
  // Showing the kept code because the server could not be reached when the page opened.
  kept: false,
  // The server could not be reached when the page opened: it is asked again.
  unreached: false,
  // Counts sign-outs. An answer asked for before the last one belongs to the person who signed
  // out: it is dropped (withSession), so nothing of theirs reaches the screen of the next.
  session: 0,
};
// What a dropped answer resolves to: nothing, ever. The work that waited for it stops there.
const DROPPED = new Promise(() => {});
// Codes and clocks are shown in Guangdong time, whatever the phone's own zone.
const TIME_ZONE = "Asia/Shanghai";
// The status colours, darker than the first ones so that white text on them is readable (WCAG AA,
// 4.5:1): the same in resident.css.
const THEME = { green: "#0a7d3e", yellow: "#e8b100", red: "#c62828" };
// From this age a family member must agree: the page asks for their phone only from then. The
// server's setting (GET /v1/me/dependants/rules) replaces the default once the family loads.
let adultAge = 18;
const SECTIONS = ["signin", "bind", "code", "dependant"];

function show(section) {
  for (const id of SECTIONS) $(id).classList.toggle("hidden", id !== section);
  // Who holds this person's codes is shown beside the binding form and the code screen.
  $("guardians").classList.toggle("hidden", !state.guardiansShown || !["bind", "code"].includes(section));
}

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

/** What to show for a failed call: the API's message, which is in the page's language (the API
 * answers errors in the Accept-Language the page sends), else "network". */
function errorText(error) {
  if (!(error instanceof ApiError)) return t("error.network");
  return error.message;
}

function waitText(seconds) {
  if (seconds < 90) return t("wait.s", { n: seconds });
  if (seconds < 90 * 60) return t("wait.m", { n: Math.round(seconds / 60) });
  return t("wait.h", { n: Math.round(seconds / 3600) });
}

/** An error of proving an identity or of family members, in the page's words: `scope`'s own
 * text for the code (family.error.*), then the binding's (bind.error.*), else the API's message. A 429 or 503 says when to try again (Retry-After). */
function errorWords(error, scope = "bind") {
  if (!(error instanceof ApiError)) return t("error.network");
  const key = [`${scope}.error.${error.code}`, `bind.error.${error.code}`].find((k) => k in TEXT);
  if (!key) return error.message;
  // The limit is configured on the server, which names it in the error's fields.
  const bound = error.fields.find((field) => field.reason === "limit");
  const limit = error.code === "dependant_limit" ? (bound ? bound.limit : null) : "";
  if (limit === null) return error.message;
  let text = t(key, { n: limit });
  if (["proofing_unavailable", "rate_limited"].includes(error.code) && error.retryAfter) {
    text += waitText(error.retryAfter);
  }
  return text;
}

/** Show an API error's field messages next to their fields (`target(field)` finds the place),
 * the rest as one message in `general`. */
function showErrors(error, target, general, scope) {
  let placed = false;
  if (error instanceof ApiError) {
    for (const field of error.fields) {
      const place = target(field.field);
      if (!place) continue;
      place.textContent = field.message;
      const input = place.previousElementSibling;
      if (input && ["INPUT", "SELECT"].includes(input.tagName)) input.setAttribute("aria-invalid", "true");
      placed = true;
    }
  }
  if (!placed) general.textContent = errorWords(error, scope);
}

function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error, .error")) node.textContent = "";
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

function fail(error) {
  $("fatal").textContent = errorText(error);
}

/** `when` in Guangdong time: 08:17, with `withDate` 2026-12-07 08:17, with `seconds` :05 after. */
function formatTime(when, withDate = false, seconds = false) {
  return isoTime(when, { timeZone: TIME_ZONE, date: withDate, seconds });
}

function formatDay(when) {
  return isoDay(when, { timeZone: TIME_ZONE });
}

/** Whether someone born on `birth` (YYYY-MM-DD) is an adult today, in Guangdong. */
function isAdult(birth) {
  const born = /^(\d{4})-(\d{2})-(\d{2})$/.exec(birth || "");
  if (!born) return false;
  const [year, month, day] = formatDay(new Date()).split("-").map(Number);
  const age = year - Number(born[1]) - (month * 100 + day < Number(born[2]) * 100 + Number(born[3]) ? 1 : 0);
  return age >= adultAge;
}

/** A mainland mobile typed without its country code gets it; anything else goes as typed. */
function e164(phone) {
  const digits = phone.replace(/[\s-]/g, "");
  return /^1[3-9]\d{9}$/.test(digits) ? `+86${digits}` : digits;
}

function setTheme(status) {
  document.querySelector('meta[name="theme-color"]').content = THEME[status] || THEME.green;
}

function keepSession(tokens) {
  state.token = tokens.access_token;
  localStorage.setItem(
    SESSION_KEY,
    JSON.stringify({ access_token: tokens.access_token, refresh_token: tokens.refresh_token }),
  );
}

let renewal = null;

/** Renew the session whose access token `expired` ran out. A refresh token works once (used
 * twice, the server ends the session), so tabs take turns under a lock, and a tab that finds
 * the token already renewed by another uses that one. */
function renewSession(expired) {
  const session = state.session;
  renewal ||= navigator.locks
    .request(SESSION_KEY, async () => {
      const stored = storedSession();
      if (!stored) throw new ApiError(401, null);
      if (stored.access_token !== expired) {
        state.token = stored.access_token;
        return;
      }
      const renewed = await api("/v1/auth/refresh", { method: "POST", body: { refresh_token: stored.refresh_token } });
      // Signed out meanwhile: the renewed tokens are not kept for whoever signs in next.
      if (state.session !== session) throw new ApiError(401, null);
      keepSession(renewed);
    })
    .finally(() => {
      renewal = null;
    });
  return renewal;
}

/** A request with the session: an expired access token is renewed once and the request sent
 * again; any other 401 (signed out elsewhere, session ended) signs this page out. */
async function withSession(send) {
  const token = state.token;
  const session = state.session;
  // An answer (or a failure) for someone who has signed out since is dropped: their code, their
  // status or their 401 must not reach the next person's screen, nor sign them out.
  const mine = (answer) => (state.session === session ? answer : DROPPED);
  try {
    return mine(await send(token));
  } catch (error) {
    if (state.session !== session) return DROPPED;
    if (!(error instanceof ApiError && error.status === 401)) throw error;
    if (error.code === "token_expired") {
      try {
        await renewSession(token);
      } catch (renewError) {
        if (state.session !== session) return DROPPED;
        signOut();
        throw renewError;
      }
      if (state.session !== session) return DROPPED;
      try {
        return mine(await send(state.token));
      } catch (retryError) {
        if (state.session !== session) return DROPPED;
        throw retryError;
      }
    }
    signOut();
    throw error;
  }
}

async function authed(path, options = {}) {
  const answer = await withSession((token) => api(path, { ...options, token }));
  // The server answered: a "no network" (or other) banner from an earlier call is out of date.
  $("fatal").textContent = "";
  return answer;
}

/** A binary resource (an image) with the session. */
async function authedBlob(path) {
  return withSession(async (token) => {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token}`, "Accept-Language": language() } });
    if (!response.ok) {
      const text = await response.text();
      let body = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        body = null;
      }
      throw new ApiError(response.status, body, response.headers);
    }
    return response.blob();
  });
}

/** Sign out on the server too (`everywhere`: every phone of the account), then here. The page
 * forgets the session even if the server cannot be reached. */
async function signOutByUser(everywhere = false) {
  const token = state.token;
  if (token) {
    const request = everywhere
      ? api("/v1/me/sessions", { method: "DELETE", token })
      : api("/v1/auth/logout", { method: "POST", token });
    await request.catch(() => {});
  }
  signOut();
}

function signOut() {
  state.session += 1;
  localStorage.removeItem(SESSION_KEY);
  localStorage.removeItem(KEPT_KEY);
  state.kept = false;
  state.unreached = false;
  $("code").classList.remove("kept");
  state.token = null;
  state.challenge = null;
  stopCode();
  clearCodeView();
  clearSignIn();
  closeDependant(false);
  state.identity = null;
  state.reclaimed = false;
  state.guardiansShown = false;
  $("bind-form").reset();
  clearErrors($("bind-form"));
  $("unverified-notice").classList.add("hidden");
  $("family-list").replaceChildren();
  $("guardians-list").replaceChildren();
  for (const id of ["family-status", "family-error", "guardians-status", "guardians-error"]) $(id).textContent = "";
  closeFamilyForm(false);
  clearMacao();
  // The appeal box and its history were the last person's.
  $("appeal").classList.add("hidden");
  $("appeal-history").replaceChildren();
  $("appeal-form").reset();
  $("fatal").textContent = "";
  // Work for the last person that was dropped midway (withSession) never reached its finally.
  state.renewing = false;
  $("bind-submit").disabled = false;
  show("signin");
}

/** Empty the code screen: the next person's view starts blank, never with the last one's QR,
 * colour, name, times, reasons or tiles (its image is let go of, not only hidden). */
function clearCodeView() {
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = null;
  $("qr").removeAttribute("src");
  $("qr").alt = "";
  const card = $("code-card");
  card.dataset.status = "";
  delete card.dataset.expired;
  $("expired-note").textContent = "";
  for (const id of ["status-word", "masked-name", "expiry", "valid-until", "nat-value", "vx-value"]) $(id).textContent = "";
  for (const id of ["assurance-badge", "identity-assurance", "identity-name", "identity-doc", "identity-proofed"]) {
    $(id).textContent = "";
    delete $(id).dataset.level;
  }
  $("explanation").replaceChildren();
  $("next-steps").replaceChildren();
  for (const id of ["next-steps-box", "appeal-open", "macao-offer", "source-note", "reclaimed-note"]) $(id).classList.add("hidden");
  setTheme(null);
}

/** The sign-in forms as on a fresh page: no number, no code sent, no countdown of the last
 * person's resend wait. */
function clearSignIn() {
  clearInterval(resendTimer);
  resendTimer = null;
  $("phone-form").reset();
  $("phone").placeholder = PLACEHOLDER[$("region").value];
  $("otp-form").reset();
  $("otp-form").classList.add("hidden");
  $("dev-code").textContent = "";
  for (const id of ["phone-error", "otp-error"]) $(id).textContent = "";
  for (const id of ["phone", "region", "otp"]) $(id).removeAttribute("aria-invalid");
  $("send-code").disabled = false;
  $("send-code").textContent = t("signin.send");
}

// --- sign in -------------------------------------------------------------------------------------

let resendTimer = null;

/** The send button waits, counting down, until another code may be sent. */
function waitToResend(seconds) {
  clearInterval(resendTimer);
  const button = $("send-code");
  const until = Date.now() + seconds * 1_000;
  const paint = () => {
    const left = Math.ceil((until - Date.now()) / 1_000);
    button.disabled = left > 0;
    button.textContent = left > 0 ? t("signin.resend", { seconds: left }) : t("signin.send");
    if (left <= 0) clearInterval(resendTimer);
  };
  paint();
  resendTimer = setInterval(paint, 1_000);
}

/** The number as typed, with where it is from: the server reads an 8-digit Macao or Hong Kong
 * number by its region, and an 11-digit mainland one (or one with its +86/+853/+852) by itself. */
function phoneBody() {
  const region = $("region").value;
  // The mainland is what the server assumes without a region; left out, an 8-digit number is
  // answered "which region?" (region_required) rather than "not a mobile number".
  return region === "CN" ? { phone: $("phone").value.trim() } : { phone: $("phone").value.trim(), region };
}

const PLACEHOLDER = { CN: "13800138000", MO: "66123456", HK: "51234567" };

async function sendCode(event) {
  event.preventDefault();
  const button = $("send-code");
  // One code per tap: the button rests from the first tap until the server has answered, then
  // counts down the server's resend interval.
  if (button.disabled) return;
  button.disabled = true;
  $("phone-error").textContent = "";
  $("phone").removeAttribute("aria-invalid");
  $("region").removeAttribute("aria-invalid");
  try {
    const sent = await api("/v1/auth/otp", { method: "POST", body: phoneBody() });
    state.challenge = sent.challenge_id;
    waitToResend(sent.resend_in ?? 60);
    $("otp-form").classList.remove("hidden");
    // Development servers hand the code back; production ones only send the SMS.
    $("dev-code").textContent = sent.dev_code ? t("signin.dev", { code: sent.dev_code }) : "";
    $("otp").focus();
  } catch (error) {
    if (error instanceof ApiError && error.code === "otp_resend_wait" && error.retryAfter) {
      waitToResend(error.retryAfter);
    } else {
      button.disabled = false;
    }
    const field = error instanceof ApiError && error.fields.find((f) => ["phone", "region"].includes(f.field));
    if (field && field.reason === "region_required") {
      $("phone-error").textContent = t("signin.region_required");
      $("region").setAttribute("aria-invalid", "true");
      $("region").focus();
    } else {
      $("phone-error").textContent = field ? field.message : errorText(error);
      if (field) $("phone").setAttribute("aria-invalid", "true");
    }
  }
}

async function verifyCode(event) {
  event.preventDefault();
  $("otp-error").textContent = "";
  $("otp").removeAttribute("aria-invalid");
  let tokens;
  try {
    tokens = await api("/v1/auth/token", {
      method: "POST",
      body: { ...phoneBody(), challenge_id: state.challenge, code: $("otp").value.trim() },
    });
  } catch (error) {
    // Under the code field, which is on screen: the code was wrong, or ran out.
    $("otp-error").textContent = errorText(error);
    $("otp").setAttribute("aria-invalid", "true");
    $("otp").focus();
    return;
  }
  keepSession(tokens);
  clearSignIn();
  // Nothing is shown until this person's own screen is ready (start, showCode).
  show(null);
  // Signed in: what goes wrong from here (the code, the status) is not about the code typed,
  // and the sign-in form may be gone by then -- it is said in the banner at the top.
  await start().catch(fail);
}

// --- identity ------------------------------------------------------------------------------------

/** The binding form; with `unverified` (a binding made before proofing existed), the notice
 * that asks to prove it, with its document type chosen. The details are typed again. */
function showBind(unverified = null) {
  stopCode();
  show("bind");
  $("unverified-notice").classList.toggle("hidden", !unverified);
  $("unverified-identity").textContent =
    unverified && unverified.masked_name
      ? t("unverified.bound", {
          name: unverified.masked_name,
          doc: t(`doc.${unverified.doc_type}`),
          number: unverified.masked_doc_number,
        })
      : "";
  if (unverified && [...$("doc_type").options].some((o) => o.value === unverified.doc_type)) {
    $("doc_type").value = unverified.doc_type;
  }
}

async function bind(event) {
  event.preventDefault();
  clearErrors($("bind-form"));
  const form = new FormData($("bind-form"));
  const button = $("bind-submit");
  button.disabled = true;
  let wait = 0;
  try {
    const bound = await authed("/v1/me/identity", {
      method: "PUT",
      body: Object.fromEntries(["name", "doc_type", "doc_number", "birth_date"].map((k) => [k, form.get(k)])),
    });
    state.reclaimed = Boolean(bound.reclaimed);
    // The details leave the page once proved; only masked values come back.
    $("bind-form").reset();
    await showCode();
  } catch (error) {
    if (!(error instanceof ApiError)) return fail(error);
    // The API names each bad field; show each message next to its field.
    showErrors(error, (field) => document.querySelector(`[data-error-for="${CSS.escape(field)}"]`), $("bind-error"), "bind");
    // Nothing was bound because the registry did not answer: the button rests until it may.
    if (error.code === "proofing_unavailable" && error.retryAfter) wait = Math.min(error.retryAfter, 60);
  } finally {
    if (wait) setTimeout(() => (button.disabled = false), wait * 1000);
    else button.disabled = false;
  }
}

function assuranceLevel(stored) {
  return String(stored || "").startsWith("partner:") ? "partner" : stored;
}

function renderIdentity(identity) {
  const level = assuranceLevel(identity.assurance);
  const words = `assurance.${level}` in TEXT ? t(`assurance.${level}`) : "";
  for (const id of ["assurance-badge", "identity-assurance"]) {
    $(id).textContent = words;
    $(id).dataset.level = level;
  }
  $("masked-name").textContent = identity.masked_name;
  $("identity-name").textContent = identity.masked_name;
  $("identity-doc").textContent = `${t(`doc.${identity.doc_type}`)} ${identity.masked_doc_number}`;
  $("identity-proofed").textContent = identity.proofed_at
    ? t("identity.proofed_at", { when: formatTime(identity.proofed_at, true) })
    : "";
}

/** A code refused because the identity must be proved first (409): the binding form instead,
 * and no more asking for codes. True when it was that. */
function needsProofing(error) {
  if (!(error instanceof ApiError) || error.status !== 409) return false;
  if (error.code === "identity_unverified") {
    showBind({ ...(state.identity || {}), assurance: "unverified" });
    return true;
  }
  if (error.code === "identity_required") {
    showBind(null);
    return true;
  }
  return false;
}

// --- the code ------------------------------------------------------------------------------------

/** An image of the signed-in person's (or their family member's) code: fetched with the session,
 * shown from a blob URL. Only the path is used, so a proxy's idea of the origin does not matter. */
async function imageUrl(url) {
  return URL.createObjectURL(await authedBlob(new URL(url, location.href).pathname));
}

async function loadImage(code) {
  const image = await authedBlob(`/v1/codes/${encodeURIComponent(code.code_id)}.png`);
  const url = URL.createObjectURL(image);
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = url;
  $("qr").src = url;
  $("qr").alt = t(`status.${code.status}`);
  keepCode(code, image).catch(() => {}); // a full storage only costs the offline copy
}

/** Keep the code on screen for a start with no network (KEPT_KEY). */
async function keepCode(code, image) {
  const png = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(image);
  });
  if (state.code !== code) return; // signed out, or renewed, meanwhile
  const kept = {
    status: code.status,
    issued_at: code.issued_at,
    expires_at: code.expires_at,
    converted: Boolean(claims(code.qr_text).src),
    name: state.identity ? state.identity.masked_name : "",
    png,
  };
  localStorage.setItem(KEPT_KEY, JSON.stringify(kept));
}

function keptCode() {
  try {
    const kept = JSON.parse(localStorage.getItem(KEPT_KEY));
    return kept && kept.png && String(kept.png).startsWith("data:image/png;base64,") ? kept : null;
  } catch {
    return null;
  }
}

/** The server cannot be reached as the page opens: the kept code, as it was, with the banner
 * saying why; greyed by the clock's tick once past its expiry. The page tries again when the
 * network comes back, and every 15 seconds. */
function showKeptCode(error) {
  fail(error);
  state.unreached = true;
  const kept = keptCode();
  if (kept) {
    state.kept = true;
    state.code = { ...kept, kept: true };
    state.renewAt = Infinity;
    show("code");
    $("code").classList.add("kept");
    $("code-card").dataset.status = kept.status;
    $("status-word").textContent = t(`status.${kept.status}`);
    $("masked-name").textContent = kept.name;
    $("qr").src = kept.png;
    $("qr").alt = t(`status.${kept.status}`);
    // A kept code renews only once the network is back: it does not say it renews itself.
    $("expiry").textContent = t("code.kept_expires", { time: formatTime(kept.expires_at, true) });
    $("source-note").classList.toggle("hidden", !kept.converted);
    setTheme(kept.status);
    tick();
  }
  setTimeout(() => {
    if (state.token && state.unreached) start().catch(fail);
  }, 15_000);
}

function claims(qrText) {
  try {
    const payload = qrText.slice(4).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
  } catch {
    return {};
  }
}

/** When to renew a code: a minute before expiry, or at 80% of a very short life. */
function renewTime(code) {
  const issued = new Date(code.issued_at).getTime();
  const expires = new Date(code.expires_at).getTime();
  return Math.max(issued + 5_000, Math.min(expires - 60_000, issued + (expires - issued) * 0.8));
}

function stopCode() {
  state.code = null;
  state.renewAt = Infinity;
  showExpired(false);
}

/** A code past its expiry (no network renewed it) looks expired at a glance: grey, the QR faded,
 * no moving line, and the words. */
function showExpired(expired, prefix = "", code = state.code) {
  const card = $(prefix ? `${prefix}card` : "code-card");
  if (expired === (card.dataset.expired === "true")) return;
  card.dataset.expired = String(expired);
  $(`${prefix}expired-note`).textContent = expired ? t("code.expired") : "";
  if (!prefix) $("qr").alt = expired ? t("code.expired") : code ? t(`status.${code.status}`) : "";
}

function pastExpiry(code) {
  return Boolean(code && Date.now() >= new Date(code.expires_at).getTime());
}

async function refreshCode() {
  const code = await authed("/v1/codes", { method: "POST", headers: { "Idempotency-Key": idempotencyKey() } });
  state.code = code;
  state.kept = false;
  $("code").classList.remove("kept");
  await loadImage(code);
  const card = $("code-card");
  card.dataset.status = code.status;
  $("status-word").textContent = t(`status.${code.status}`);
  $("expiry").textContent = t("code.expires", { time: formatTime(code.expires_at, true) });
  if (!state.dep) setTheme(code.status);
  $("source-note").classList.toggle("hidden", !claims(code.qr_text).src);
  // Renew with no reload. The clock's tick checks it: a timer set for an hour would not fire
  // on time after the phone slept.
  state.renewAt = renewTime(code);
}

async function renew() {
  state.renewing = true;
  try {
    await refreshCode();
    await showStatus();
  } catch (error) {
    if (needsProofing(error)) return;
    fail(error);
    state.renewAt = Date.now() + 10_000; // try again shortly, not every second
  } finally {
    state.renewing = false;
  }
}

function renderTiles(status, natId, vxId) {
  const nat = status.nat;
  $(natId).textContent = !nat
    ? t("nat.none")
    : nat.latest_result === "positive"
      ? t("nat.positive", { date: formatDay(nat.latest_sampled_at) })
      : nat.negative_within_hours
        ? t("nat.negative", { hours: nat.negative_within_hours })
        : t("nat.older", { date: formatDay(nat.latest_sampled_at) });
  $(vxId).textContent = status.vaccination.doses ? t("vx.doses", { doses: status.vaccination.doses }) : t("vx.none");
}

function listItems(texts) {
  return texts.map((text) => el("li", {}, text));
}

/** Why this colour, one line per reason code, in the page language. The rule set's reasons come
 * with the server's sentence (its dates and places); a staff decision (`override`) is said here,
 * without the operator's own note, which is for staff (the console shows it). */
function reasonLines(status) {
  if (!status.reasons.length) return status.explanation;
  return status.reasons.map((finding, index) =>
    finding.reason === "override"
      ? t("reason.override", { colour: t(`colour.${finding.status}`), since: formatDay(finding.since) })
      : status.explanation[index] || "",
  );
}

/** What to do next, for a yellow or red code: the steps, the appeal, the helpline. */
function nextSteps(status, boxId, listId) {
  // A status staff set stays until staff change it: a new test does not lift it.
  const byStaff = status.reason_codes?.[0] === "override";
  const steps = byStaff
    ? { red: ["steps.red.stay", "steps.red.test", "steps.override"], yellow: ["steps.override", "steps.yellow.avoid"] }
    : { red: ["steps.red.stay", "steps.red.test"], yellow: ["steps.yellow.test", "steps.yellow.avoid"] };
  const items = (steps[status.status] || []).map((key) => el("li", {}, t(key)));
  if (items.length && status.can_appeal && boxId === "next-steps-box") items.push(el("li", {}, t("steps.appeal")));
  if (items.length && status.hotline) {
    const number = String(status.hotline);
    items.push(el("li", { class: "hotline" }, t("steps.hotline"), el("a", { href: `tel:${number.replace(/[^0-9+]/g, "")}` }, number)));
  }
  $(boxId).classList.toggle("hidden", !items.length);
  $(listId).replaceChildren(...items);
}

async function showStatus() {
  const status = await authed(`/v1/me/status?lang=${encodeURIComponent(language())}`);
  $("explanation").replaceChildren(...listItems(reasonLines(status)));
  nextSteps(status, "next-steps-box", "next-steps");
  $("valid-until").textContent = status.valid_until ? t("status.until", { when: formatTime(status.valid_until, true) }) : "";
  renderTiles(status, "nat-value", "vx-value");
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
      const item = el("div", { class: "appeal-item", dataset: { state: appeal.state } });
      item.append(
        el(
          "p",
          { class: "appeal-state" },
          appeal.state === "pending"
            ? t("appeal.pending", { when: formatTime(appeal.filed_at, true) })
            : t(`appeal.${appeal.state}`, { reason: appeal.decision_reason || "" }),
        ),
      );
      // The resident's own words, as text (el() never makes markup of them).
      if (appeal.text) item.append(el("p", { class: "appeal-text" }, t("appeal.wrote"), el("q", {}, appeal.text)));
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
  const now = formatTime(Date.now(), true, true);
  $("clock").textContent = now;
  $("dep-clock").textContent = now;
  showExpired(pastExpiry(state.code));
  showExpired(pastExpiry(state.dep && state.dep.code), "dep-", state.dep && state.dep.code);
  if (state.code && !state.kept && !state.renewing && Date.now() >= state.renewAt) renew();
  const dep = state.dep;
  if (dep && dep.code && !dep.renewing && Date.now() >= dep.renewAt) renewDependant(dep);
}

async function showCode() {
  const me = await authed("/v1/me");
  // Bound before proofing existed (or not at all): no code until proved.
  if (!me.identity || me.identity.assurance === "unverified") return showBind(me.identity);
  state.identity = me.identity;
  renderIdentity(me.identity);
  $("reclaimed-note").classList.toggle("hidden", !state.reclaimed);
  try {
    await refreshCode();
  } catch (error) {
    if (needsProofing(error)) return;
    throw error;
  }
  // The code screen appears once it holds this person's code, not before: until then it could
  // only show what was there before (someone else's, after a sign-out on this phone).
  show("code");
  await showStatus();
  loadFamily().catch((error) => ($("family-error").textContent = errorWords(error, "family")));
  // While the page is open the status is looked at again now and then, and whenever the page
  // comes back to the front: an operator's decision or a feed shows without a reload. Every 10 s
  // while the code is not green (someone waiting on an appeal or a test); every minute while it
  // is, since at a peak these reads are the largest load of all (PERFORMANCE.md). Started once
  // per page: signing out and in again must not start a second loop, and nobody signed in, or
  // without a code (an identity to prove), is not asked about.
  if (state.watching) return;
  state.watching = true;
  const look = () => {
    const work = [];
    if (state.token && state.code) work.push(showStatus().catch((error) => needsProofing(error)));
    if (state.token && state.dep && state.dep.code) work.push(showDependantStatus(state.dep).catch(() => {}));
    return Promise.all(work);
  };
  const poll = () => {
    const green = state.code && state.code.status === "green";
    setTimeout(() => look().finally(poll), green ? 60_000 : 10_000);
  };
  poll();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") look();
  });
}

// --- family members (亲友代办) ---------------------------------------------------------------------

async function loadFamily(focusId = null) {
  const [list, rules] = await Promise.all([authed("/v1/me/dependants"), authed("/v1/me/dependants/rules")]);
  adultAge = rules.adult_age;
  $("family-error").textContent = "";
  $("family-empty").classList.toggle("hidden", list.length > 0);
  $("family-list").replaceChildren(...list.map(familyItem));
  if (focusId) {
    const item = $("family-list").querySelector(`[data-id="${CSS.escape(focusId)}"]`);
    const target = item && item.querySelector(".family-show, .consent-code");
    if (target) target.focus();
  }
}

/** A button that first asks: the question and a "yes" appear below it, with the focus on "yes";
 * "cancel" puts them away and the focus back. */
function confirmStep(opener, question, yesLabel, onYes) {
  const yes = el("button", { type: "button", class: "danger confirm-yes" }, yesLabel);
  const no = el("button", { type: "button", class: "secondary confirm-no" }, t("family.cancel"));
  const box = el("div", { class: "confirm-step hidden", role: "group" }, el("p", {}, question), el("div", { class: "row" }, yes, no));
  opener.setAttribute("aria-expanded", "false");
  opener.addEventListener("click", () => {
    box.classList.remove("hidden");
    opener.setAttribute("aria-expanded", "true");
    yes.focus();
  });
  no.addEventListener("click", () => {
    box.classList.add("hidden");
    opener.setAttribute("aria-expanded", "false");
    opener.focus();
  });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try {
      await onYes();
    } finally {
      yes.disabled = false;
    }
  });
  return box;
}

function familyItem(member) {
  const path = `/v1/me/dependants/${encodeURIComponent(member.id)}`;
  const item = el("li", { class: "family-item", dataset: { id: member.id, state: member.state } });
  const active = member.state === "active";
  const pill =
    active && member.status
      ? el("span", { class: "pill", dataset: { status: member.status } }, t(`status.${member.status}`))
      : el("span", { class: "pill", dataset: { state: member.state } }, t(`family.state.${member.state}`));
  item.append(
    el(
      "div",
      { class: "family-head" },
      el("span", { class: "family-name" }, member.masked_name),
      el("span", { class: "family-rel" }, t(`rel.${member.relationship}`)),
      pill,
    ),
  );
  const error = el("p", { class: "error family-item-error", role: "alert" });
  const note = el("p", { class: "notice-line", role: "status" });
  if (!active) {
    // Without a phone for their consent, an adult agrees at a service counter, by this reference.
    item.append(
      member.consent_by_sms
        ? consentForm(member, path, error, note)
        : el("p", { class: "muted counter-only" }, t("family.consent.counter_only"), " ", el("span", { class: "reference" }, member.id)),
    );
  }
  const actions = el("div", { class: "row family-actions" });
  if (active) {
    actions.append(
      el("button", { type: "button", class: "family-show", onclick: () => openDependant(member) }, t("family.show")),
    );
  }
  const remove = el("button", { type: "button", class: "secondary family-remove" }, t("family.remove"));
  actions.append(remove);
  const confirm = confirmStep(remove, t("family.remove.confirm", { name: member.masked_name }), t("family.remove.yes"), async () => {
    error.textContent = "";
    try {
      await authed(path, { method: "DELETE" });
      $("family-status").textContent = t("family.removed", { name: member.masked_name });
      await loadFamily();
      $("family-title").focus();
    } catch (failure) {
      error.textContent = errorWords(failure, "family");
    }
  });
  item.append(actions, confirm, note, error);
  return item;
}

/** For an adult who has not agreed yet: the code sent to their phone, which they read out. */
function consentForm(member, path, error, note) {
  const inputId = `consent-${member.id}`;
  const input = el("input", {
    id: inputId,
    class: "consent-code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    maxlength: 6,
    pattern: "[0-9]{6}",
  });
  const submit = el("button", { type: "submit", class: "consent-submit" }, t("family.consent.submit"));
  const resend = el("button", { type: "button", class: "secondary consent-resend" }, t("family.consent.resend"));
  const form = el(
    "form",
    { class: "consent-form", novalidate: true },
    el("label", { for: inputId }, t("family.consent.code")),
    el("div", { class: "row" }, input, submit),
    el("div", { class: "row" }, resend),
    // Without a phone (or a code), a counter records the consent by this reference.
    el("p", { class: "muted" }, t("family.consent.counter"), " ", el("span", { class: "reference" }, member.id)),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    note.textContent = "";
    input.removeAttribute("aria-invalid");
    const code = input.value.replace(/\s/g, "");
    if (!/^[0-9]{6}$/.test(code)) {
      error.textContent = t("family.consent.format");
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const agreed = await authed(`${path}/consent`, { method: "POST", body: { code } });
      $("family-status").textContent = t("family.consent.done", { name: agreed.masked_name });
      await loadFamily(agreed.id);
    } catch (failure) {
      error.textContent = errorWords(failure, "family");
      input.setAttribute("aria-invalid", "true");
      input.focus();
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  resend.addEventListener("click", async () => {
    error.textContent = "";
    note.textContent = "";
    resend.disabled = true;
    try {
      await authed(`${path}/consent/resend`, { method: "POST" });
      note.textContent = t("family.consent.resent");
      input.value = "";
      input.focus();
    } catch (failure) {
      error.textContent = errorWords(failure, "family");
    } finally {
      resend.disabled = false;
    }
  });
  return form;
}

function openFamilyForm() {
  $("family-form").classList.remove("hidden");
  $("family-open").classList.add("hidden");
  $("family-open").setAttribute("aria-expanded", "true");
  $("family-status").textContent = "";
  familyAge();
  $("fam-name").focus();
}

function closeFamilyForm(focus = true) {
  $("family-form").reset();
  clearErrors($("family-form"));
  familyAge();
  $("family-form").classList.add("hidden");
  $("family-open").classList.remove("hidden");
  $("family-open").setAttribute("aria-expanded", "false");
  if (focus) $("family-open").focus();
}

/** The phone is asked for adults only (a child needs no consent), with what it must be. */
function familyAge() {
  const birth = $("fam-birth-date").value;
  const adult = isAdult(birth);
  $("fam-phone-box").classList.toggle("hidden", !adult);
  $("fam-minor-note").classList.toggle("hidden", !birth || adult);
  if (!adult) $("fam-phone").value = "";
}

async function addFamily(event) {
  event.preventDefault();
  const form = $("family-form");
  clearErrors(form);
  $("family-status").textContent = "";
  const birth = $("fam-birth-date").value;
  const body = {
    name: $("fam-name").value.trim(),
    doc_type: $("fam-doc-type").value,
    doc_number: $("fam-doc-number").value.trim(),
    birth_date: birth,
    relationship: $("fam-relationship").value,
  };
  const phone = $("fam-phone").value.trim();
  if (isAdult(birth) && phone) body.phone = e164(phone);
  const button = $("fam-submit");
  button.disabled = true;
  try {
    const added = await authed("/v1/me/dependants", { method: "POST", body });
    closeFamilyForm(false);
    $("family-status").textContent = t("family.added", { name: added.masked_name });
    await loadFamily(added.id);
  } catch (error) {
    showErrors(error, (field) => form.querySelector(`[data-family-error-for="${CSS.escape(field)}"]`), $("fam-error"), "family");
    const invalid = form.querySelector("[aria-invalid]");
    if (invalid) invalid.focus();
  } finally {
    button.disabled = false;
  }
}

// --- a family member's code ------------------------------------------------------------------------

async function openDependant(member) {
  $("dep-error").textContent = "";
  $("dep-label").textContent = t("family.card.label", { name: member.masked_name });
  $("dep-relationship").textContent = t("family.card.relationship", { relationship: t(`rel.${member.relationship}`) });
  $("dep-card").dataset.status = member.status || "";
  $("dep-status-word").textContent = member.status ? t(`status.${member.status}`) : "";
  $("dep-qr").removeAttribute("src");
  $("dep-expiry").textContent = "";
  $("dep-explanation").replaceChildren();
  const dep = { id: member.id, name: member.masked_name, code: null, renewAt: Infinity, renewing: false, imageUrl: null };
  state.dep = dep;
  show("dependant");
  window.scrollTo(0, 0);
  $("dep-label").focus();
  try {
    await refreshDependantCode(dep);
    await showDependantStatus(dep);
  } catch (error) {
    if (state.dep === dep) $("dep-error").textContent = errorWords(error, "family");
  }
}

async function refreshDependantCode(dep) {
  const code = await authed(`/v1/me/dependants/${encodeURIComponent(dep.id)}/codes`, { method: "POST" });
  const url = await imageUrl(code.png_url);
  if (state.dep !== dep) {
    URL.revokeObjectURL(url); // closed meanwhile
    return;
  }
  if (dep.imageUrl) URL.revokeObjectURL(dep.imageUrl);
  dep.imageUrl = url;
  dep.code = code;
  $("dep-qr").src = url;
  $("dep-qr").alt = t("family.card.label", { name: dep.name });
  $("dep-card").dataset.status = code.status;
  $("dep-status-word").textContent = t(`status.${code.status}`);
  $("dep-expiry").textContent = t("code.expires", { time: formatTime(code.expires_at, true) });
  setTheme(code.status);
  dep.renewAt = renewTime(code);
}

async function renewDependant(dep) {
  dep.renewing = true;
  try {
    await refreshDependantCode(dep);
  } catch (error) {
    if (state.dep === dep) $("dep-error").textContent = errorWords(error, "family");
    dep.renewAt = Date.now() + 10_000;
  } finally {
    dep.renewing = false;
  }
}

async function showDependantStatus(dep) {
  const path = `/v1/me/dependants/${encodeURIComponent(dep.id)}/status?lang=${encodeURIComponent(language())}`;
  const status = await authed(path);
  if (state.dep !== dep) return;
  $("dep-explanation").replaceChildren(...listItems(reasonLines(status)));
  renderTiles(status, "dep-nat-value", "dep-vx-value");
  if (dep.code && status.status !== dep.code.status) await refreshDependantCode(dep);
}

function closeDependant(back = true) {
  const dep = state.dep;
  state.dep = null;
  if (dep && dep.imageUrl) URL.revokeObjectURL(dep.imageUrl);
  $("dep-qr").removeAttribute("src");
  if (!back) return;
  show("code");
  if (state.code) setTheme(state.code.status);
  const item = dep && $("family-list").querySelector(`[data-id="${CSS.escape(dep.id)}"] .family-show`);
  if (item) item.focus();
}

// --- who holds my code (an adult family member's own account) ---------------------------------------

async function loadGuardians() {
  const list = await authed("/v1/me/guardians");
  state.guardiansShown = list.length > 0 || Boolean($("guardians-status").textContent);
  const section = SECTIONS.find((id) => !$(id).classList.contains("hidden"));
  $("guardians").classList.toggle("hidden", !state.guardiansShown || !["bind", "code"].includes(section));
  $("guardians-list").replaceChildren(...list.map(guardianItem));
}

function guardianItem(arrangement) {
  const item = el("li", { class: "family-item guardian-item", dataset: { id: arrangement.id, state: arrangement.state } });
  const error = el("p", { class: "error", role: "alert" });
  const end = el("button", { type: "button", class: "secondary guardian-end" }, t("guardians.end"));
  const name = arrangement.guardian_masked_name;
  const confirm = confirmStep(end, t("guardians.end.confirm", { name }), t("guardians.end.yes"), async () => {
    error.textContent = "";
    try {
      await authed(`/v1/me/guardians/${encodeURIComponent(arrangement.id)}`, { method: "DELETE" });
      $("guardians-status").textContent = t("guardians.ended", { name });
      await loadGuardians();
      $("guardians-title").setAttribute("tabindex", "-1");
      $("guardians-title").focus();
    } catch (failure) {
      error.textContent = errorWords(failure, "family");
    }
  });
  item.append(
    el(
      "div",
      { class: "family-head" },
      el("span", { class: "family-name" }, name),
      el("span", { class: "pill", dataset: { state: arrangement.state } }, t(`family.state.${arrangement.state}`)),
    ),
    el("p", { class: "muted" }, t("guardians.item", { relationship: t(`rel.${arrangement.relationship}`) })),
    el("div", { class: "row family-actions" }, end),
    confirm,
    error,
  );
  return item;
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
    $("macao-error").textContent = errorText(error);
  }
}

/** Forget every Macao conversion shown: the next person on this phone sees none of it. */
function clearMacao() {
  state.macaoFollowing = null;
  const qr = $("macao-qr");
  if (qr.src.startsWith("blob:")) URL.revokeObjectURL(qr.src);
  qr.removeAttribute("src");
  qr.classList.add("hidden");
  $("macao-result").classList.add("hidden");
  delete $("macao-result").dataset.state;
  $("macao-state").textContent = "";
  $("macao-error").textContent = "";
  $("macao").classList.add("hidden");
}

async function followMacao(id) {
  state.macaoFollowing = id;
  const conversion = await authed(`/v1/exchange/macao/outbound/${encodeURIComponent(id)}`);
  // Signed out (or another conversion started) while the answer was on its way.
  if (state.macaoFollowing !== id) return;
  $("macao-state").textContent = t(`macao.state.${conversion.state}`, { code: conversion.error_code || "" });
  $("macao-result").dataset.state = conversion.state;
  if (conversion.state === "delivered") {
    const image = await authedBlob(`/v1/exchange/macao/outbound/${encodeURIComponent(id)}.png`).catch(() => null);
    if (image && state.macaoFollowing === id) {
      $("macao-qr").src = URL.createObjectURL(image);
      $("macao-qr").classList.remove("hidden");
    }
    return;
  }
  if (conversion.state === "queued" || conversion.state === "delivering") {
    // Not for a conversion put away meanwhile (signed out): it is no longer this person's.
    setTimeout(() => state.macaoFollowing === id && followMacao(id).catch(fail), 1_000);
  }
}

// --- start ---------------------------------------------------------------------------------------

async function start() {
  if (!state.token) return show("signin");
  let identity = null;
  state.unreached = false;
  try {
    identity = await authed("/v1/me/identity");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    if (!(error instanceof ApiError)) return showKeptCode(error);
    if (error.status !== 404) return fail(error);
  }
  // Someone may hold this person's codes (their phone was given): shown whether or not they
  // have bound a document of their own.
  loadGuardians().catch(() => {});
  if (!identity || identity.assurance === "unverified") return showBind(identity);
  await showCode();
}

/** 关怀模式 on or off: a class on the page (resident.css) and the switch's state, remembered. */
function setElder(on) {
  document.documentElement.classList.toggle("elder", on);
  $("elder-toggle").setAttribute("aria-pressed", String(on));
  if (on) localStorage.setItem(ELDER_KEY, "1");
  else localStorage.removeItem(ELDER_KEY);
}

/** The worker that opens this page with no network (resident-sw.js); then the files this load
 * fetched before the worker was there are named to it, to be kept. */
async function keepPageOffline() {
  if (!("serviceWorker" in navigator)) return;
  try {
    await navigator.serviceWorker.register("/static/app/resident-sw.js", { scope: "/" });
    const ready = await navigator.serviceWorker.ready;
    const loaded = performance
      .getEntriesByType("resource")
      .map((entry) => entry.name)
      .filter((name) => {
        const url = new URL(name);
        return url.origin === location.origin && url.pathname.startsWith("/static/");
      });
    if (ready.active) ready.active.postMessage({ keep: loaded });
  } catch (error) {
    console.warn("service worker not registered:", error);
  }
}

translatePage(t);
languageSwitcher($("languages"));
setElder(localStorage.getItem(ELDER_KEY) === "1");
$("elder-toggle").addEventListener("click", () => setElder(!document.documentElement.classList.contains("elder")));
$("region").addEventListener("change", () => ($("phone").placeholder = PLACEHOLDER[$("region").value]));
// The network is back: what failed for want of it is tried again at once -- the start, or the
// code's renewal (which clears the banner when it succeeds).
window.addEventListener("online", () => {
  if (state.token && state.unreached) start().catch(fail);
  else if (state.code && !state.kept && !state.renewing && $("fatal").textContent) renew();
});
keepPageOffline();
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
$("family-open").addEventListener("click", openFamilyForm);
$("fam-cancel").addEventListener("click", () => closeFamilyForm());
$("fam-birth-date").addEventListener("input", familyAge);
$("fam-birth-date").addEventListener("change", familyAge);
$("family-form").addEventListener("submit", addFamily);
$("dep-back").addEventListener("click", () => closeDependant());
$("sign-out").addEventListener("click", () => signOutByUser().catch(fail));
$("sign-out-all").addEventListener("click", () => signOutByUser(true).catch(fail));
start().catch(fail);
