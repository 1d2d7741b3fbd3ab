"""Moving a chat between stores: `chatroom export` and `chatroom import`.

- format.py: the file, one JSON object a line: a header with the format's version, then
  records each with a `kind`, then an `end` record that counts them; encoding and the
  checks of decoding (a bad line names its number).
- export.py: a store's snapshot (`TransferStore.snapshot`) written out, record by record.
- load.py: a file read twice: first checked whole against the target store (nothing is
  written unless every line reads and nothing in it differs from what the target holds),
  then what the target lacks is written (`TransferStore.loading`), in pages.

Both go page by page, so memory does not grow with the size of the chat.
"""
