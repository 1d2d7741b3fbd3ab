// "@name" in a message: highlighted for everyone, and especially for the person named.
// A name may hold spaces ("@ann lee"), so a mention is "@" and a name the page knows (the
// user's own, who is online, who wrote), compared as the server compares names, near
// enough; or else "@" and a word.

const WORD = /^[\p{L}\p{N}_.-]+/u;
const NAME_CHAR = /[\p{L}\p{N}_]/u;

function fold(text) {
  return text.normalize("NFKC").toLowerCase();
}

export class Mentions {
  constructor() {
    this.me = "";
    this.known = new Set();
  }

  setMe(me) {
    this.me = me;
    if (me) this.known.add(me);
  }

  know(name) {
    this.known.add(name);
  }

  // The mentions in `text`: [{start, end, name}], `name` folded.
  find(text) {
    const names = [...this.known].sort((a, b) => b.length - a.length);
    const found = [];
    let at = text.indexOf("@");
    while (at >= 0) {
      const after = text.slice(at + 1);
      let length = 0;
      for (const name of names) {
        const next = after.charAt(name.length);
        if (fold(after.slice(0, name.length)) === fold(name) && !NAME_CHAR.test(next)) {
          length = name.length;
          break;
        }
      }
      if (!length) length = WORD.exec(after)?.[0].length ?? 0;
      if (length && (at === 0 || !NAME_CHAR.test(text.charAt(at - 1)))) {
        found.push({ start: at, end: at + 1 + length, name: fold(after.slice(0, length)) });
        at = text.indexOf("@", at + 1 + length);
      } else {
        at = text.indexOf("@", at + 1);
      }
    }
    return found;
  }

  mentionsMe(text) {
    const me = fold(this.me);
    return Boolean(me) && this.find(text).some((mention) => mention.name === me);
  }

  // Wraps each mention in the text of `element` (links left alone) in <span class="mention">,
  // "mention me" for the user's own name.
  highlight(element) {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT, {
      acceptNode: (node) => (node.parentElement.closest("a") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
    });
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    const me = fold(this.me);
    for (const node of nodes) {
      const text = node.data;
      const mentions = this.find(text);
      if (!mentions.length) continue;
      const parts = [];
      let done = 0;
      for (const { start, end, name } of mentions) {
        const span = document.createElement("span");
        span.className = name === me ? "mention me" : "mention";
        span.textContent = text.slice(start, end);
        parts.push(text.slice(done, start), span);
        done = end;
      }
      parts.push(text.slice(done));
      node.replaceWith(...parts);
    }
  }
}
