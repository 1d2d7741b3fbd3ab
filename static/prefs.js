// Remembered choices (screen name, room, sounds). localStorage may be missing, full or
// refused (private windows, storage quotas): the page then works the same, forgetting.
const PREFIX = "chatroom.";

export function recall(key, fallback = "") {
  try {
    return localStorage.getItem(PREFIX + key) ?? fallback;
  } catch {
    return fallback;
  }
}

export function remember(key, value) {
  try {
    localStorage.setItem(PREFIX + key, value);
  } catch {
    // Not remembered: nothing the user can act on.
  }
}
