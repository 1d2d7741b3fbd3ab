// Little tones for messages and for people coming and going, made with the Web Audio API:
// no files to fetch. Off unless the user turns them on; the choice is remembered. Browsers
// let audio start only after a user gesture, so the AudioContext is made on the first one.
import { recall, remember } from "./prefs.js";

// [frequency in Hz, start in s, length in s]: a blip; a door opening (rising); closing.
const TONES = {
  message: [[880, 0, 0.07]],
  join: [[523, 0, 0.09], [784, 0.1, 0.12]],
  leave: [[784, 0, 0.09], [523, 0.1, 0.12]],
};

export class Sound {
  constructor(toggle) {
    this.toggle = toggle;
    this.context = null;
    toggle.checked = recall("sound") === "on";
    toggle.addEventListener("change", () => {
      remember("sound", toggle.checked ? "on" : "off");
      if (toggle.checked) this.unlock();
    });
    const gesture = () => {
      if (this.toggle.checked) this.unlock();
    };
    document.addEventListener("pointerdown", gesture);
    document.addEventListener("keydown", gesture);
  }

  unlock() {
    if (!this.context) {
      const Context = window.AudioContext ?? window.webkitAudioContext;
      if (!Context) return;
      this.context = new Context();
    }
    if (this.context.state === "suspended") this.context.resume();
  }

  play(kind) {
    const context = this.context;
    if (!this.toggle.checked || !context || context.state !== "running") return;
    const now = context.currentTime;
    for (const [frequency, start, length] of TONES[kind]) {
      const oscillator = new OscillatorNode(context, { type: "sine", frequency });
      const gain = new GainNode(context, { gain: 0 });
      // A short ramp in and out: a sudden start or stop of a wave clicks.
      gain.gain.setValueAtTime(0, now + start);
      gain.gain.linearRampToValueAtTime(0.15, now + start + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.001, now + start + length);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(now + start);
      oscillator.stop(now + start + length + 0.02);
    }
  }
}
