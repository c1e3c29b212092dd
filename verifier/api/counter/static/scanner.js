// Live QR scanning from a camera (getUserMedia). Decoding: the browser's BarcodeDetector
// where it has one for QR codes, else zxing-wasm (vendored; its .wasm is loaded from this
// origin, never the CDN its loader defaults to). A terminal may force zxing-wasm
// (setting "decoder"), which is also how the tests pin the path they check.
//
// A code held in view is checked once; it is checked again only after it has left the
// view for FORGET_FRAMES frames (or the camera restarted).

const ZXING = "../vendor/zxing-wasm/dist/es/reader/index.js";
const ZXING_WASM_DIR = "../vendor/zxing-wasm/dist/reader/";
const MAX_SIDE = 960;
const FORGET_FRAMES = 6;

async function zxingDecoder() {
  const zxing = await import(ZXING);
  await zxing.prepareZXingModule({
    overrides: { locateFile: (path, prefix) => (path.endsWith(".wasm") ? new URL(ZXING_WASM_DIR + path, import.meta.url).href : prefix + path) },
    fireImmediately: true,
  });
  const options = { formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 1 };
  return {
    name: "zxing-wasm",
    decode: async (image) => (await zxing.readBarcodes(image, options)).filter((r) => r.isValid).map((r) => r.text),
  };
}

async function nativeDecoder() {
  if (!("BarcodeDetector" in window)) return null;
  try {
    const formats = await window.BarcodeDetector.getSupportedFormats();
    if (!formats.includes("qr_code")) return null;
    const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    return { name: "BarcodeDetector", decode: async (image) => (await detector.detect(image)).map((b) => b.rawValue) };
  } catch {
    return null;
  }
}

export async function makeDecoder(preferred) {
  if (preferred !== "zxing-wasm") {
    const native = await nativeDecoder();
    if (native) return native;
  }
  return zxingDecoder();
}

export class CameraScanner {
  constructor(video, { onCode, onState, decoderPreference }) {
    this.video = video;
    this.onCode = onCode;
    this.onState = onState;
    this.decoderPreference = decoderPreference;
    this.decoder = null;
    this.stream = null;
    this.canvas = document.createElement("canvas");
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
    this.running = false;
    this.lastText = null;
    this.missed = 0;
    this.torchOn = false;
  }

  get active() {
    return this.running;
  }

  async cameras() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.filter((d) => d.kind === "videoinput").map((d, i) => ({ id: d.deviceId, label: d.label || `Camera ${i + 1}` }));
  }

  async start(deviceId) {
    this.stop();
    this.onState("starting");
    try {
      this.decoder = this.decoder || (await makeDecoder(this.decoderPreference()));
    } catch (error) {
      this.onState("nodecoder", { detail: String(error) });
      return false;
    }
    try {
      const video = deviceId ? { deviceId: { exact: deviceId } }
        : { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } };
      this.stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    } catch (error) {
      this.onState("denied", { detail: String(error) });
      return false;
    }
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => {});
    this.running = true;
    this.lastText = null;
    this.missed = 0;
    this.onState("on", { decoder: this.decoder.name, torch: this.hasTorch() });
    this.schedule();
    return true;
  }

  stop() {
    this.running = false;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    this.video.srcObject = null;
    this.torchOn = false;
  }

  track() {
    return this.stream ? this.stream.getVideoTracks()[0] : null;
  }

  hasTorch() {
    const track = this.track();
    const capabilities = track && track.getCapabilities ? track.getCapabilities() : {};
    return !!capabilities.torch;
  }

  async toggleTorch() {
    const track = this.track();
    if (!track || !this.hasTorch()) return false;
    this.torchOn = !this.torchOn;
    await track.applyConstraints({ advanced: [{ torch: this.torchOn }] }).catch(() => { this.torchOn = false; });
    return this.torchOn;
  }

  schedule() {
    if (!this.running) return;
    if (this.video.requestVideoFrameCallback) {
      this.video.requestVideoFrameCallback((now, frame) => this.scan(frame.presentationTime || now));
    } else {
      setTimeout(() => this.scan(performance.now()), 50);
    }
  }

  async scan(frameTime) {
    if (!this.running) return;
    const width = this.video.videoWidth;
    const height = this.video.videoHeight;
    if (width && height) {
      const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
      this.canvas.width = Math.round(width * scale);
      this.canvas.height = Math.round(height * scale);
      this.context.drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
      const image = this.context.getImageData(0, 0, this.canvas.width, this.canvas.height);
      const started = performance.now();
      let texts = [];
      try {
        texts = await this.decoder.decode(image);
      } catch {
        texts = [];
      }
      performance.measure("pv:decode", { start: started, end: performance.now(), detail: { found: texts.length > 0 } });
      this.seen(texts[0] || null, frameTime);
    }
    this.schedule();
  }

  seen(text, frameTime) {
    if (!text) {
      this.missed += 1;
      if (this.missed >= FORGET_FRAMES) this.lastText = null;
      return;
    }
    this.missed = 0;
    if (text === this.lastText) return;
    this.lastText = text;
    this.onCode(text, frameTime);
  }
}
