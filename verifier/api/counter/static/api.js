// The verification API, as any scanner calls it: same origin, the terminal's key in a header (never a URL).
//
// Every call resolves to one of:
//   {kind: "verdict", verdict, timing}   the service's answer (HTTP 200), whatever its result;
//   {kind: "refused", status, problem}   401: the key is unknown or revoked (the terminal must sign in again);
//   {kind: "invalid", status, problem}   another 4xx: this request was wrong (a field, a role);
//   {kind: "no-answer", reason, detail}  network failure, timeout, 5xx, 429: no verdict at all,
//                                        which the page shows as "cannot confirm, do not accept".

const TIMEOUT_MS = 8000;

// Server-Timing: app;dur=1.23 -> 1.23 (ms): the service's own time for the request.
export function serverTime(response) {
  const header = response.headers.get("server-timing") || "";
  const match = /(?:^|,)\s*app;dur=([0-9.]+)/.exec(header);
  return match ? Number(match[1]) : null;
}

export class Api {
  constructor({ key, terminal }) {
    this.key = key;
    this.terminal = terminal;
  }

  async call(method, path, body) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    const started = performance.now();
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${this.key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal: controller.signal,
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
    } catch (error) {
      clearTimeout(timer);
      return { kind: "no-answer", reason: controller.signal.aborted ? "timeout" : "network", detail: String(error) };
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    } finally {
      clearTimeout(timer);
    }
    const timing = { fetchMs: performance.now() - started, serverMs: serverTime(response) };
    if (response.ok && data && typeof data === "object") return { kind: "ok", data, timing };
    if (response.status === 401) return { kind: "refused", status: 401, problem: data };
    if (response.status === 429 || response.status >= 500 || !data) {
      return {
        kind: "no-answer", reason: response.status === 429 ? "rate" : "server", status: response.status,
        retryAfter: Number(response.headers.get("retry-after")) || null, problem: data,
      };
    }
    return { kind: "invalid", status: response.status, problem: data };
  }

  async verify(path, body) {
    const answer = await this.call("POST", path, { ...body, terminal: this.terminal });
    if (answer.kind === "ok") {
      if (typeof answer.data.result !== "string") return { kind: "no-answer", reason: "server", problem: null };
      return { kind: "verdict", verdict: answer.data, timing: answer.timing };
    }
    return answer;
  }

  me() {
    return this.call("GET", "/v1/me");
  }

  verifyQr(qr, receipt = false) {
    return this.verify("/v1/verify/qr", { qr, receipt });
  }

  verifyManual(pn, dob, receipt = false) {
    return this.verify("/v1/verify/manual", { pn, dob, receipt });
  }

  verifyCard(read, receipt = false) {
    return this.verify("/v1/verify/card", { ...read, receipt });
  }

  async challenge() {
    return this.call("POST", "/v1/cards/challenge");
  }
}

export async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store", credentials: "omit" });
    if (response.ok) return await response.json();
  } catch {
    // the page still works without it: no card reads, the default clear time
  }
  return { card_bridge: null, clear_after_s: 30 };
}
