// What a form says back to its user: a word about the form as a whole ("error": it did not
// work, or "note"), and a reason beside the field at fault, which is marked invalid and
// focused, its text selected, to be typed again. Sign-on and the password dialog share it.

export function say(message, text, kind = "note") {
  message.textContent = text;
  message.dataset.kind = kind;
}

export function markField(field, error, reason) {
  error.textContent = reason;
  field.setAttribute("aria-invalid", "true");
  field.focus();
  field.select();
}

export function clearFields(fields, errors) {
  for (const [which, field] of Object.entries(fields)) {
    errors[which].textContent = "";
    field.removeAttribute("aria-invalid");
  }
}
