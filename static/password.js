// Changing the password, in a small dialog: the current password and a new one. The server
// ends every other session of the account; this one stays signed in.
import { clearFields, markField, say } from "./feedback.js";
import { reasonOf } from "./accounts.js";

export class PasswordDialog {
  // submit(current, next) -> a promise of the server's answer (accounts.js, changePassword).
  // signedOut(): the session had ended meanwhile; the page goes back to signing in.
  constructor({ dialog, form, fields, errors, part, message, submitButton, closeButton, submit, signedOut }) {
    this.dialog = dialog;
    this.fields = fields; // {current, next}
    this.errors = errors; // {current, next}: the text beside each
    this.part = part; // what is put away once the password is changed
    this.message = message;
    this.submitButton = submitButton;
    this.closeButton = closeButton;
    this.submit = submit;
    this.signedOut = signedOut;
    this.pending = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.attempt();
    });
    closeButton.addEventListener("click", () => this.close());
    // Passwords are not kept in the page once the dialog is closed, however it closed.
    dialog.addEventListener("close", () => this.reset());
  }

  open() {
    this.reset();
    this.dialog.showModal();
    this.fields.current.focus();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  reset() {
    this.clear();
    this.fields.current.value = "";
    this.fields.next.value = "";
    this.part.hidden = false;
    this.submitButton.hidden = false;
    this.closeButton.textContent = "Cancel";
  }

  async attempt() {
    if (this.pending) return;
    const current = this.fields.current.value;
    const next = this.fields.next.value;
    if (!current) return this.refuse("Type your current password.", "current");
    if (!next) return this.refuse("Pick a new password.", "next");
    this.clear();
    this.pending = true;
    this.submitButton.disabled = true;
    let answer;
    try {
      answer = await this.submit(current, next);
    } finally {
      this.pending = false;
      this.submitButton.disabled = false;
    }
    if (answer.ok) return this.changed();
    if (answer.error === "signed_out") {
      this.close();
      this.signedOut();
    } else if (answer.error === "wrong") {
      this.refuse("That is not your current password.", "current");
    } else if (answer.error === "invalid") {
      this.refuse(reasonOf(answer), "next");
    } else {
      this.say(reasonOf(answer), "error");
      this.fields.current.focus();
    }
  }

  changed() {
    this.fields.current.value = "";
    this.fields.next.value = "";
    this.part.hidden = true;
    this.submitButton.hidden = true;
    this.closeButton.textContent = "Close";
    this.say("Your password is changed. Your other tabs and devices were signed out.");
    this.closeButton.focus();
  }

  refuse(reason, which) {
    this.clear();
    const field = this.fields[which];
    markField(field, this.errors[which], reason);
  }

  say(text, kind = "note") {
    say(this.message, text, kind);
  }

  clear() {
    this.say("");
    clearFields(this.fields, this.errors);
  }
}
