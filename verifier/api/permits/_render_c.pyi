from collections.abc import Container

FIELD_ORDER: tuple[str, ...]

def field_mask(fields: tuple[str, ...] | list[str]) -> int: ...
def _check_table() -> None: ...  # at import: this twin's field table against FIELD_ORDER
def render_found(
    ids: list[str], values: list[bytes | None], fields: tuple[str, ...], employers: Container[str] | None
) -> tuple[bytes, list[str], list[str]]: ...
