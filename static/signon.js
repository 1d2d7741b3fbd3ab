// Sign-on: a screen name and a room, both remembered. A name the server refuses is
// explained beside the field at fault, and the user tries another without reloading.
import { recall, remember } from "./prefs.js";

export const DEFAULT_ROOM = "lobby";

export class SignOn {
  // submit(room, name): the user asked to sign on.
  constructor({ form, name, room, error, submit }) {
    this.form = form;
    this.name = name;
    this.room = room;
    this.error = error;
    // A room in the link (/r/NAME, /?room=NAME) wins over the remembered one.
    room.value ||= recall("room", DEFAULT_ROOM);
    name.value ||= recall("name");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const wanted = { name: name.value.trim(), room: room.value.trim() };
      if (!wanted.name) return this.refuse("Pick a screen name.", "name");
      if (!wanted.room) return this.refuse("Pick a room.", "room");
      this.clear();
      submit(wanted.room, wanted.name);
    });
  }

  show(room) {
    if (room) this.room.value = room;
    this.form.hidden = false;
    (this.name.value ? this.form.querySelector("button") : this.name).focus();
  }

  hide() {
    this.form.hidden = true;
  }

  // The server accepted the name: remember it as the server spells it.
  accepted(room, name) {
    remember("name", name);
    remember("room", room);
    this.name.value = name;
    this.room.value = room;
  }

  // Refused by the server (close 4400 or 4409, whose reason says why) or by the checks above;
  // `which` is the field at fault, "name" or "room".
  refuse(reason, which) {
    const field = which === "room" ? this.room : this.name;
    this.clear();
    this.error.textContent = reason;
    field.setAttribute("aria-invalid", "true");
    this.form.hidden = false;
    field.focus();
    field.select();
  }

  clear() {
    this.error.textContent = "";
    this.name.removeAttribute("aria-invalid");
    this.room.removeAttribute("aria-invalid");
  }
}
