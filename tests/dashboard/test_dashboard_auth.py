"""Dashboard login state: salted password hashes and which login is on."""
import json

import pytest

from core.errors import DataValidationError
from dashboard.auth import (check_login, hash_password, login_mode, password_users, set_password,
                            verify_password)


def test_hashes_are_salted_and_verified():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("correct horse", first) and not verify_password("correct horsE", first)
    assert not verify_password("x", "not a hash") and not verify_password("x", "scrypt$1$2$3$zz$zz")


def test_login_mode_and_users_from_the_workspace_and_the_secrets(tmp_path):
    assert login_mode(tmp_path, {}) is None
    set_password(tmp_path, "ana", "correct horse")
    assert json.loads((tmp_path / "dashboard-passwords.json").read_text())["users"].keys() == {"ana"}
    secrets = {"unmask": {"passwords": {"bo": hash_password("battery staple")}}}
    assert login_mode(tmp_path, secrets) == "password"
    assert set(password_users(tmp_path, secrets)) == {"ana", "bo"}
    assert check_login(tmp_path, secrets, "bo", "battery staple")
    assert not check_login(tmp_path, secrets, "bo", "correct horse")
    assert not check_login(tmp_path, secrets, "nobody", "correct horse")
    assert login_mode(tmp_path, {"auth": {"client_id": "x"}}) == "oidc"


def test_set_password_refuses_bad_names_and_short_passwords(tmp_path):
    with pytest.raises(DataValidationError, match="is not a safe name"):
        set_password(tmp_path, "![x](http://evil)", "correct horse")
    with pytest.raises(DataValidationError, match="at least 8 characters"):
        set_password(tmp_path, "ana", "short")
    assert not (tmp_path / "dashboard-passwords.json").exists()
