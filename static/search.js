// Searching the room (docs/protocol.md, "Search"): the matches, newest first, with the
// words marked; a click shows the message in the conversation if it is there, or else in
// context, read from the server around it. Everything shown is text, never HTML.
import { colourClass, textWithLinks, timeElement } from "./text.js";

const LETTERS = /[\p{L}\p{N}]+/gu;
const FOUND_FOR = 2000; // ms a message found in the conversation stays marked

// Words as the server compares them (app/core/words.py): no case, no accents.
function fold(word) {
  return word.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
}

function marked(text, words) {
  const fragment = document.createDocumentFragment();
  let done = 0;
  for (const match of text.matchAll(LETTERS)) {
    if (!words.has(fold(match[0]))) continue;
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    fragment.append(text.slice(done, match.index), mark);
    done = match.index + match[0].length;
  }
  fragment.append(text.slice(done));
  return fragment;
}

export class Search {
  // room() -> the room shown; reveal(id) -> whether the conversation shows it (and scrolled to it).
  constructor({ open, panel, form, input, close, status, results, more, back, room, reveal }) {
    Object.assign(this, { open, panel, form, input, status, results, more, back, room, reveal });
    this.query = "";
    this.words = new Set();
    this.last = null; // the id of the oldest result shown, for the next page
    this.found = []; // the results shown, to come back to from a message's context
    open.addEventListener("click", () => (panel.hidden ? this.show() : this.hide()));
    close.addEventListener("click", () => this.hide());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run(input.value);
    });
    more.addEventListener("click", () => this.page());
    back.addEventListener("click", () => this.showResults());
  }

  show() {
    this.panel.hidden = false;
    this.open.setAttribute("aria-expanded", "true");
    this.input.focus();
  }

  hide() {
    this.panel.hidden = true;
    this.open.setAttribute("aria-expanded", "false");
  }

  // Another room: nothing found there yet.
  reset() {
    this.query = "";
    this.found = [];
    this.results.replaceChildren();
    this.status.textContent = "";
    this.more.hidden = this.back.hidden = true;
  }

  async run(query) {
    this.query = query;
    this.words = new Set((query.match(LETTERS) ?? []).map(fold));
    this.found = [];
    this.last = null;
    await this.page();
  }

  async page() {
    const params = new URLSearchParams({ q: this.query });
    if (this.last !== null) params.set("before", String(this.last));
    const answer = await this.ask(`search?${params}`);
    if (!answer) return;
    this.found.push(...answer.messages);
    this.last = answer.messages.at(-1)?.id ?? this.last;
    this.more.dataset.more = answer.more ? "yes" : "no";
    this.showResults();
  }

  showResults() {
    this.back.hidden = true;
    this.more.hidden = this.more.dataset.more !== "yes";
    const count = this.found.length;
    this.status.textContent = count ? `${count}${this.more.hidden ? "" : "+"} found, newest first` : "Nothing found.";
    this.results.replaceChildren(...this.found.map((message) => this.item(message, true)));
  }

  item(message, clickable) {
    const item = document.createElement("li");
    item.className = "result";
    item.dataset.id = String(message.id);
    const meta = document.createElement("span");
    meta.className = "meta";
    const name = document.createElement("span");
    name.className = `name ${colourClass(message.name)}`;
    name.textContent = message.name;
    meta.append(name, " ", timeElement(message.ts));
    const text = document.createElement("span");
    text.className = "text";
    text.append(message.deleted ? "This message was deleted." : marked(message.text, this.words));
    if (clickable) {
      const open = document.createElement("button");
      open.type = "button";
      open.append(meta, " ", text);
      open.addEventListener("click", () => this.context(message.id));
      item.append(open);
    } else {
      if (!this.words.size) text.replaceChildren(textWithLinks(message.text));
      item.append(meta, " ", text);
    }
    return item;
  }

  // The message in the conversation, if it is shown there; else the messages around it, here.
  async context(id) {
    if (this.reveal(id)) {
      const item = document.querySelector(`#log .message[data-id="${id}"]`);
      item?.classList.add("found");
      setTimeout(() => item?.classList.remove("found"), FOUND_FOR);
      return;
    }
    const answer = await this.ask(`messages?around=${id}`);
    if (!answer) return;
    this.status.textContent = "In context:";
    this.more.hidden = true;
    this.back.hidden = false;
    this.results.replaceChildren(
      ...answer.messages.map((message) => {
        const item = this.item(message, false);
        if (message.id === id) item.classList.add("found");
        return item;
      }),
    );
    this.results.querySelector(".found")?.scrollIntoView({ block: "center" });
  }

  async ask(path) {
    let response;
    try {
      response = await fetch(`/api/rooms/${encodeURIComponent(this.room())}/${path}`, {
        headers: { accept: "application/json" },
      });
    } catch {
      this.status.textContent = "The server cannot be reached: try again.";
      return null;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      this.status.textContent = body.detail ?? "The search failed: try again.";
      return null;
    }
    return body;
  }
}
