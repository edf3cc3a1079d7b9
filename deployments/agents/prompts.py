"""Stored prompts (/v1/prompts, SQL): versioned templates with `{{name}}` variables, owned like every resource.

Each update adds a version (it must name the latest one, so two concurrent updates cannot both win); one version
is the default, which a read without a version answers. A Responses create names a prompt in `prompt`: its text
with the variables filled in becomes the instructions (`render`).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import sqlalchemy as sa

from deployments.agents.tables import prompt_versions, prompts
from serve.errors import InvalidRequestError, NotFoundError
from serve.protocol.prompts import PLACEHOLDER, CreatePromptRequest, UpdatePromptRequest
from serve.protocol.responses import PromptReference
from serve.storage import Database
from serve.storage.sql import owned, owner


def new_prompt_id() -> str:
    return f"pmpt_{secrets.token_hex(24)}"  # 48 hex digits, as Llama Stack's ids


def declared_variables(text: str, variables: list[str] | None) -> list[str]:
    """The prompt's variables: `variables` as given (each placeholder in `text` must be one), else its placeholders
    in order of first use."""
    used = list(dict.fromkeys(PLACEHOLDER.findall(text)))
    if variables is None:
        return used
    undeclared = [v for v in used if v not in variables]
    if undeclared:
        raise InvalidRequestError(f"the prompt uses variables it does not declare: {undeclared}", param="variables")
    return list(dict.fromkeys(variables))


def fill_variables(text: str, values: dict[str, Any], prompt_id: str) -> str:
    """`text` with each {{name}} replaced by its value (a string or an input_text part); a placeholder without a
    value is a 400."""
    missing = sorted({v for v in PLACEHOLDER.findall(text) if v not in values})
    if missing:
        raise InvalidRequestError(f"prompt '{prompt_id}' needs values for the variables {missing}",
                                  param="prompt.variables", code="missing_prompt_variables")

    def value(name: str) -> str:
        v = values[name]
        if isinstance(v, str):
            return v
        if v.get("type") == "input_text" and isinstance(v.get("text"), str):
            return v["text"]
        raise InvalidRequestError(f"prompt variable '{name}' must be a string or an input_text part (this server "
                                  "fills in text only)", param=f"prompt.variables.{name}")

    return PLACEHOLDER.sub(lambda m: value(m.group(1)), text)


class PromptStore:
    def __init__(self, db: Database):
        self.db = db

    def _row(self, prompt_id: str) -> Any:
        return self.db.row_or_raise(prompts, prompt_id, NotFoundError(
            f"Prompt '{prompt_id}' not found.", param="prompt_id", code="prompt_not_found"))

    def _version(self, row: Any, version: int) -> dict[str, Any]:
        with self.db.connect() as c:
            v = c.execute(sa.select(prompt_versions).where(prompt_versions.c.prompt_id == row.id,
                                                           prompt_versions.c.version == version)).first()
        if v is None:
            raise NotFoundError(f"Prompt '{row.id}' has no version {version}.", param="version",
                                code="prompt_version_not_found")
        return _prompt_object(v, row.default_version)

    def create(self, req: CreatePromptRequest) -> dict[str, Any]:
        pid, now = new_prompt_id(), int(time.time())
        variables = declared_variables(req.prompt, req.variables)
        with self.db.begin() as c:
            c.execute(prompts.insert().values(id=pid, owner=owner(), created_at=now, latest_version=1,
                                              default_version=1))
            c.execute(prompt_versions.insert().values(prompt_id=pid, version=1, prompt=req.prompt,
                                                      variables=variables, created_at=now))
        return self.get(pid)

    def get(self, prompt_id: str, version: int | None = None) -> dict[str, Any]:
        row = self._row(prompt_id)
        return self._version(row, row.default_version if version is None else version)

    def list(self) -> dict[str, Any]:
        """Every prompt the caller owns, at its default version, oldest first."""
        q = (sa.select(prompt_versions, prompts.c.default_version)
             .join(prompts, sa.and_(prompts.c.id == prompt_versions.c.prompt_id,
                                    prompts.c.default_version == prompt_versions.c.version))
             .where(owned(prompts)).order_by(prompts.c.seq))
        with self.db.connect() as c:
            return {"data": [_prompt_object(r, r.default_version) for r in c.execute(q)]}

    def versions(self, prompt_id: str) -> dict[str, Any]:
        row = self._row(prompt_id)
        with self.db.connect() as c:
            rows = c.execute(sa.select(prompt_versions).where(prompt_versions.c.prompt_id == prompt_id)
                             .order_by(prompt_versions.c.version))
            return {"data": [_prompt_object(r, row.default_version) for r in rows]}

    def update(self, prompt_id: str, req: UpdatePromptRequest) -> dict[str, Any]:
        """A new version after `req.version`, which must be the latest."""
        self._row(prompt_id)
        variables = declared_variables(req.prompt, req.variables)
        new = req.version + 1
        values: dict[str, Any] = {"latest_version": new, **({"default_version": new} if req.set_as_default else {})}
        with self.db.begin() as c:
            if c.execute(prompts.update().where(prompts.c.id == prompt_id, prompts.c.latest_version == req.version)
                         .values(**values)).rowcount != 1:
                latest = c.execute(sa.select(prompts.c.latest_version).where(prompts.c.id == prompt_id)).scalar()
                raise InvalidRequestError(f"version {req.version} is not the latest version of prompt '{prompt_id}' "
                                          f"({latest}): update the latest", param="version",
                                          code="prompt_version_conflict")
            c.execute(prompt_versions.insert().values(prompt_id=prompt_id, version=new, prompt=req.prompt,
                                                      variables=variables, created_at=int(time.time())))
        return self.get(prompt_id, new)

    def set_default(self, prompt_id: str, version: int) -> dict[str, Any]:
        self._version(self._row(prompt_id), version)  # 404 for a version it does not have
        with self.db.begin() as c:
            c.execute(prompts.update().where(prompts.c.id == prompt_id).values(default_version=version))
        return self.get(prompt_id)

    def delete(self, prompt_id: str) -> None:
        self._row(prompt_id)
        with self.db.begin() as c:
            c.execute(prompt_versions.delete().where(prompt_versions.c.prompt_id == prompt_id))
            c.execute(prompts.delete().where(prompts.c.id == prompt_id))

    def render(self, ref: PromptReference) -> tuple[str, dict[str, Any]]:
        """(the prompt's text with `ref.variables` filled in, the `prompt` a Response echoes). Variables the
        prompt does not declare are a 400, as is a placeholder left without a value."""
        p = self.get(ref.id, ref.version)
        values = ref.variables or {}
        unknown = sorted(set(values) - set(p["variables"]))
        if unknown:
            raise InvalidRequestError(f"prompt '{ref.id}' has no variables {unknown} (it declares "
                                      f"{p['variables']})", param="prompt.variables")
        text = fill_variables(p["prompt"], values, ref.id)
        return text, {"id": ref.id, "version": str(p["version"]), "variables": values}


def _prompt_object(v: Any, default_version: int) -> dict[str, Any]:
    return {"prompt": v.prompt, "version": v.version, "prompt_id": v.prompt_id, "variables": list(v.variables),
            "is_default": v.version == default_version}
