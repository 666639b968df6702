// The partner code formats this scanner reads offline, as yuekang.codec.formats registers them
// on the server from entry points: a partner's format is its own module, listed here once.
// The trust bundle says which of them a checkpoint recognises (its "issuers" and their format).

import { hongkong } from "/static/app/verify-hongkong.js";
import { macao } from "/static/app/verify-macao.js";

export const FORMATS = Object.freeze([macao, hongkong]);
