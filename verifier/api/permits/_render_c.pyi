from collections.abc import Container

FIELD_ORDER: tuple[str, ...]

def field_mask(fields: tuple[str, ...] | list[str]) -> int: ...
def render_found(
    ids: list[str], values: list[bytes | None], fields: tuple[str, ...], employers: Container[str] | None
) -> tuple[bytes, list[str], list[str]]: ...
