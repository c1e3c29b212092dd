// Scanners in keyboard-wedge mode (USB or Bluetooth) "type" the code into the focused field.
//
// - Enter in the field submits what is there (a scanner's usual suffix; a pasted code too).
// - A burst without Enter (a scanner set up with no suffix) submits itself: characters
//   arriving faster than a person types (under BURST_GAP_MS apart, at least BURST_MIN of
//   them), forming a whole code, then a pause of IDLE_MS.
// - A key pressed while nothing editable has focus (after a click on a button, say) is
//   sent to the field, so a scan is never lost to focus.

const BURST_GAP_MS = 35;
const BURST_MIN = 16;
// Long enough that a busy terminal (a scanner's keys queued behind other work arrive in
// clumps) does not cut a code in two; short enough not to be felt after a scan.
const IDLE_MS = 400;
const CODE_SHAPE = /^(?:WP1|ES1):[0-9A-Z $%*+\-./:]{16,}$/;

function editable(element) {
  if (!element || element === document.body) return false;
  if (element.isContentEditable) return true;
  const tag = element.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  return tag === "INPUT" && !["checkbox", "radio", "button", "submit"].includes(element.type);
}

export class WedgeField {
  constructor(input, onCode, { active = () => true } = {}) {
    this.input = input;
    this.onCode = onCode;
    this.active = active;
    this.lastKeyAt = 0;
    this.burst = 0;
    this.idleTimer = null;
    input.addEventListener("keydown", (event) => this.keydown(event));
    input.addEventListener("input", () => this.typed());
    document.addEventListener("keydown", (event) => this.stray(event), true);
  }

  take(event) {
    const text = this.input.value.trim();
    this.input.value = "";
    this.burst = 0;
    clearTimeout(this.idleTimer);
    if (text) this.onCode(text, event ? event.timeStamp : performance.now());
  }

  keydown(event) {
    if (event.key === "Enter") {
      event.preventDefault();
      this.take(event);
    }
  }

  typed() {
    const now = performance.now();
    this.burst = now - this.lastKeyAt < BURST_GAP_MS ? this.burst + 1 : 1;
    this.lastKeyAt = now;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.burst >= BURST_MIN && CODE_SHAPE.test(this.input.value.trim())) this.take(null);
    }, IDLE_MS);
  }

  stray(event) {
    if (!this.active() || editable(document.activeElement) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key.length === 1 && !document.querySelector("dialog[open]")) this.input.focus();
  }
}
