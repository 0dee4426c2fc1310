"""Build aiogram's pydantic models on first use instead of at import.

``aiogram.types`` ends with a loop that calls ``model_rebuild()`` on each of its ~440 models,
which builds every validator and serializer although the models say ``defer_build=True``. That
loop costs ~110 MB of RSS and ~4 s of CPU at start-up; a bot touches a few dozen of the models.

``defer_model_builds()`` wraps ``BaseModel.model_rebuild`` so that, for aiogram's models only:
the import-time loop's calls keep the namespace they pass (the ``TYPE_CHECKING`` names the
annotations refer to) and build nothing; every later rebuild of an aiogram model — the one
pydantic runs on a model's first validation included — gets that namespace. Other models are
untouched. It must run before ``aiogram`` is imported (``bot/__init__.py`` calls it; it imports
only pydantic, so ``python -m bot migrate`` still never loads aiogram). ``warm_up()`` builds
the models every update needs, so the first update does not pay for them.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from pydantic import BaseModel

_original_rebuild = BaseModel.__dict__["model_rebuild"].__func__
_aiogram_namespace: dict[str, Any] | None = None


def _rebuild(cls: type[BaseModel], *args: Any, **kwargs: Any) -> bool | None:
    global _aiogram_namespace
    module = cls.__module__
    if module.startswith("aiogram."):
        given = kwargs.get("_types_namespace")
        if given is not None and module.startswith("aiogram.types."):
            _aiogram_namespace = given  # aiogram's import-time loop: build on first use instead
            return None
        if given is None and _aiogram_namespace is not None:
            kwargs["_types_namespace"] = _aiogram_namespace
    return _original_rebuild(cls, *args, **kwargs)


def defer_model_builds() -> bool:
    """Install the wrapper; False when aiogram is imported already (its models are built
    then, which is correct, only heavier)."""
    if "aiogram.types" in sys.modules:
        return False
    BaseModel.model_rebuild = classmethod(_rebuild)  # type: ignore[method-assign,assignment]
    return True


def warm_up() -> None:
    """Build what every update and every answer needs: Update (with the Message, CallbackQuery
    and User it holds) and Message on its own (what send and edit calls return)."""
    from aiogram.types import Message, Update

    for model in (Update, Message):
        model.model_rebuild()
    keep_response_models()


_kept_responses: dict[Any, type[BaseModel]] = {}


def keep_response_models() -> None:
    """Keep each `Response[T]` aiogram builds (one per Bot API return type) for good.

    aiogram reads every answer with `Response[method.__returning__]`; pydantic caches such a
    parametrized model in a WeakValueDictionary, so whenever the garbage collector reclaims
    it the next answer builds the class again (validator and all: ~10 ms of CPU, about once
    every 20 updates under load — the biggest cost of a busy bot after the handlers). A few
    dozen small classes at most, held strongly here."""
    from aiogram.methods.base import Response

    if "__class_getitem__" in Response.__dict__:
        return  # done already
    build = BaseModel.__dict__["__class_getitem__"].__func__

    def class_getitem(cls: type[BaseModel], params: Any) -> Any:
        if cls is not Response:
            return build(cls, params)
        try:
            return _kept_responses[params]
        except (KeyError, TypeError):  # TypeError: unhashable params, built every time
            model = build(cls, params)
            with contextlib.suppress(TypeError):
                _kept_responses[params] = model
            return model

    Response.__class_getitem__ = classmethod(class_getitem)  # type: ignore[assignment,method-assign]
