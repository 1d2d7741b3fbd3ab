// Writing: Enter sends, Shift+Enter starts a new line; a counter near the size limit;
// nothing empty or too big is sent. What the server refused comes back to the box, with
// the reason beside it, where the user is looking.

const encoder = new TextEncoder();
const WARN_AT = 0.8; // of the limit: when the counter appears

// The server limits the frame, not the text: count the bytes of what is actually sent.
export function frameBytes(text) {
  return encoder.encode(JSON.stringify({ type: "message", text })).length;
}

export class Composer {
  // send(text) -> whether it went out. command(line), for a line starting with "/": {handled,
  // keep, say} when it was a command (kept in the box if `keep`, `say` beside it), or
  // {handled: false, text} to send `text` (or the line) as a message.
  constructor({ form, input, error, counter, maxBytes, send, command = null }) {
    this.command = command;
    this.form = form;
    this.input = input;
    this.error = error;
    this.counter = counter;
    this.maxBytes = maxBytes;
    this.send = send;
    // Sent, not yet echoed back by the server (the echo is its acknowledgement).
    this.unconfirmed = [];
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    input.addEventListener("input", () => this.count());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  submit() {
    let text = this.input.value;
    if (!text.trim()) return;
    if (this.command && text.startsWith("/")) {
      const answer = this.command(text);
      if (answer.handled) {
        if (!answer.keep) {
          this.input.value = "";
          this.count();
        }
        this.say(answer.say ?? "");
        return;
      }
      text = answer.text ?? text;
    }
    const over = frameBytes(text) - this.maxBytes;
    if (over > 0) {
      this.say(`Too long by ${over} bytes: shorten it to send it.`);
      return;
    }
    if (!this.send(text)) {
      this.say("Not connected: your message is kept here until you are back.");
      return;
    }
    this.unconfirmed.push(text);
    this.input.value = "";
    this.say("");
    this.count();
  }

  // The server echoed one of our messages: it is in the room.
  echoed(text) {
    const index = this.unconfirmed.indexOf(text);
    if (index >= 0) this.unconfirmed.splice(index, 1);
  }

  // The server refused the latest message (rate limit, not stored, ...).
  refused(detail) {
    const text = this.unconfirmed.pop();
    if (text !== undefined && !this.input.value) {
      this.input.value = text;
      this.count();
    }
    this.say(detail);
  }

  // A new connection: what was never echoed may be lost. Its welcome shows what arrived;
  // the rest comes back to the box, to be sent again.
  resumed(history, me) {
    for (const message of history) {
      if (message.name === me) this.echoed(message.text);
    }
    const lost = this.unconfirmed.splice(0);
    if (lost.length && !this.input.value) {
      this.input.value = lost.join("\n");
      this.count();
      this.say("The connection dropped before this was sent: press Enter to send it again.");
    }
  }

  forget() {
    this.unconfirmed = [];
    this.say("");
  }

  say(text) {
    this.error.textContent = text;
  }

  count() {
    const left = this.maxBytes - frameBytes(this.input.value);
    const near = left < this.maxBytes * (1 - WARN_AT);
    this.counter.textContent = !near ? "" : left >= 0 ? `${left} bytes left` : `${-left} bytes too many`;
    this.counter.classList.toggle("over", left < 0);
    if (left < 0) this.input.setAttribute("aria-invalid", "true");
    else this.input.removeAttribute("aria-invalid");
  }
}
