"""Counts in words, for pages and for messages the API shares with them."""
import math


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 day', '3 days'; many: the plural when it is not word + "s" ('2 pushes')."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def account_deleted(email: str, count: int) -> str:
    """What deleting an account did, for the command line and the administration page (no
    period: the command adds its database)."""
    return f"Deleted {email} and its {plural(count, 'push', 'pushes')}" if count else f"Deleted {email}; it had no pushes"


def human_size(size: int, limit: bool = False) -> str:
    """'812 bytes', '1.4 KiB', '3.0 MiB' (binary units, as the README's limits). A limit rounds
    down: '1.1 MiB' must not promise the ~3 KiB that 1 150 000 bytes lack of 1.1 MiB."""
    if size < 1024:
        return plural(size, "byte")
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    if limit:
        size = math.floor(size * 10) / 10
    return f"{size:.1f} {unit}"
