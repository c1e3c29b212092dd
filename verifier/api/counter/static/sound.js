// A short sound for accept and another for refuse (a cannot-confirm sounds like a refusal):
// generated with Web Audio, so nothing is fetched. Mutable (F9).

let context = null;

function audio() {
  if (!context) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    context = new Context();
  }
  if (context.state === "suspended") context.resume().catch(() => {});
  return context;
}

// Call from a user gesture (sign-in click, a key) so that the browser lets the page play later.
export function unlock() {
  try {
    audio();
  } catch {
    context = null;
  }
}

function tones(steps) {
  const ctx = audio();
  if (!ctx) return;
  let at = ctx.currentTime + 0.01;
  for (const [frequency, seconds, type] of steps) {
    const oscillator = ctx.createOscillator();
    const gain = ctx.createGain();
    oscillator.type = type;
    oscillator.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.25, at + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + seconds);
    oscillator.connect(gain).connect(ctx.destination);
    oscillator.start(at);
    oscillator.stop(at + seconds + 0.02);
    at += seconds + 0.04;
  }
}

export function play(outcome) {
  try {
    if (outcome === "accept") tones([[880, 0.09, "sine"], [1320, 0.14, "sine"]]);
    else tones([[220, 0.16, "square"], [196, 0.22, "square"]]);
  } catch {
    // no audio device: the screen says it all
  }
}
