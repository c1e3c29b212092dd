// The counter terminal: sign-in, the four ways in (scanner field, camera, card, manual),
// the verdict, the history. Page logic only; the DOM is view.js's.

import { Api, loadConfig } from "./api.js";
import { BridgeError, CardBridge } from "./bridge.js";
import { es1ExpiresAt } from "./es1.js";
import * as history from "./history.js";
import { currentLanguage, setLanguage, t } from "./i18n.js";
import { CameraScanner } from "./scanner.js";
import { TERMINAL_RE, forgetKey, keepKey, prefs, setPref, storedKey } from "./session.js";
import * as sound from "./sound.js";
import * as view from "./view.js";
import { WedgeField } from "./wedge.js";

const state = {
  config: { card_bridge: null, clear_after_s: 30 },
  api: null,
  who: null,
  current: null, // the verdict on screen: {model, request}
  sequence: 0, // only the latest check may draw its answer
  clearTimer: null,
  clearAt: 0,
  soundOn: true,
};

// -- checks ------------------------------------------------------------------------------

function modelOf(answer, source) {
  if (answer.kind === "verdict") return { ...answer.verdict, source };
  let detail = "";
  if (answer.reason === "rate") detail = t("problem.rate", { s: answer.retryAfter || 1 });
  else if (answer.status === 503) detail = t("problem.unavailable");
  else if (answer.problem && answer.problem.detail) detail = answer.problem.detail;
  return { result: "NO_ANSWER", source, reasons: [], permit: null, checked_at: new Date().toISOString(), detail };
}

const CHECKING_AFTER_MS = 150;

// request: {source, send(receipt) -> answer, code?}; inputAt: when the code came in (performance.now scale)
async function check(request, inputAt = performance.now()) {
  const sequence = ++state.sequence;
  // "Checking…" only when the answer is slow: a usual answer comes first, without a flash (or a paint) before it
  const checking = setTimeout(() => { if (sequence === state.sequence) view.renderChecking(); }, CHECKING_AFTER_MS);
  const answer = await request.send(false);
  clearTimeout(checking);
  if (sequence !== state.sequence) return;
  if (answer.kind === "local") { // nothing was checked (no card on the reader, say): what was on screen stays
    if (state.current) view.renderVerdict(state.current.model);
    else view.renderWaiting();
    return;
  }
  if (answer.kind === "refused") return signedOutByService();
  if (answer.kind === "invalid" && request.onInvalid && request.onInvalid(answer)) return;
  const model = modelOf(answer.kind === "invalid" ? { kind: "no-answer", problem: answer.problem } : answer, request.source);
  if (request.code) model.es1ExpiresAt = await es1ExpiresAt(request.code);
  if (sequence !== state.sequence) return;
  show(model, request);
  const drawnAt = performance.now(); // the DOM holds the verdict; the browser has yet to paint it
  afterPaint(() => {
    // the verdict is on screen: now the sound, and the page's own measure (benchmarks/test_bench_counter.py)
    if (state.soundOn) sound.play(view.outcomeOf(model.result));
    performance.measure("pv:check", {
      start: inputAt, end: performance.now(),
      detail: {
        source: request.source, result: model.result, serverMs: answer.timing?.serverMs ?? null,
        fetchMs: answer.timing?.fetchMs ?? null, drawnMs: drawnAt - inputAt,
      },
    });
  });
}

// After the next frame has been painted: a task queued from its animation-frame callback runs once that
// frame's rendering is done.
function afterPaint(callback) {
  requestAnimationFrame(() => setTimeout(callback, 0));
}

function show(model, request) {
  state.current = { model, request };
  view.renderVerdict(model);
  armClear();
  view.elements.codeInput.focus();
  // the history is for later: drawn once the verdict is on screen
  afterPaint(() => view.renderHistory(history.record({
    result: model.result, outcome: view.outcomeOf(model.result), source: model.source,
    pn: model.permit && model.permit.pn, repeat: model.repeat,
  })));
}

function armClear() {
  clearInterval(state.clearTimer);
  const seconds = Number(prefs().clearAfter) || state.config.clear_after_s || 30;
  state.clearAt = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((state.clearAt - Date.now()) / 1000);
    if (left <= 0) return clearVerdict();
    view.setClearsIn(left);
    if (state.current && state.current.model.es1ExpiresAt) view.renderVerdict(state.current.model);
  };
  tick();
  state.clearTimer = setInterval(tick, 1000);
}

function clearVerdict() {
  clearInterval(state.clearTimer);
  state.current = null;
  state.sequence += 1;
  view.renderWaiting();
  view.setClearsIn(0);
  view.elements.codeInput.focus();
}

// What came into the scanner field: a code to check, or a permit number typed there by hand.
function scanned(text, at) {
  if (!state.api) return;
  // a scanner on a caps-locked keyboard types the code in lower case; base45 has no lower-case letters,
  // so the upper-case text is the code (and its signature still decides)
  if (/^(wp1|es1):/.test(text) && text === text.toLowerCase()) text = text.toUpperCase();
  if (!/^(WP1|ES1):/.test(text) && /^[A-Za-z0-9-]{6,64}$/.test(text)) {
    const form = view.manualForm();
    form.pn.value = text.toUpperCase();
    form.dob.focus();
    return;
  }
  check(qrRequest(text), at);
}

function qrRequest(code) {
  return { source: "qr", code, send: (receipt) => state.api.verifyQr(code, receipt) };
}

// -- the manual check --------------------------------------------------------------

function normaliseDob(text) {
  const digits = text.trim().replace(/[./\s]/g, "-");
  let match = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(digits);
  if (!match) match = /^(\d{4})(\d{2})(\d{2})$/.exec(text.trim());
  if (!match) return null;
  const [, y, m, d] = match;
  const iso = `${y}-${m.padStart(2, "0")}-${d.padStart(2, "0")}`;
  const date = new Date(`${iso}T00:00:00Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().startsWith(iso) ? iso : null;
}

function manualCheck(event) {
  event.preventDefault();
  const form = view.manualForm();
  const raw = form.pn.value.trim();
  if (/^(WP1|ES1):/.test(raw)) { // a wedge scan that landed in this field
    form.pn.value = "";
    check(qrRequest(raw), event.timeStamp);
    return;
  }
  const pn = raw.toUpperCase().replace(/\s+/g, "");
  const dob = normaliseDob(form.dob.value);
  if (!/^[A-Z0-9-]{4,64}$/.test(pn)) return view.setManualError("manual.bad_pn"), form.pn.focus();
  if (!dob) return view.setManualError("manual.bad_dob"), form.dob.focus();
  view.setManualError("");
  form.pn.value = "";
  form.dob.value = "";
  check({
    source: "manual",
    send: (receipt) => state.api.verifyManual(pn, dob, receipt),
    onInvalid: (answer) => {
      const fields = (answer.problem && answer.problem.errors || []).map((e) => e.key);
      view.setManualError(fields.includes("dob") ? "manual.bad_dob" : "manual.bad_pn");
      view.renderWaiting();
      return true;
    },
  }, event.timeStamp);
}

// -- the card ------------------------------------------------------------------------------

async function readCard(receipt = false) {
  const bridge = state.config.card_bridge ? new CardBridge(state.config.card_bridge) : null;
  if (!bridge) return view.setCardState("card.off"), { kind: "local" };
  view.setCardState("card.reading");
  const challenge = await state.api.challenge();
  if (challenge.kind === "refused") return challenge;
  if (challenge.kind !== "ok") return challenge.kind === "invalid" ? { kind: "no-answer", problem: challenge.problem } : challenge;
  let read;
  try {
    read = await bridge.sign(challenge.data.challenge);
  } catch (error) {
    const key = error instanceof BridgeError && error.kind === "unreachable" ? "card.nobridge"
      : error instanceof BridgeError && error.kind === "no-card" ? "card.nocard" : "card.error";
    view.setCardState(key, { detail: error.message });
    return { kind: "local" };
  }
  view.setCardState("card.ready", { reader: read.reader || "?" });
  return state.api.verifyCard({ certificate: read.certificate, challenge: challenge.data.challenge, signature: read.signature }, receipt);
}

function cardCheck() {
  if (!state.config.card_bridge) return view.setCardState("card.off");
  check({ source: "card", send: readCard }, performance.now());
}

// -- receipts ------------------------------------------------------------------------------

async function receipt() {
  if (!state.current) return;
  const { model, request } = state.current;
  const answer = await request.send(true);
  if (answer.kind === "refused") return signedOutByService();
  if (answer.kind !== "verdict" || !answer.verdict.receipt) {
    view.setReceiptState("verdict.receipt.failed", { detail: answer.kind === "local" ? t("card.nocard") : (answer.problem && answer.problem.detail) || answer.reason || answer.kind });
    return;
  }
  const verdict = answer.verdict;
  const stamp = verdict.checked_at.replace(/[:.]/g, "").replace(/-/g, "");
  const file = `verdict-receipt-${stamp}-${verdict.result}.json`;
  view.offerFile(file, JSON.stringify(verdict, null, 2) + "\n");
  if (verdict.result !== model.result) {
    show({ ...verdict, source: model.source, es1ExpiresAt: model.es1ExpiresAt }, request);
    view.setReceiptState("verdict.receipt.changed", { result: verdict.result });
  } else {
    view.setReceiptState("verdict.receipt.saved", { file });
  }
}

// -- sign-in --------------------------------------------------------------------------------

async function signIn(key, terminal, { remember, silent }) {
  const api = new Api({ key, terminal });
  const me = await api.me();
  if (me.kind === "ok" && me.data.may_verify) {
    state.api = api;
    state.who = { terminal, name: me.data.name, role: me.data.role };
    keepKey(key, remember);
    setPref("terminal", terminal);
    enterCounter();
    return true;
  }
  if (!silent || me.kind === "refused") forgetKey();
  if (me.kind === "ok") view.setSignInError(t("signin.role", { role: me.data.role }));
  else if (me.kind === "refused") view.setSignInError(t(silent ? "signin.revoked" : "signin.refused"));
  else if (me.kind === "no-answer" && me.status) view.setSignInError(t("signin.busy", { detail: `HTTP ${me.status}` }));
  else view.setSignInError(t("signin.unreachable"));
  return false;
}

function enterCounter() {
  view.setWho(state.who);
  view.showScreen("counter");
  view.renderWaiting();
  view.renderHistory(history.entries());
  view.setCardAvailable(!!state.config.card_bridge);
  view.elements.codeInput.focus();
}

function signedOutByService() {
  signOut();
  view.setSignInError(t("signin.revoked"));
}

function signOut() {
  forgetKey();
  history.clear();
  scanner.stop();
  view.setCameraState("off");
  clearVerdict();
  state.api = null;
  state.who = null;
  view.setWho(null);
  const form = view.signInForm();
  form.key.value = "";
  form.terminal.value = prefs().terminal || "";
  view.setSignInError("");
  view.showScreen("sign-in");
  (form.terminal.value ? form.key : form.terminal).focus();
}

async function submitSignIn(event) {
  event.preventDefault();
  sound.unlock();
  const form = view.signInForm();
  const terminal = form.terminal.value.trim();
  const key = form.key.value.trim();
  if (!TERMINAL_RE.test(terminal)) return view.setSignInError(t("signin.bad_terminal")), form.terminal.focus();
  if (!key) return view.setSignInError(t("signin.no_key")), form.key.focus();
  view.setSignInBusy(true);
  try {
    if (await signIn(key, terminal, { remember: form.remember.checked, silent: false })) form.key.value = "";
    else form.key.focus();
  } finally {
    view.setSignInBusy(false);
  }
}

// -- camera ---------------------------------------------------------------------------------

const scanner = new CameraScanner(view.elements.video, {
  onCode: (code, frameTime) => { if (state.api) check(qrRequest(code), frameTime); },
  onState: async (cameraState, info) => {
    view.setCameraState(cameraState, info);
    if (cameraState === "on") view.setCameras(await scanner.cameras(), prefs().camera);
  },
  decoderPreference: () => prefs().decoder,
});

async function toggleCamera() {
  if (scanner.active) {
    scanner.stop();
    view.setCameraState("off");
  } else {
    await scanner.start(prefs().camera);
  }
  view.elements.codeInput.focus();
}

// -- wiring ------------------------------------------------------------------------------------

function switchLanguage() {
  setPref("language", setLanguage(currentLanguage() === "en" ? "zh" : "en"));
  view.applyLanguage();
  view.setSound(state.soundOn);
  view.setWho(state.who);
  if (state.current) view.renderVerdict(state.current.model);
  else view.renderWaiting();
  view.renderHistory(history.entries());
  view.setCardAvailable(!!state.config.card_bridge);
}

function toggleSound() {
  state.soundOn = !state.soundOn;
  setPref("sound", state.soundOn);
  view.setSound(state.soundOn);
}

function shortcuts(event) {
  if (document.body.dataset.screen !== "counter" || document.querySelector("dialog[open]")) {
    if (event.key === "F8") { event.preventDefault(); switchLanguage(); }
    return;
  }
  const actions = {
    Escape: clearVerdict,
    F2: toggleCamera,
    F3: cardCheck,
    F4: () => view.manualForm().pn.focus(),
    F8: switchLanguage,
    F9: toggleSound,
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    sound.unlock();
    action();
  }
}

async function start() {
  const saved = prefs();
  setLanguage(saved.language || ((navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en"));
  state.soundOn = saved.sound !== false;
  view.applyLanguage();
  view.setSound(state.soundOn);
  state.config = await loadConfig();

  new WedgeField(view.elements.codeInput, scanned, { active: () => document.body.dataset.screen === "counter" });
  view.signInForm().form.addEventListener("submit", submitSignIn);
  view.manualForm().form.addEventListener("submit", manualCheck);
  document.getElementById("camera-toggle").addEventListener("click", toggleCamera);
  document.getElementById("torch").addEventListener("click", async () => view.setTorch(await scanner.toggleTorch()));
  document.getElementById("camera-select").addEventListener("change", async (event) => {
    setPref("camera", event.target.value);
    await scanner.start(event.target.value);
  });
  document.getElementById("card-read").addEventListener("click", cardCheck);
  document.getElementById("receipt").addEventListener("click", receipt);
  document.getElementById("next").addEventListener("click", clearVerdict);
  document.getElementById("language").addEventListener("click", switchLanguage);
  document.getElementById("sound").addEventListener("click", toggleSound);
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.addEventListener("keydown", shortcuts);
  document.addEventListener("pointerdown", sound.unlock, { once: true });

  const settings = view.settingsDialog();
  settings.bridge.textContent = state.config.card_bridge || t("settings.bridge.none");
  document.getElementById("settings-open").addEventListener("click", () => {
    settings.clearAfter.value = String(Number(prefs().clearAfter) || state.config.clear_after_s);
    settings.dialog.showModal();
  });
  settings.dialog.addEventListener("close", () => {
    const seconds = Math.round(Number(settings.clearAfter.value));
    if (seconds >= 5 && seconds <= 600) setPref("clearAfter", seconds);
    if (settings.sound.checked !== state.soundOn) toggleSound();
    view.elements.codeInput.focus();
  });

  const form = view.signInForm();
  form.terminal.value = saved.terminal || "";
  const key = storedKey();
  if (key && form.terminal.value && (await signIn(key, form.terminal.value, { remember: !!localStorage.getItem("pv.apiKey"), silent: true }))) return;
  view.showScreen("sign-in");
  (form.terminal.value ? form.key : form.terminal).focus();
}

start();
