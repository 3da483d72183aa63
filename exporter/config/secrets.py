"""Codat's webhook signing secret, ``whsec_<base64 key>``: read once, where the config is
checked (``webhooks.secret``), so that a bad secret fails ``--check-config``, and by the
verifier (``exporter.codat.webhooks``) that signs with the key.
"""

from __future__ import annotations

import base64
import binascii

from exporter.config.settings import ConfigError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret


class WebhookSecretError(ConfigError, ValueError):
    """The configured secret is not a ``whsec_<base64>`` secret; the message never shows it."""


def parse_secret(secret: str, path: str = "webhooks.secret") -> bytes:
    """``whsec_<base64 key>`` -> the raw HMAC key; ``path`` starts the error message."""
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise WebhookSecretError(
            f"{path}: must start with {SECRET_PREFIX} (copy the whole signing secret "
            "from Codat's webhook settings)"
        )
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError(
            f"{path}: the part after {SECRET_PREFIX} is not valid base64"
        ) from None
    if not key:
        raise WebhookSecretError(f"{path}: the key after {SECRET_PREFIX} is empty")
    return key
