"""Turning pydantic's validation errors into one located, readable ConfigError."""

from __future__ import annotations

import difflib
import typing
from typing import Iterable, Optional

from pydantic import BaseModel, ValidationError

from trainnet.errors import ConfigError
from trainnet.netcfg.source import SourceMap


def _message(err: dict, known_keys: Iterable[str]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        known = sorted(known_keys)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            return f"unknown key (did you mean '{close[0]}'?)"
        return "unknown key" + (f"; known keys: {', '.join(known)}" if known else "")
    if kind == "missing":
        return "required"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, got {value!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {value!r}"
    kinds = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
             "string_type": "a string", "list_type": "a list", "model_type": "a mapping",
             "dict_type": "a mapping", "int_from_float": "an integer"}
    if kind in ("int_type", "int_from_float") and isinstance(value, float):
        whole = value.is_integer()  # 1e9: a float in YAML and prototxt alike
        return (f"expects an integer, got float {value!r}" + (
            f" (Caffe refuses a float for an integer field too: write {int(value)})" if whole
            else ""))
    if kind in kinds:
        return f"expects {kinds[kind]}, got {type(value).__name__} {value!r}"
    if kind == "too_short":
        return "must not be empty"
    msg = err["msg"]
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def first_message(exc: ValidationError) -> tuple[str, str]:
    """The first error of ``exc`` as (its top-level field, a readable message): for values that
    come from somewhere without lines (command-line options)."""
    err = exc.errors()[0]
    field = next((str(p) for p in err["loc"] if isinstance(p, str)), "")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return field, _message(err, ()) + more


def _model_in(annotation) -> Optional[type[BaseModel]]:
    """The config model inside a field's annotation (``X``, ``list[X]``, ``Optional[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _nested_keys(model: Optional[type[BaseModel]], loc: tuple) -> list[str]:
    """The fields of the model that holds the last key of ``loc`` (an unknown key)."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return []
        model = _model_in(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


def _source_path(loc: tuple, src: SourceMap, prefix: tuple) -> tuple:
    """``loc`` as a path into the YAML document: a list index pydantic reports for a repeated
    field given as one value (``kernel_size: 0``, ``include: {phase: TRAIN}``) is dropped."""
    path: tuple = ()
    for part in loc:
        if isinstance(part, int) and prefix + path + (part,) not in src.lines:
            continue
        path += (part,)
    return path


def _field_name(path: tuple) -> str:
    """``kernel_size``, ``kernel_size[1]``, ``include[0].phase``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def located(exc: ValidationError, src: SourceMap, prefix: tuple = (), *, layer: Optional[str] = None,
            layer_type: Optional[str] = None, known_keys: Iterable[str] = (),
            model: Optional[type[BaseModel]] = None) -> ConfigError:
    """The first (topmost in the file) error of ``exc`` as a ConfigError with file and line.

    ``model`` is the validated model; it names the fields of a nested model for an unknown key.
    """
    errors = exc.errors()

    def where(err):
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith(("function-", "list[", "literal["))))
        path = _source_path(loc, src, prefix)
        return loc, path, src.line(prefix + path) or 0

    errors.sort(key=lambda e: where(e)[2])
    err = errors[0]
    loc, path, line = where(err)
    keys = known_keys
    if err["type"] == "extra_forbidden" and len(loc) > 1:
        keys = _nested_keys(model, loc)  # a nested model: pydantic lists no alternatives
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(_message(err, keys) + more, file=src.file, line=line or None,
                       layer=layer, layer_type=layer_type, field=_field_name(path) or None)
