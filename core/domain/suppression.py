"""The suppression list's keyed hash: how leadbridge recognises a forgotten person without
keeping their address.

HMAC-SHA256 with a secret only the configuration holds (`privacy.suppression_key`): a plain
hash of an email address is reversed by hashing a list of addresses; a keyed one is not,
without the key. The address is normalised as leads are (trimmed, lower case), so the person
is recognised however the marketplace spells it next time.
"""

from __future__ import annotations

import hashlib
import hmac


def person_hash(key: str, email: str) -> str:
    """The hex HMAC of the normalised address under `key`."""
    message = email.strip().lower().encode("utf-8")
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()
