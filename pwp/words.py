"""Counts in words, for pages and for messages the API shares with them."""


def plural(count: int, word: str) -> str:
    """'1 day', '3 days'."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def human_size(size: int) -> str:
    """'812 bytes', '1.4 KB', '3.0 MB'."""
    if size < 1024:
        return plural(size, "byte")
    for unit in ("KB", "MB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GB"
