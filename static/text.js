// User text as DOM nodes: plain text everywhere, http(s) links as <a> elements. Nothing a
// user wrote is ever parsed as HTML.

const LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?'"*_]$/;

// "(see https://example.com/a_(b))." links up to "b)", without the final ")" and ".".
function trimLink(candidate) {
  let link = candidate;
  for (;;) {
    const last = link.at(-1);
    if (TRAILING.test(last)) link = link.slice(0, -1);
    else if (last === ")" && count(link, "(") < count(link, ")")) link = link.slice(0, -1);
    else if (last === "]" && count(link, "[") < count(link, "]")) link = link.slice(0, -1);
    else return link;
  }
}

function count(text, char) {
  return text.split(char).length - 1;
}

function linkTo(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  const anchor = document.createElement("a");
  anchor.href = url.href;
  anchor.textContent = text;
  anchor.rel = "noopener noreferrer";
  anchor.target = "_blank";
  return anchor;
}

export function textWithLinks(text) {
  const fragment = document.createDocumentFragment();
  let done = 0;
  for (const match of text.matchAll(LINK)) {
    const link = trimLink(match[0]);
    const anchor = linkTo(link);
    if (!anchor) continue;
    fragment.append(text.slice(done, match.index), anchor);
    done = match.index + link.length;
  }
  fragment.append(text.slice(done));
  return fragment;
}

const COLOURS = 12;

// A stable colour per name (one of the palette's classes in style.css), the same in every
// browser: FNV-1a over the name as the server compares names, roughly, then mixed
// (MurmurHash3's finaliser) so that short names that differ a little differ in colour.
export function colourClass(name) {
  let hash = 0x811c9dc5;
  for (const char of name.normalize("NFKC").toLowerCase()) {
    hash = Math.imul(hash ^ char.codePointAt(0), 0x01000193);
  }
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return `c${((hash ^ (hash >>> 16)) >>> 0) % COLOURS}`;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dated = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

// <time> in local time: the clock for today, with the date for older days.
export function timeElement(ts) {
  const date = new Date(ts);
  const element = document.createElement("time");
  element.dateTime = date.toISOString();
  element.title = full.format(date);
  const today = date.toDateString() === new Date().toDateString();
  element.textContent = (today ? clock : dated).format(date);
  return element;
}
