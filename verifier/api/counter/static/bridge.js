// The card-reader bridge on this terminal's loopback (docs/card-bridge.md): the browser
// cannot speak PC/SC, so a small local program reads the card for the page.
//
//   POST {bridge}/v1/sign {"challenge": base64}  -> {"certificate", "signature", "reader"}
//   GET  {bridge}/v1/status                      -> {"reader", "card_present", "source"}
//
// The page's CSP lets it connect to this one origin only; the bridge answers only
// the counter's own origin (CORS).

const TIMEOUT_MS = 15000;

export class BridgeError extends Error {
  constructor(kind, detail) {
    super(detail || kind);
    this.kind = kind; // "unreachable" | "no-card" | "reader"
  }
}

export class CardBridge {
  constructor(origin) {
    this.origin = origin;
  }

  async request(method, path, body) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    let response;
    try {
      response = await fetch(this.origin + path, {
        method, mode: "cors", credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
        headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
        signal: controller.signal,
      });
    } catch (error) {
      throw new BridgeError("unreachable", String(error));
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.ok && data) return data;
    if (response.status === 409) throw new BridgeError("no-card", data && data.detail);
    throw new BridgeError("reader", (data && (data.detail || data.title)) || `HTTP ${response.status}`);
  }

  status() {
    return this.request("GET", "/v1/status");
  }

  // The card signs "SSC-AUTH-1" || challenge (WIRE-FORMAT 6) and hands over its certificate.
  sign(challenge) {
    return this.request("POST", "/v1/sign", { challenge });
  }
}
