"""Reads what the contracts declare: each RPC's access level and each field's validation rules."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from devpynode.common.v1 import options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message

from pynode.core import text
from pynode.core.errors import FieldViolation, InvalidArgument

Access = int  # an options_pb2.Access value


def is_email(value: str) -> bool:
    """Whether `value` is what the contracts call an e-mail address (one a person can type back)."""
    return text.email_problem(value) is None


@dataclass(frozen=True)
class MethodContract:
    """What the proto declares for one RPC."""

    full_method: str
    access: Access
    mesh_only: bool = False  # only services call it: never routed to browsers
    client_streaming: bool = False
    server_streaming: bool = False


def method_contracts(services: Iterable[_descriptor.ServiceDescriptor]) -> dict[str, MethodContract]:
    """Map `/package.Service/Method` to its declared access (UNSPECIFIED means USER)."""
    table: dict[str, MethodContract] = {}
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            access = options.Extensions[options_pb2.access]
            if access == options_pb2.ACCESS_UNSPECIFIED:
                access = options_pb2.ACCESS_USER
            name = f"/{service.full_name}/{method.name}"
            table[name] = MethodContract(
                name,
                access,
                mesh_only=access == options_pb2.ACCESS_SERVICE or options.Extensions[options_pb2.mesh_only],
                client_streaming=method.client_streaming,
                server_streaming=method.server_streaming,
            )
    return table


@cache
def _rules_for(
    descriptor: _descriptor.Descriptor,
) -> tuple[tuple[_descriptor.FieldDescriptor, options_pb2.FieldRules], ...]:
    found = []
    for fd in descriptor.fields:
        opts = fd.GetOptions()
        if opts.HasExtension(options_pb2.rules):
            found.append((fd, opts.Extensions[options_pb2.rules]))
    return tuple(found)


@cache
def _nested(descriptor: Any) -> tuple[_descriptor.FieldDescriptor, ...]:
    """The fields holding sub-messages (map entries aside)."""
    return tuple(
        fd for fd in descriptor.fields if fd.message_type is not None and not fd.message_type.GetOptions().map_entry
    )


@cache
def _has_rules(descriptor: Any) -> bool:
    """Whether `descriptor` or any message type it holds declares a rule (most requests have none)."""
    seen: set[Any] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if _rules_for(current):
            return True
        pending.extend(fd.message_type for fd in _nested(current))
    return False


def max_bytes(field: _descriptor.FieldDescriptor) -> int:
    """The contract's size limit on a bytes or string field, in bytes (0: none)."""
    opts = field.GetOptions()
    return opts.Extensions[options_pb2.rules].max_bytes if opts.HasExtension(options_pb2.rules) else 0


def validate(message: Message) -> None:
    """Raise InvalidArgument listing every rule `message` (and its sub-messages) breaks."""
    if not _has_rules(message.DESCRIPTOR):  # decided once per type: a cheap call's request is not walked
        return
    violations: list[FieldViolation] = []
    _collect(message, "", violations)
    if violations:
        raise InvalidArgument(
            "request has invalid fields: " + "; ".join(f"{v.field}: {v.description}" for v in violations), violations
        )


def _collect(message: Message, prefix: str, out: list[FieldViolation]) -> None:
    descriptor = message.DESCRIPTOR
    for fd, rules in _rules_for(descriptor):
        _check_field(message, fd, rules, prefix + fd.name, out)
    # Only the sub-message fields are visited (not ListFields): reading a bytes field copies it, and an upload's
    # chunk is a MiB.
    for fd in _nested(descriptor):
        if fd.is_repeated:
            for i, item in enumerate(getattr(message, fd.name)):
                _collect(item, f"{prefix}{fd.name}[{i}].", out)
        elif message.HasField(fd.name):
            _collect(getattr(message, fd.name), f"{prefix}{fd.name}.", out)


def _check_field(
    message: Message,
    fd: _descriptor.FieldDescriptor,
    rules: options_pb2.FieldRules,
    path: str,
    out: list[FieldViolation],
) -> None:
    value = getattr(message, fd.name)
    if fd.is_repeated:
        if rules.required and len(value) == 0:
            out.append(FieldViolation(path, "is required", "REQUIRED"))
        if rules.max_items and len(value) > rules.max_items:
            out.append(FieldViolation(path, f"has {len(value)} items; at most {rules.max_items} allowed", "TOO_MANY"))
        return
    if fd.message_type is not None:
        if rules.required and not message.HasField(fd.name):
            out.append(FieldViolation(path, "is required", "REQUIRED"))
        return
    if isinstance(value, str | bytes):
        _check_text(value, rules, path, out)
    elif isinstance(value, int) and not isinstance(value, bool):
        if rules.HasField("min_value") and value < rules.min_value:
            out.append(FieldViolation(path, f"must be at least {rules.min_value}", "OUT_OF_RANGE"))
        if rules.HasField("max_value") and value > rules.max_value:
            out.append(FieldViolation(path, f"must be at most {rules.max_value}", "OUT_OF_RANGE"))


def _check_text(value: str | bytes, rules: options_pb2.FieldRules, path: str, out: list[FieldViolation]) -> None:
    if not value:
        if rules.required:
            out.append(FieldViolation(path, "is required", "REQUIRED"))
        return
    size = len(value.encode()) if isinstance(value, str) else len(value)
    if rules.max_bytes and size > rules.max_bytes:
        out.append(FieldViolation(path, f"is {size} bytes; at most {rules.max_bytes} allowed", "TOO_LONG"))
    if not isinstance(value, str):
        return
    if rules.required and not value.strip():
        out.append(FieldViolation(path, "must not be blank", "REQUIRED"))
    if rules.min_len and len(value) < rules.min_len:
        out.append(FieldViolation(path, f"must be at least {rules.min_len} characters", "TOO_SHORT"))
    if rules.max_len and len(value) > rules.max_len:
        out.append(FieldViolation(path, f"must be at most {rules.max_len} characters", "TOO_LONG"))
    if "\x00" in value:  # no database stores NUL in text; no client means it
        out.append(FieldViolation(path, "must not contain NUL characters", "CONTROL_CHARACTER"))
    elif rules.plain_text and text.has_hidden(value):
        out.append(FieldViolation(path, "must not contain control or invisible characters", "CONTROL_CHARACTER"))
    elif rules.plain_text and text.is_blank(value):
        out.append(FieldViolation(path, "must show at least one visible character", "REQUIRED"))
    if rules.format == options_pb2.STRING_FORMAT_EMAIL:
        problem = text.email_problem(value)
        if problem == "BAD_FORMAT":
            out.append(FieldViolation(path, "must be an e-mail address like name@example.com", problem))
        elif problem is not None:
            out.append(
                FieldViolation(path, "must not contain invisible, look-alike or mixed-script characters", problem)
            )
    if rules.format == options_pb2.STRING_FORMAT_UUID and not _is_uuid(value):
        out.append(FieldViolation(path, "must be a UUID", "BAD_FORMAT"))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
