// Browser notifications for what concerns the user while the tab is hidden: a message that
// mentions them, and an instant message to them. The browser is asked for permission only
// when the user turns them on (a click), and the choice is remembered.
import { recall, remember } from "./prefs.js";

const PREVIEW = 200; // characters of the message a notification shows

const supported = () => "Notification" in window;

export class Notifier {
  // toggle: the checkbox that turns them on; say(text): tells the user why they are not.
  constructor({ toggle, say }) {
    this.toggle = toggle;
    this.say = say;
    if (!supported()) {
      toggle.closest("label").hidden = true;
      return;
    }
    toggle.checked = recall("notify") === "on" && Notification.permission === "granted";
    toggle.addEventListener("change", () => this.changed());
  }

  async changed() {
    if (!this.toggle.checked) {
      remember("notify", "off");
      return;
    }
    // A user's click: the one moment a page may ask.
    const answer = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
    if (answer !== "granted") {
      this.toggle.checked = false;
      remember("notify", "off");
      this.say("Notifications are blocked for this site: allow them in the browser's settings.");
      return;
    }
    remember("notify", "on");
  }

  get on() {
    return supported() && this.toggle.checked && Notification.permission === "granted";
  }

  // A notification, if they are on and the tab is hidden; clicking it brings the tab back.
  show(title, body, tag) {
    if (!this.on || !document.hidden) return null;
    const notification = new Notification(title, { body: body.slice(0, PREVIEW), tag });
    notification.addEventListener("click", () => {
      window.focus();
      notification.close();
    });
    return notification;
  }

  mention(message, room) {
    return this.show(`${message.name} mentioned you in #${room}`, message.text, `mention:${room}`);
  }

  direct(from, text) {
    return this.show(`${from} wrote to you`, text, `direct:${from}`);
  }
}
