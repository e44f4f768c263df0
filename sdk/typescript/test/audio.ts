// Test audio: sines, 16-bit PCM and G.711 mu-law, dominant frequency and tone level.

/** `ms` of a sine at `rate`, as floats. */
export function sine(hz: number, ms: number, rate: number, amplitude = 8000): Float64Array {
  const out = new Float64Array(Math.floor((ms * rate) / 1000));
  for (let i = 0; i < out.length; i++) {
    out[i] = amplitude * Math.sin((2 * Math.PI * hz * i) / rate);
  }
  return out;
}

const clip = (s: number): number => Math.max(-32768, Math.min(32767, Math.round(s)));

/** Little-endian 16-bit PCM. */
export function pcm16(samples: Float64Array): Uint8Array {
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  samples.forEach((s, i) => view.setInt16(2 * i, clip(s), true));
  return out;
}

/** Decodes little-endian 16-bit PCM. */
export function fromPcm16(data: Uint8Array): Float64Array {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float64Array(Math.floor(data.length / 2));
  for (let i = 0; i < out.length; i++) {
    out[i] = view.getInt16(2 * i, true);
  }
  return out;
}

const BIAS = 0x84;

/** G.711 mu-law. */
export function ulaw(samples: Float64Array): Uint8Array {
  const out = new Uint8Array(samples.length);
  samples.forEach((x, i) => {
    let s = clip(x);
    let sign = 0;
    if (s < 0) {
      s = -s;
      sign = 0x80;
    }
    s = Math.min(s, 32635) + BIAS;
    let exponent = 7;
    for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) {
      exponent--;
    }
    const mantissa = (s >> (exponent + 3)) & 0x0f;
    out[i] = ~(sign | (exponent << 4) | mantissa) & 0xff;
  });
  return out;
}

/** Decodes G.711 mu-law. */
export function fromUlaw(data: Uint8Array): Float64Array {
  const out = new Float64Array(data.length);
  data.forEach((b, i) => {
    const u = ~b & 0xff;
    const exponent = (u >> 4) & 0x07;
    const s = ((((u & 0x0f) << 3) + BIAS) << exponent) - BIAS;
    out[i] = u & 0x80 ? -s : s;
  });
  return out;
}

/** In-place radix-2 FFT of (re, im); the length must be a power of two. */
function fft(re: Float64Array, im: Float64Array): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) {
      j ^= bit;
    }
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j]!, re[i]!];
      [im[i], im[j]] = [im[j]!, im[i]!];
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const angle = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k++) {
        const wr = Math.cos(angle * k);
        const wi = Math.sin(angle * k);
        const a = start + k;
        const b = a + size / 2;
        const br = re[b]! * wr - im[b]! * wi;
        const bi = re[b]! * wi + im[b]! * wr;
        re[b] = re[a]! - br;
        im[b] = im[a]! - bi;
        re[a] = re[a]! + br;
        im[a] = im[a]! + bi;
      }
    }
  }
}

/** Frequency of the strongest spectral peak (Hann window, DC excluded, parabolic refinement). */
export function dominantHz(samples: Float64Array, rate: number): number {
  if (samples.length < 4) {
    return 0;
  }
  let n = 1;
  while (n < 2 * samples.length) {
    n <<= 1;
  }
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  const last = samples.length - 1;
  samples.forEach((s, i) => {
    re[i] = s * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / last));
  });
  fft(re, im);
  const mag = new Float64Array(n / 2 + 1);
  for (let i = 0; i < mag.length; i++) {
    mag[i] = Math.hypot(re[i]!, im[i]!);
  }
  let best = 1;
  for (let i = 2; i < mag.length; i++) {
    if (mag[i]! > mag[best]!) {
      best = i;
    }
  }
  let offset = 0;
  if (best > 1 && best < mag.length - 1) {
    const [a, b, c] = [mag[best - 1]!, mag[best]!, mag[best + 1]!];
    const d = a - 2 * b + c;
    if (d !== 0) {
      offset = (0.5 * (a - c)) / d;
    }
  }
  return ((best + offset) * rate) / n;
}

/** Amplitude of the `hz` component, in sample units. */
export function toneLevel(samples: Float64Array, rate: number, hz: number): number {
  if (samples.length === 0) {
    return 0;
  }
  let c = 0;
  let s = 0;
  samples.forEach((x, i) => {
    const t = (2 * Math.PI * hz * i) / rate;
    c += x * Math.cos(t);
    s += x * Math.sin(t);
  });
  return (2 * Math.hypot(c, s)) / samples.length;
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
