"""The export task id under its own name in both hooks' methods, and its old name for one release.

Up to 0.1 the hooks' methods called HubSpot's export task id ``task_id``, which in Airflow names
the task that runs the code: the methods take ``export_task_id`` now, and ``task_id=`` still works,
with a deprecation warning, until the release named below.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from airflow.exceptions import AirflowProviderDeprecationWarning

REMOVED_IN = "0.3"

F = TypeVar("F", bound=Callable[..., Any])


def _renamed(method: str, kwargs: dict[str, Any], args: tuple[Any, ...]) -> None:
    """Move ``task_id=`` to ``export_task_id=`` in place, warning once per call."""
    if "task_id" not in kwargs:
        return
    if args or "export_task_id" in kwargs:
        raise TypeError(
            f"{method}() got the export task id twice (task_id= is the old name of export_task_id): "
            "pass export_task_id only."
        )
    warnings.warn(
        f"{method}(task_id=...) is deprecated: pass export_task_id=... (HubSpot's export task id; "
        f"task_id is Airflow's name for a task). task_id= will be removed in "
        f"airflow-provider-hubexport {REMOVED_IN}.",
        AirflowProviderDeprecationWarning,
        stacklevel=3,
    )
    kwargs["export_task_id"] = kwargs.pop("task_id")


def accepts_old_task_id(func: F) -> F:
    """Let a hook method whose first parameter is ``export_task_id`` also be called with
    ``task_id=``, as before 0.2; the signature shown (``inspect.signature``) is the new one, and a
    coroutine function stays one."""
    method = func.__qualname__
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            _renamed(method, kwargs, args)
            return await func(self, *args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        _renamed(method, kwargs, args)
        return func(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
