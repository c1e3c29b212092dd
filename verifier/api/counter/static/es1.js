// How long an ES1 (e-card dynamic) code stays valid: its CWT exp claim (WIRE-FORMAT 1-3).
//
// For display only: the verdict is the service's. The page reads the code it just sent
// (base45 -> zlib -> COSE_Sign1 -> payload map, claim 4) and gives up quietly, showing
// no time, on anything it does not expect. Bounded like the service: 4096 bytes inflated.

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
const MAX_INFLATED = 4096;

function base45Decode(text) {
  const out = [];
  for (let i = 0; i < text.length; i += 3) {
    const chunk = text.slice(i, i + 3);
    const digits = [...chunk].map((c) => ALPHABET.indexOf(c));
    if (digits.includes(-1) || chunk.length === 1) throw new Error("base45");
    const value = digits[0] + digits[1] * 45 + (digits.length === 3 ? digits[2] * 2025 : 0);
    if (digits.length === 3) {
      if (value > 0xffff) throw new Error("base45");
      out.push(value >> 8, value & 0xff);
    } else {
      if (value > 0xff) throw new Error("base45");
      out.push(value);
    }
  }
  return new Uint8Array(out);
}

async function inflate(bytes) {
  // "deflate" in the Compression Streams API is the zlib format (RFC 1950)
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  const reader = stream.getReader();
  const parts = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_INFLATED) {
      reader.cancel();
      throw new Error("too large");
    }
    parts.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// A minimal CBOR reader: definite lengths, depth-bounded; enough for COSE_Sign1 and CWT claims.
function decodeCbor(bytes) {
  let pos = 0;
  const need = (n) => {
    if (n > bytes.length - pos) throw new Error("cbor: truncated");
  };
  const argument = (info) => {
    if (info < 24) return info;
    const size = { 24: 1, 25: 2, 26: 4, 27: 8 }[info];
    if (!size) throw new Error("cbor: length");
    need(size);
    let value = 0;
    for (let i = 0; i < size; i++) value = value * 256 + bytes[pos + i];
    pos += size;
    return value;
  };
  const item = (depth) => {
    if (depth > 8) throw new Error("cbor: depth");
    need(1);
    const initial = bytes[pos++];
    const major = initial >> 5;
    const value = argument(initial & 0x1f);
    switch (major) {
      case 0: return value;
      case 1: return -1 - value;
      case 2: need(value); pos += value; return bytes.subarray(pos - value, pos);
      case 3: need(value); pos += value; return new TextDecoder().decode(bytes.subarray(pos - value, pos));
      case 4: { const list = []; for (let i = 0; i < value; i++) list.push(item(depth + 1)); return list; }
      case 5: {
        const map = new Map();
        for (let i = 0; i < value; i++) { const k = item(depth + 1); map.set(k, item(depth + 1)); }
        return map;
      }
      case 6: return item(depth + 1); // a tag (18: COSE_Sign1): its content
      default: return null; // simple values and floats: not needed here
    }
  };
  return item(0);
}

// Epoch seconds at which an ES1 code stops being valid, or null.
export async function es1ExpiresAt(code) {
  if (typeof code !== "string" || !code.startsWith("ES1:") || typeof DecompressionStream !== "function") return null;
  try {
    const cose = decodeCbor(await inflate(base45Decode(code.slice(4))));
    if (!Array.isArray(cose) || cose.length !== 4 || !(cose[2] instanceof Uint8Array)) return null;
    const claims = decodeCbor(cose[2]);
    const exp = claims instanceof Map ? claims.get(4) : null;
    return Number.isInteger(exp) ? exp : null;
  } catch {
    return null;
  }
}
