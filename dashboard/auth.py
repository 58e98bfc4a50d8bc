"""Who may open the dashboard: optional password login, or Streamlit's OIDC login.

Login is on when either is configured:

* **Passwords**: ``unmask dashboard --set-password USER`` stores a salted scrypt hash in
  the workspace (``dashboard-passwords.json``, readable by its owner only); the same
  hashes may live in Streamlit's ``secrets.toml`` instead::

      [unmask.passwords]
      ana = "scrypt$16384$8$1$<salt hex>$<hash hex>"

* **OIDC** (Google, Microsoft, Okta, ...): an ``[auth]`` section in ``secrets.toml``
  (``redirect_uri``, ``cookie_secret``, ``client_id``, ``client_secret``,
  ``server_metadata_url``); the dashboard then uses ``st.login`` / ``st.user``.

When login is on, the reviewer recorded in the review store is the logged-in user.
Plain functions here; the Streamlit gate is in ``ui.py``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from core.errors import DataValidationError
from core.io import atomic_path
from core.names import check_name

PASSWORD_FILE = "dashboard-passwords.json"
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}      # 16 MiB and ~50 ms per check: slows guessing
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt hex>$<hash hex>`` of ``password`` with a random 16-byte salt."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (False when malformed)."""
    try:
        kind, n, r, p, salt, digest = str(stored).split("$")
        if kind != "scrypt":
            return False
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n),
                                   r=int(r), p=int(p), dklen=len(bytes.fromhex(digest)),
                                   maxmem=256 * 2 ** 20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, bytes.fromhex(digest))


def password_file(workspace) -> Path:
    return Path(workspace) / PASSWORD_FILE


def _stored_users(workspace) -> dict[str, str]:
    path = password_file(workspace)
    if not path.is_file():
        return {}
    try:
        users = json.loads(path.read_text()).get("users", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise DataValidationError(
            f"{path}: not a password file ({err}); remove it and set the passwords again "
            "with unmask dashboard --set-password") from None
    return {str(user): str(digest) for user, digest in users.items()}


def password_users(workspace, secrets_: Mapping) -> dict[str, str]:
    """User -> password hash, from the workspace's file and ``[unmask.passwords]`` in
    Streamlit's secrets (the secrets win for a user in both)."""
    from_secrets = (secrets_.get("unmask") or {}).get("passwords") or {}
    return {**_stored_users(workspace), **{str(u): str(h) for u, h in from_secrets.items()}}


def set_password(workspace, user: str, password: str) -> Path:
    """Store ``user``'s salted password hash in the workspace; returns the file."""
    check_name(user, "--set-password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DataValidationError(f"the password must have at least {MIN_PASSWORD_LENGTH} "
                                  "characters")
    users = {**_stored_users(workspace), user: hash_password(password)}
    path = password_file(workspace)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"version": 1, "users": users}, indent=2) + "\n")
        os.chmod(tmp, 0o600)            # hashes only, but nobody else needs to read them
    return path


def check_login(workspace, secrets_: Mapping, user: str, password: str) -> bool:
    """Whether ``user`` / ``password`` is a known pair. Unknown users cost one hash too,
    so timing does not tell which user names exist."""
    stored = password_users(workspace, secrets_).get(user)
    if stored is None:
        verify_password(password, hash_password("unknown user"))
        return False
    return verify_password(password, stored)


def login_mode(workspace, secrets_: Mapping) -> str | None:
    """``"oidc"`` (an ``[auth]`` section in the secrets), ``"password"`` (at least one
    password set) or None (no login: anyone who reaches the port may review)."""
    if "auth" in secrets_:
        return "oidc"
    return "password" if password_users(workspace, secrets_) else None


def streamlit_secrets() -> dict:
    """Streamlit's secrets (``~/.streamlit/secrets.toml``, ``./.streamlit/secrets.toml``,
    or what ``secrets.files`` names) as a dict; empty when there are none."""
    from streamlit.runtime.secrets import secrets_singleton

    return secrets_singleton.to_dict() if secrets_singleton.load_if_toml_exists() else {}
