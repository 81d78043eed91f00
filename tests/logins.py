"""What a text shows of a broker's login, for the checks that no password is shown."""

from __future__ import annotations

from urllib.parse import quote


def without_user(text: str, user: str) -> str:
    """``text`` without the user name where a URL shows it (``user:***@``, ``user@``): a check
    for the password then holds for a broker whose password is its user name too (``admin:admin``,
    as a broker given with ``PROTON_EASY_TEST_URL`` may have).

    >>> without_user("amqp://admin:***@127.0.0.1:5672", "admin")
    'amqp://:***@127.0.0.1:5672'
    """
    for shown in {user, quote(user, safe="")}:
        text = text.replace(f"{shown}:", ":").replace(f"{shown}@", "@")
    return text
