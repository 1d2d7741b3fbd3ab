// Sign-on: who you are, and which room. Signed out, a screen name and its password sign in
// or create an account, and a screen name alone continues as a guest (on a server that has
// guests); signed in, only the room is asked. The name and room are remembered. What the
// server refuses is explained beside the field at fault, to try again without reloading.
import { clearFields, markField, say } from "./feedback.js";
import { recall, remember } from "./prefs.js";

export const DEFAULT_ROOM = "lobby";

const TITLES = { signedIn: "Pick a room", signedOut: "Sign on" };

export class SignOn {
  // submit(action, {name, password, room}) -> a promise, settled once the attempt is over;
  // `action` is "signin", "register", "guest", or "enter" (signed in already: a room only).
  // `fields` and `errors` hold the name, password and room inputs and the text beside each.
  constructor({ form, fields, errors, message, title, hint, passwordHint, guests, registration, submit }) {
    this.form = form;
    this.fields = fields;
    this.errors = errors;
    this.message = message;
    this.title = title;
    this.hint = hint;
    this.passwordHint = passwordHint;
    this.guests = guests;
    this.registration = registration;
    this.submit = submit;
    this.account = null;
    this.pending = false;
    this.buttons = new Map([...form.querySelectorAll("button[value]")].map((button) => [button.value, button]));
    // A room in the link (/r/NAME, /?room=NAME) wins over the remembered one.
    fields.room.value ||= recall("room", DEFAULT_ROOM);
    fields.name.value ||= recall("name");
    // Enter does what the highlighted button says: with a password, sign in; without one,
    // continue as a guest. Creating an account always takes its own button.
    form.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing || !(event.target instanceof HTMLInputElement)) return;
      event.preventDefault();
      form.requestSubmit(this.buttons.get(this.defaultAction()));
    });
    fields.password.addEventListener("input", () => this.render());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.attempt(event.submitter?.value ?? this.defaultAction());
    });
    this.render();
  }

  get room() {
    return this.fields.room.value.trim();
  }

  // Signed in (`account` is {name, admin}), or signed out (null).
  setAccount(account) {
    this.account = account;
    this.fields.password.value = "";
    if (account) this.fields.name.value = account.name;
    this.render();
  }

  // Whether "Continue as guest" is offered: the server may turn guests away at any time.
  allowGuests(allowed) {
    this.guests = allowed;
    this.render();
  }

  defaultAction() {
    if (this.account) return "enter";
    if (this.fields.password.value || !this.guests) return "signin";
    return "guest";
  }

  render() {
    const signedIn = this.account !== null;
    this.fields.name.closest(".field").hidden = signedIn;
    this.fields.password.closest(".field").hidden = signedIn;
    const offered = {
      enter: signedIn,
      signin: !signedIn,
      register: !signedIn && this.registration,
      guest: !signedIn && this.guests,
    };
    const chosen = this.defaultAction();
    for (const [action, button] of this.buttons) {
      button.hidden = !offered[action];
      button.toggleAttribute("data-default", action === chosen);
    }
    this.title.textContent = signedIn ? TITLES.signedIn : TITLES.signedOut;
    this.hint.textContent = signedIn ? `Signed in as ${this.account.name}.` : this.signedOutHint();
    this.passwordHint.textContent = this.guests && !signedIn ? "Leave it empty to continue as a guest." : "";
    this.passwordHint.hidden = !this.passwordHint.textContent;
  }

  signedOutHint() {
    const ways = this.registration
      ? "Sign in with your screen name and password, or create an account to make a name yours."
      : "Sign in with your screen name and password.";
    return this.guests ? `${ways} As a guest, a screen name is enough.` : ways;
  }

  async attempt(action) {
    if (this.pending) return;
    const wanted = { name: this.fields.name.value.trim(), password: this.fields.password.value, room: this.room };
    const withPassword = action === "signin" || action === "register";
    if (action !== "enter" && !wanted.name) {
      return this.refuse(action === "signin" ? "Type your screen name." : "Pick a screen name.", "name");
    }
    if (withPassword && !wanted.password) {
      return this.refuse(action === "signin" ? "Type your password." : "Pick a password for your account.", "password");
    }
    if (!wanted.room) return this.refuse("Pick a room.", "room");
    this.clear();
    this.busy(true);
    try {
      await this.submit(action, wanted);
    } finally {
      this.busy(false);
    }
  }

  busy(on) {
    this.pending = on;
    if (on) this.form.setAttribute("aria-busy", "true");
    else this.form.removeAttribute("aria-busy");
    for (const button of this.buttons.values()) button.disabled = on;
  }

  show(room) {
    if (room) this.fields.room.value = room;
    this.render();
    this.form.hidden = false;
    this.firstToFill().focus();
  }

  hide() {
    this.form.hidden = true;
  }

  // The server let the user in: remember the name as the server spells it, and how.
  accepted(room, name, guest) {
    remember("name", name);
    remember("room", room);
    remember("as", guest ? "guest" : "account");
    this.fields.name.value = name;
    this.fields.room.value = room;
  }

  // Refused by the server (a close code's reason, an HTTP answer's detail) or by the checks
  // above. `which` is the field at fault ("name", "password" or "room"); the reason goes
  // beside it. Without one, or when that field is not shown, it goes below the fields.
  refuse(reason, which = "") {
    this.clear();
    this.form.hidden = false;
    const field = this.fields[which];
    if (!field || field.closest("[hidden]")) {
      this.say(reason, "error");
      this.firstToFill().focus();
      return;
    }
    markField(field, this.errors[which], reason);
  }

  // A word about the form as a whole: "error" (it did not work) or "note".
  say(text, kind = "note") {
    say(this.message, text, kind);
  }

  clear() {
    this.say("");
    clearFields(this.fields, this.errors);
  }

  // Where the user goes on: the first empty field shown, or the highlighted button. The
  // password counts as empty only for whoever signed in last time, not for a guest.
  firstToFill() {
    const asGuest = this.guests && recall("as") !== "account";
    const fields = [this.fields.name, ...(asGuest ? [] : [this.fields.password]), this.fields.room];
    const empty = fields.find((field) => !field.closest("[hidden]") && !field.value.trim());
    return empty ?? this.buttons.get(this.defaultAction());
  }
}
