// What the terminal keeps, and where:
//   the API key:   sessionStorage (gone when the tab closes), or localStorage when the clerk
//                  ticks "remember on this terminal"; removed from both at sign-out;
//   terminal id, language, sound, clear time, camera: localStorage (settings of the desk, nothing personal);
//   the history:   sessionStorage (history.js), cleared at sign-out.

const KEY = "pv.apiKey";
const PREFS = "pv.prefs";
export const TERMINAL_RE = /^[A-Za-z0-9._:@-]{1,64}$/;

export function storedKey() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
}

export function keepKey(key, remember) {
  forgetKey();
  (remember ? localStorage : sessionStorage).setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

export function prefs() {
  try {
    const value = JSON.parse(localStorage.getItem(PREFS) || "{}");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

export function setPref(name, value) {
  const all = prefs();
  all[name] = value;
  localStorage.setItem(PREFS, JSON.stringify(all));
}
