// This terminal's last checks, for the clerk: result, time, permit number masked. In
// sessionStorage, so it survives a reload but not the tab; cleared at sign-out.

const STORE = "pv.history";
const LIMIT = 20;

// WP1100002020000001 -> WP11…0001: enough to tell two checks apart, not to identify anyone.
export function maskPermitNumber(pn) {
  if (typeof pn !== "string" || pn.length === 0) return "—";
  if (pn.length <= 8) return pn.slice(0, 2) + "…";
  return `${pn.slice(0, 4)}…${pn.slice(-4)}`;
}

export function entries() {
  try {
    const list = JSON.parse(sessionStorage.getItem(STORE) || "[]");
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

export function record({ result, outcome, source, pn, repeat }) {
  const list = entries();
  list.unshift({ result, outcome, source, pn: maskPermitNumber(pn), repeat: !!repeat, at: Date.now() });
  sessionStorage.setItem(STORE, JSON.stringify(list.slice(0, LIMIT)));
  return entries();
}

export function clear() {
  sessionStorage.removeItem(STORE);
}
