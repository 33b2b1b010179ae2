"""Password policy for local accounts, after NIST SP 800-63B §5.1.1.2 ("memorized secrets").

* at least {MIN_LENGTH} characters (the issue's floor; NIST's is 8), up to {MAX_LENGTH}; every
  printable character and space allowed;
* no composition rules (no "one digit, one symbol"): they make passwords weaker and no
  easier to remember;
* refused: common and breached passwords (the built-in list below plus a site's own list,
  ``DXSAFETY_WORKLIST_PASSWORD_BLOCKLIST``), also once trailing digits and symbols are
  removed (``password1234``); one character repeated or a keyboard/alphabet run
  (``aaaaaaaaaaaa``, ``123456789012``); the user name or the service's name inside it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from plugin.errors import PasswordPolicyError

MIN_LENGTH = 12
MAX_LENGTH = 256
RUNS = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiopasdfghjklzxcvbnm",
        "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p")  # fmt: skip
CONTEXT = ("dxsafety", "worklist")

# A short built-in list of the commonest and breached passwords (and words a hospital's
# users pick); a larger list belongs in the site's blocklist file.
COMMON = frozenset((
    "000000", "00000000", "111111", "11111111", "123123", "12344321", "123456", "1234567",
    "12345678", "123456789", "1234567890", "12345678910", "147258369", "1q2w3e4r", "1q2w3e4r5t",
    "1qaz2wsx", "654321", "666666", "88888888", "987654321", "abc123", "abcd1234", "abcdef",
    "abcdefg", "abcdefgh", "access", "access123", "admin", "admin123", "administrator",
    "allscripts", "apple", "april", "asdfgh", "asdfghjkl", "august", "autumn", "baseball",
    "baseball1", "batman", "buster", "cerner", "changeme", "changeme123", "charlie", "clinic",
    "clinical", "computer", "contrasena", "correcthorse", "correcthorsebatterystaple", "daniel",
    "database", "december", "default", "diagnosis", "doctor", "dragon", "dragon123", "dxsafety",
    "emergency", "epic", "fall2024", "february", "football", "football1", "freedom", "friday",
    "george", "google", "guest", "health", "healthcare", "hello", "hello123", "hockey",
    "hospital", "hospital1", "hospital123", "hunter", "iloveyou", "iloveyou1", "iloveyou123",
    "internet", "january", "jennifer", "jordan", "july", "june", "letmein", "letmein123", "linux",
    "login", "logon", "march", "master", "master123", "may", "medical", "medicine", "meditech",
    "michael", "microsoft", "monday", "monkey", "monkey123", "motdepasse", "mustang", "november",
    "nurse", "october", "oracle", "p4ssword", "p@ssw0rd", "p@ssword", "pa55w0rd", "pa55word",
    "passw0rd", "password", "password!", "password1", "password12", "password123", "password1234",
    "passwordpassword", "passwort", "patient", "patientsafety", "physician", "princess",
    "princess1", "qazwsx", "qazwsxedc", "qwerty", "qwerty123", "qwerty1234", "qwertyqwerty",
    "qwertyuiop", "ranger", "review", "reviewer", "robert", "root", "safety", "salasana",
    "samsung", "secret", "secret123", "senha", "september", "shadow", "shadow123", "soccer",
    "spring", "spring2025", "starwars", "summer", "summer2024", "summer2025", "summer2026",
    "sunshine", "sunshine1", "superman", "surgeon", "temp", "temp123", "test", "test123",
    "testing", "thomas", "toor", "trustno1", "tuesday", "ubuntu", "user", "user123", "wachtwoord",
    "welcome", "welcome1", "welcome123", "whatever", "windows", "winter", "winter2024",
    "winter2025", "worklist", "zaq12wsx", "zxcvbnm",
))  # fmt: skip


@lru_cache(maxsize=4)
def _site_list(path: Path | None) -> frozenset[str]:
    if path is None:
        return frozenset()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PasswordPolicyError(f"cannot read the password blocklist {path}: {exc}") from exc
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))  # fmt: skip


def _is_run(text: str) -> bool:
    """One character repeated, or a stretch of an alphabet/keyboard run (either direction)."""
    if len(set(text)) <= 2:
        return True
    for run in RUNS:
        for seq in (run * 3, run[::-1] * 3):
            if text in seq:
                return True
    return False


def check_password(password: str, *, username: str = "", blocklist: Path | None = None) -> None:
    """Raise :class:`PasswordPolicyError` with the reason when ``password`` is refused."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"the password must have at most {MAX_LENGTH} characters")
    if not password.strip() or "\x00" in password:
        raise PasswordPolicyError("the password must not be only spaces")
    lower = password.lower()
    core = lower.rstrip("0123456789!@#$%^&*()-_=+.?~ ")
    blocked = COMMON | _site_list(blocklist)
    if lower in blocked or core in blocked or lower.strip() in blocked:
        raise PasswordPolicyError("this password is on a list of common or breached passwords")
    if _is_run(lower) or _is_run(core or lower):
        raise PasswordPolicyError("the password must not be a repeated character or a run "
                                  "such as 123456789 or qwerty")  # fmt: skip
    if username and len(username) >= 3 and username.lower() in lower:
        raise PasswordPolicyError("the password must not contain the user name")
    if any(word in lower for word in CONTEXT):
        raise PasswordPolicyError("the password must not contain the service's name")
