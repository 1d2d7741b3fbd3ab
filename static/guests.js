// A guest's name is marked wherever it appears, in words and not by colour alone: anyone
// may take a guest's name once it is free, while an account's name is always its owner's.
export function guestTag() {
  const tag = document.createElement("span");
  tag.className = "guest";
  tag.textContent = "guest";
  tag.title = "A guest: not signed in to an account";
  return tag;
}
