"""Counts in words, for pages and for messages the API shares with them."""
import math


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 day', '3 days'; many: the plural when it is not word + "s" ('2 pushes')."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def human_size(size: int, limit: bool = False) -> str:
    """'812 bytes', '1.4 KB', '3.0 MB'. A limit rounds down: '1.1 MB' must not promise
    the ~3 KB that 1 150 000 bytes lack of 1.1 MiB."""
    if size < 1024:
        return plural(size, "byte")
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    if limit:
        size = math.floor(size * 10) / 10
    return f"{size:.1f} {unit}"
