// The one module that touches the DOM: screens, the verdict, the history, the small states.

import { currentLanguage, duration, resultText, t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

export function outcomeOf(result) {
  if (result === "VALID") return "accept";
  if (result === "STATUS_UNAVAILABLE" || result === "NO_ANSWER") return "cannot-confirm";
  return "refuse";
}

export const elements = {
  get codeInput() { return $("code-input"); },
  get video() { return $("camera-video"); },
};

export function applyLanguage() {
  document.documentElement.lang = currentLanguage() === "zh" ? "zh-CN" : "en";
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  for (const element of document.querySelectorAll("[data-i18n-placeholder]")) element.placeholder = t(element.dataset.i18nPlaceholder);
  for (const element of document.querySelectorAll("[data-i18n-title]")) element.title = t(element.dataset.i18nTitle);
  document.title = t("app.title");
}

export function showScreen(name) {
  document.body.dataset.screen = name;
  $("sign-in-screen").hidden = name !== "sign-in";
  $("counter-screen").hidden = name !== "counter";
  for (const element of document.querySelectorAll(".when-signed-in")) element.hidden = name !== "counter";
}

export function signInForm() {
  return { terminal: $("terminal-id"), key: $("api-key"), remember: $("remember"), form: $("sign-in-form") };
}

export function setSignInError(text) {
  $("sign-in-error").textContent = text || "";
}

export function setSignInBusy(busy) {
  const button = document.querySelector("[data-testid=sign-in]");
  button.disabled = busy;
  button.textContent = busy ? t("signin.checking") : t("signin.submit");
}

export function setWho(who) {
  $("who").textContent = who ? `${t("bar.terminal")} ${who.terminal} · ${t("bar.key")} ${who.name} (${who.role})` : "";
}

export function setSound(on) {
  const button = $("sound");
  button.setAttribute("aria-pressed", String(on));
  button.dataset.i18n = on ? "bar.sound.on" : "bar.sound.off";
  button.textContent = t(button.dataset.i18n);
  $("sound-setting").checked = on;
}

function setState(element, key, vars) {
  element.dataset.i18nState = key || "";
  element.textContent = key ? t(key, vars) : "";
}

export function setCameraState(state, info = {}) {
  const toggle = $("camera-toggle");
  const on = state === "on" || state === "starting";
  toggle.querySelector("span").dataset.i18n = on ? "camera.stop" : "camera.start";
  toggle.querySelector("span").textContent = t(on ? "camera.stop" : "camera.start");
  toggle.setAttribute("aria-pressed", String(on));
  const keys = { on: "camera.on", off: "camera.off", starting: "camera.starting", denied: "camera.denied", nodecoder: "camera.nodecoder" };
  const element = $("camera-state");
  setState(element, keys[state] || "camera.off");
  if (info.decoder) {
    element.dataset.decoder = info.decoder;
    element.textContent += ` (${t("camera.decoder", { name: info.decoder })})`;
  }
  element.dataset.state = state;
  $("camera-video").hidden = !on; // the room for the other ways in while the camera is off
  $("torch").hidden = !(state === "on" && info.torch);
}

export function setTorch(on) {
  $("torch").setAttribute("aria-pressed", String(on));
}

export function setCameras(cameras, selected) {
  const select = $("camera-select");
  select.replaceChildren(...cameras.map((camera) => {
    const option = document.createElement("option");
    option.value = camera.id;
    option.textContent = camera.label;
    option.selected = camera.id === selected;
    return option;
  }));
  select.hidden = cameras.length < 2;
}

export function setCardState(key, vars) {
  const element = $("card-state");
  setState(element, key, vars);
  element.dataset.state = key || "";
}

export function setCardAvailable(available) {
  $("card-read").disabled = !available;
  if (!available) setCardState("card.off");
}

export function manualForm() {
  return { form: $("manual-form"), pn: $("manual-pn"), dob: $("manual-dob") };
}

export function setManualError(key) {
  $("manual-error").textContent = key ? t(key) : "";
}

export function settingsDialog() {
  return { dialog: $("settings"), clearAfter: $("clear-after"), sound: $("sound-setting"), bridge: $("bridge-origin") };
}

// -- the verdict ------------------------------------------------------------------

function icon(kind) {
  $("verdict-icon").replaceChildren($(`icon-${kind}`).content.cloneNode(true));
}

function passportDate(iso) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || "");
  return match ? `${match[3]} ${MONTHS[Number(match[2]) - 1] || "?"} ${match[1]}` : "";
}

function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString(currentLanguage() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

function holderItem(label, value, extra) {
  const item = document.createElement("div");
  item.className = "holder-item";
  const name = document.createElement("span");
  name.className = "label";
  name.textContent = label;
  const text = document.createElement("span");
  text.className = "value";
  text.textContent = value;
  item.append(name, text);
  if (extra) {
    const small = document.createElement("span");
    small.className = "extra";
    small.textContent = extra;
    item.append(small);
  }
  return item;
}

function value(key, raw) {
  return ["active", "cancelled", "lost", "replaced"].includes(raw) ? t(`value.${raw}`) : raw;
}

function renderPermit(permit) {
  const holder = $("verdict-holder");
  const fields = $("verdict-fields");
  holder.replaceChildren();
  fields.replaceChildren();
  if (!permit) {
    holder.hidden = fields.hidden = true;
    return;
  }
  if (permit.n) holder.append(holderItem(t("field.n"), permit.n));
  if (permit.nat) holder.append(holderItem(t("field.nat"), permit.nat));
  if (permit.dob) holder.append(holderItem(t("field.dob"), permit.dob, passportDate(permit.dob)));
  holder.hidden = holder.childElementCount === 0;
  const rows = [
    ["pn", permit.pn],
    ["status", permit.status && value("status", permit.status)],
    ["cat", permit.cat],
    ["valid", permit.vf && permit.vt ? `${permit.vf} – ${permit.vt}` : permit.vt],
    ["emp", permit.emp],
    ["cn", permit.cn],
    ["card_status", permit.card_status && value("card_status", permit.card_status)],
    ["ssn", permit.ssn],
  ];
  for (const [key, text] of rows) {
    if (!text) continue;
    const term = document.createElement("dt");
    term.textContent = t(`field.${key}`);
    const detail = document.createElement("dd");
    detail.textContent = text;
    detail.dataset.field = key;
    fields.append(term, detail);
  }
  fields.hidden = fields.childElementCount === 0;
}

function setPlain(element, text) {
  element.textContent = text || "";
  element.hidden = !text;
}

export function renderWaiting() {
  const verdict = $("verdict");
  verdict.removeAttribute("data-result");
  verdict.dataset.outcome = "waiting";
  delete verdict.dataset.source;
  icon("waiting");
  $("verdict-kicker").textContent = "";
  $("verdict-headline").textContent = t("waiting.title");
  $("verdict-line").textContent = t("waiting.line");
  for (const id of ["verdict-note", "verdict-compare", "verdict-reasons"]) setPlain($(id), "");
  renderPermit(null);
  $("verdict-meta").textContent = "";
  $("verdict-actions").hidden = true;
  $("receipt-state").textContent = "";
}

export function renderChecking() {
  const verdict = $("verdict");
  verdict.removeAttribute("data-result");
  verdict.dataset.outcome = "checking";
  $("verdict-kicker").textContent = "";
  $("verdict-headline").textContent = t("checking.title");
}

// model: {result, source, permit, reasons, checked_at, lag_s, repeat, es1ExpiresAt, detail}
export function renderVerdict(model, now = Date.now()) {
  const outcome = outcomeOf(model.result);
  const verdict = $("verdict");
  verdict.dataset.result = model.result;
  verdict.dataset.outcome = outcome;
  verdict.dataset.source = model.source;
  icon(outcome === "accept" ? "accept" : outcome === "refuse" ? "refuse" : "cannot");
  const [headline, line] = resultText(model.result);
  $("verdict-kicker").textContent = t(outcome === "accept" ? "outcome.accept" : outcome === "refuse" ? "outcome.refuse" : "outcome.cannot");
  $("verdict-headline").textContent = headline;
  $("verdict-line").textContent = model.detail ? `${line} (${model.detail})` : line;
  let note = "";
  if (model.repeat) note = t("verdict.repeat");
  else if (model.result === "REPLAYED") note = t("verdict.replayed");
  setPlain($("verdict-note"), note);
  renderPermit(model.permit);
  setPlain($("verdict-compare"), outcome === "accept" && model.permit && model.permit.n ? t("verdict.compare") : "");
  const meta = [t(`verdict.source.${model.source}`)];
  if (model.checked_at) meta.push(t("verdict.checked", { time: clock(model.checked_at) }));
  if (model.index_as_of) { // a status was read from the index: say how fresh it was
    meta.push(typeof model.lag_s === "number" ? t("verdict.freshness", { age: duration(model.lag_s) }) : t("verdict.freshness.unknown"));
  }
  if (model.es1ExpiresAt && model.result !== "NO_ANSWER") {
    const left = model.es1ExpiresAt - now / 1000;
    meta.push(left > 0 ? t("verdict.es1.left", { left: duration(left) }) : t("verdict.es1.gone"));
  }
  $("verdict-meta").textContent = meta.join(" · ");
  setPlain($("verdict-reasons"), model.reasons && model.reasons.length ? `${t("verdict.reasons")}: ${model.reasons.join(", ")}` : "");
  $("verdict-actions").hidden = false;
  $("receipt").hidden = model.result === "NO_ANSWER";
}

export function setClearsIn(seconds) {
  $("verdict-clears").textContent = seconds > 0 ? t("verdict.clears", { s: seconds }) : "";
}

export function setReceiptState(key, vars) {
  $("receipt-state").textContent = key ? t(key, vars) : "";
}

export function offerFile(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// -- the history ----------------------------------------------------------------------

export function renderHistory(list) {
  const root = $("history");
  if (!list.length) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = t("history.empty");
    root.replaceChildren(empty);
    return;
  }
  root.replaceChildren(...list.map((entry) => {
    const item = document.createElement("li");
    item.dataset.outcome = outcomeOf(entry.result);
    item.dataset.result = entry.result;
    const mark = document.createElement("span");
    mark.className = "mark";
    mark.textContent = item.dataset.outcome === "accept" ? "✓" : item.dataset.outcome === "refuse" ? "✕" : "!";
    const time = document.createElement("time");
    time.textContent = new Date(entry.at).toLocaleTimeString(currentLanguage() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
    const result = document.createElement("span");
    result.className = "result";
    result.textContent = resultText(entry.result)[0] + (entry.repeat ? " ↻" : "");
    const pn = document.createElement("span");
    pn.className = "pn";
    pn.textContent = entry.pn;
    item.append(mark, time, result, pn);
    return item;
  }));
}
