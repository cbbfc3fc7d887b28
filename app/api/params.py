"""Parameters of the hot endpoints, declared once: parsed by hand from the request (FastAPI's
per-parameter validation costs more than the rest of the Python side of a request) and
documented in OpenAPI from the same declaration. Errors have the shape of every other 422."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from app.api.errors import invalid

TRUE = {"true", "1", "yes", "on", "t", "y"}
FALSE = {"false", "0", "no", "off", "f", "n"}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path | query
    kind: type  # int | bool | str
    description: str
    default: Any = None
    ge: int | None = None
    le: int | None = None
    max_length: int | None = None

    def schema(self) -> dict:
        s: dict[str, Any] = {"type": {int: "integer", bool: "boolean", str: "string"}[self.kind]}
        if self.default is not None:
            s["default"] = self.default
        if self.ge is not None:
            s["minimum"] = self.ge
        if self.le is not None:
            s["maximum"] = self.le
        if self.kind is str and self.where == "path":
            s["minLength"] = 1
        if self.max_length is not None:
            s["maxLength"] = self.max_length
        return {"name": self.name, "in": self.where, "required": self.where == "path",
                "description": self.description, "schema": s}


def openapi(*params: Param) -> dict:
    return {"parameters": [p.schema() for p in params]}


def parse(request: Request, *params: Param) -> dict[str, Any]:
    values: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    query = request.query_params
    for p in params:
        raw = request.path_params.get(p.name) if p.where == "path" else query.get(p.name)
        field = f"{p.where}.{p.name}"
        if raw is None:
            values[p.name] = p.default
            continue
        if p.kind is int:
            try:
                v = int(raw)
            except ValueError:
                problems.append({"field": field, "reason": "Input should be a valid integer"})
                continue
            if p.ge is not None and v < p.ge:
                problems.append({"field": field, "reason": f"Input should be greater than or equal to {p.ge}"})
            elif p.le is not None and v > p.le:
                problems.append({"field": field, "reason": f"Input should be less than or equal to {p.le}"})
            values[p.name] = v
        elif p.kind is bool:
            low = raw.lower()
            if low in TRUE:
                values[p.name] = True
            elif low in FALSE:
                values[p.name] = False
            else:
                problems.append({"field": field, "reason": "Input should be a valid boolean"})
        else:
            if p.where == "path" and not raw:
                problems.append({"field": field, "reason": "String should have at least 1 character"})
            elif "\x00" in raw:  # PostgreSQL text cannot hold it (it was a 500)
                problems.append({"field": field, "reason": "contains a NUL character (\\u0000), which cannot "
                                                           "be stored"})
            elif p.max_length is not None and len(raw) > p.max_length:
                problems.append({"field": field,
                                 "reason": f"String should have at most {p.max_length} characters"})
            values[p.name] = raw
    if problems:
        raise invalid(problems)
    return values
