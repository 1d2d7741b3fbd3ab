// The connection's state, always in view: connecting, online, reconnecting in N s, or
// why it stopped, with a button to try again now.
import { Close } from "./connection.js";

const WHY = new Map([
  [Close.GOING_AWAY, "The server is restarting."],
  [Close.SERVICE_RESTART, "The server is restarting."],
  [Close.INTERNAL_ERROR, "The connection stopped answering."],
  [Close.TRY_AGAIN_LATER, "This page fell too far behind the room."],
  [Close.UNSUPPORTED_DATA, "Disconnected: the server could not read what this page sent."],
  [Close.POLICY_VIOLATION, "Disconnected for sending too many messages too fast."],
  [Close.MESSAGE_TOO_BIG, "Disconnected: a message was too big for the server."],
  [Close.REPLACED, "Disconnected: a newer connection took this page's name over."],
  [Close.FORBIDDEN, "Removed from this room."],
]);

export function explain(code) {
  return WHY.get(code) ?? "Connection lost.";
}

// While reconnecting, a refused name is this page's own old connection, not yet let go.
const GHOST = "Your previous connection is still open on the server.";

export class Status {
  constructor({ element, text, countdown, button }) {
    this.element = element;
    this.text = text;
    this.countdown = countdown;
    this.button = button;
    this.ticker = null;
  }

  // `where`: {name, room} of the connection.
  show(state, where) {
    clearInterval(this.ticker);
    this.ticker = null;
    this.countdown.textContent = "";
    this.button.hidden = true;
    let text;
    switch (state.phase) {
      case "connecting":
        text = `Connecting to #${where.room}…`;
        break;
      case "online":
        text = `Online as ${where.name} in #${where.room}`;
        break;
      case "waiting":
        // The countdown lives outside what screen readers hear: once is enough.
        text = `${state.code === Close.NAME_TAKEN ? GHOST : explain(state.code)} Reconnecting`;
        this.button.textContent = "Reconnect now";
        this.button.hidden = false;
        this.tick(state.at);
        this.ticker = setInterval(() => this.tick(state.at), 250);
        break;
      default:
        if (WHY.has(state.code)) {
          text = explain(state.code);
          this.button.textContent = "Reconnect";
          this.button.hidden = false;
        } else {
          text = "Signed off";
        }
    }
    this.element.dataset.state = state.phase;
    this.text.textContent = text;
  }

  tick(at) {
    const seconds = Math.max(0, Math.ceil((at - Date.now()) / 1000));
    this.countdown.textContent = ` in ${seconds} s`;
  }
}
