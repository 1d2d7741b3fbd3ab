"""Moderation: roles in rooms, what each may do to whom, bans, mutes, doors and the audit log.

- `records`: what is stored (a room's rules, sanctions, audit entries), behind the backend's
  `ModerationStore` (app/backends/base.py);
- `ranks`: who outranks whom, and what each rank may do;
- `commands`: the client events and the `moderation` and `standing` events of the protocol;
- `service`: `Moderation`, the policy, plugged into the hub by `install`.

Nothing here is imported by the package itself, so that the backends can import `records`
without pulling in the hub.
"""
