"""Config values as plain data: resolved, flattened to dotted keys, and with secrets redacted
(what is written beside a model, logged to MLflow or printed)."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The fully resolved config as plain Python data."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


SECRET_KEY = re.compile(r"(^|_)(TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]*(:[^/@\s]*)?@", re.IGNORECASE)
REDACTED = "***"


def redacted(data: Any, key: str = "") -> Any:
    """`data` as it may be written or logged: values of keys like `*_TOKEN`, `*_KEY`, `*_SECRET`,
    `*_PASSWORD` and the credentials in URLs (`http://user:pass@host`) replaced by ***."""
    if isinstance(data, dict):
        return {k: redacted(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [redacted(v, key) for v in data]
    if data is not None and SECRET_KEY.search(key):
        return REDACTED
    if isinstance(data, str):
        return URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", data)
    return data


def redacted_override(override: str) -> str:
    """A command-line override `key=value` as it may be logged (see `redacted`)."""
    key, sep, value = override.partition("=")
    return f"{key}{sep}{redacted(value, key.rsplit('.', 1)[-1])}" if sep else override


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML, secrets redacted: what is written beside a model and logged."""
    return OmegaConf.to_yaml(OmegaConf.create(redacted(to_container(cfg))))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: {"train": {"seed": 1}} -> {"train.seed": 1}."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat
