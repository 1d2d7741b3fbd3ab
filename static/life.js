// What happens to a message after it is sent (docs/protocol.md, "edit", "delete", "react"):
// the page draws its latest state (edited, deleted, its reactions, mentions) into the
// message's item, offers the actions (edit one's own, react to any; delete one's own, and
// any for a moderator: moderation.js's `may`, in the style), and applies the events that
// tell of changes. The server decides who may: what it refuses comes back as an error,
// said beside the composer.

// The reactions the server takes, in its order (docs/protocol.md, "react").
export const REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "🙏"];

const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

function button(text, label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  if (label) element.setAttribute("aria-label", label);
  element.addEventListener("click", onClick);
  return element;
}

export class Life {
  // send(event) -> whether it went out; me() -> the user's name; editWindow in ms.
  constructor({ timeline, send, me, editWindow, mentions }) {
    this.timeline = timeline;
    this.send = send;
    this.me = me;
    this.editWindow = editWindow;
    this.mentions = mentions;
  }

  // The event of a change: the message shown is drawn again as it is now.
  apply(event) {
    const now = this.timeline.messageOf(event.id);
    if (!now) return; // not shown: it comes as it is now with any later page
    let changed;
    if (event.type === "edit") changed = { ...now, text: event.text, edited_ts: event.edited_ts };
    else if (event.type === "reactions") changed = { ...now, reactions: event.reactions };
    else {
      changed = { ...now, text: "", deleted: true };
      delete changed.edited_ts;
      delete changed.reactions;
    }
    this.timeline.replace(changed);
  }

  decorate(item, message) {
    const text = item.querySelector(".text");
    this.mentions.know(message.name);
    if (message.deleted) {
      item.classList.add("deleted");
      text.textContent = "This message was deleted.";
      return;
    }
    this.mentions.highlight(text);
    const mine = message.name === this.me();
    if (!mine && this.mentions.mentionsMe(message.text)) item.classList.add("mentions-me");
    if (message.edited_ts) {
      const edited = document.createElement("span");
      edited.className = "edited";
      edited.textContent = "(edited)";
      edited.title = `Edited ${full.format(new Date(message.edited_ts))}`;
      item.querySelector(".meta").append(" ", edited);
    }
    const reactions = document.createElement("div");
    reactions.className = "reactions";
    for (const [emoji, count] of Object.entries(message.reactions ?? {})) {
      const chip = button(`${emoji} ${count}`, `${emoji} ${count}: react with ${emoji} too, or take yours back`, () =>
        this.react(message, emoji),
      );
      chip.className = "reaction";
      reactions.append(chip);
    }
    const actions = document.createElement("div");
    actions.className = "actions";
    const palette = document.createElement("div");
    palette.className = "palette";
    palette.hidden = true;
    for (const emoji of REACTIONS) palette.append(button(emoji, `React with ${emoji}`, () => this.react(message, emoji)));
    actions.append(
      button("React", null, () => {
        palette.hidden = !palette.hidden;
      }),
    );
    const left = this.editWindow - (Date.now() - message.ts);
    if (mine && left > 0) {
      const edit = button("Edit", null, () => this.edit(item, message));
      actions.append(edit);
      setTimeout(() => edit.remove(), left); // past the window the server would say too_late
    }
    // Drawn on every message, shown (style.css) on one's own and to those who may delete any,
    // whose standing can change while the message is shown.
    const remove = button("Delete", `Delete what ${message.name} wrote`, () => this.confirmDelete(item, message));
    remove.className = "delete";
    actions.append(remove);
    item.append(reactions, actions, palette);
  }

  react(message, emoji) {
    this.send({ type: "react", id: message.id, emoji });
  }

  // The text, in a box of its own, in place: Enter saves, Shift+Enter starts a new line,
  // Escape gives up. The message is drawn again once the server tells of the edit.
  edit(item, message) {
    const text = item.querySelector(".text");
    const form = document.createElement("form");
    form.className = "editing";
    const box = document.createElement("textarea");
    box.value = message.text;
    box.rows = 2;
    box.setAttribute("aria-label", "New text");
    const cancel = () => form.replaceWith(text);
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Save";
    form.append(box, save, button("Cancel", null, cancel));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (box.value.trim() && box.value !== message.text) this.send({ type: "edit", id: message.id, text: box.value });
      cancel();
    });
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === "Escape") {
        cancel();
      }
    });
    text.replaceWith(form);
    box.focus();
  }

  confirmDelete(item, message) {
    const actions = item.querySelector(".actions");
    const question = document.createElement("div");
    question.className = "actions confirm";
    const words = document.createElement("span");
    words.textContent = "Delete it for everyone?";
    question.append(
      words,
      button("Delete", "Delete it", () => {
        this.send({ type: "delete", id: message.id });
        question.replaceWith(actions);
      }),
      button("Keep", "Keep it", () => question.replaceWith(actions)),
    );
    actions.replaceWith(question);
    question.querySelector("button").focus();
  }
}
