// When a customer writes: a short sound (Web Audio, no file to load) and the unread count
// in the tab title.

export class Alerts {
  constructor(baseTitle) {
    this.baseTitle = baseTitle;
    this.context = null;
    this.count = 0;
    // Browsers start audio only after a gesture on the page: make the context on the first.
    const unlock = () => {
      this.context ??= makeContext();
      this.context?.resume?.();
    };
    addEventListener("pointerdown", unlock, { once: true });
    addEventListener("keydown", unlock, { once: true });
  }

  /** The tab title shows the unread count, `(3) Atendimento`. */
  unread(total) {
    document.title = total > 0 ? `(${total}) ${this.baseTitle}` : this.baseTitle;
  }

  /** A customer wrote: a short two-note chime. */
  chime() {
    this.count += 1;
    document.body.dataset.chimes = String(this.count);
    const ctx = (this.context ??= makeContext());
    if (!ctx || ctx.state === "suspended") return;
    const now = ctx.currentTime;
    for (const [offset, freq] of [[0, 880], [0.12, 1320]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + offset);
      gain.gain.exponentialRampToValueAtTime(0.2, now + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + offset);
      osc.stop(now + offset + 0.2);
    }
  }
}

function makeContext() {
  const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
  try {
    return Ctx ? new Ctx() : null;
  } catch {
    return null;
  }
}
