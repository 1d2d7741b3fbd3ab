// The name menu in the header, beside the signed-in name: a button that shows a short list
// of actions under it (a disclosure, so Tab moves through them; Escape, or a click or focus
// anywhere else, puts them away).
export class NameMenu {
  // items: [[button, action], ...]; the menu closes, giving focus back to its button,
  // before the action runs, so that whatever the action opens keeps the focus.
  constructor({ element, button, label, menu, items }) {
    this.element = element;
    this.button = button;
    this.label = label;
    this.menu = menu;
    button.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    for (const [item, action] of items) {
      item.addEventListener("click", () => {
        this.close();
        action();
      });
    }
    element.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) {
        event.preventDefault();
        this.close();
      }
    });
    element.addEventListener("focusout", (event) => {
      if (this.isOpen && !element.contains(event.relatedTarget)) this.close(false);
    });
    document.addEventListener("click", (event) => {
      if (this.isOpen && !element.contains(event.target)) this.close(false);
    });
  }

  get isOpen() {
    return !this.menu.hidden;
  }

  show(name) {
    this.label.textContent = name;
    this.element.hidden = false;
  }

  hide() {
    this.close(false);
    this.element.hidden = true;
  }

  open() {
    this.menu.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.menu.querySelector("button").focus();
  }

  close(refocus = true) {
    this.menu.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus) this.button.focus();
  }
}
