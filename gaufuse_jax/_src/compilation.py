"""Counting XLA compilations: how many programs a run compiles and the seconds spent on them."""

from __future__ import annotations

import jax

_TOTAL = {"programs": 0, "seconds": 0.0}


def _listen(event: str, duration: float, **_) -> None:
  if event.endswith("backend_compile_duration"):
    _TOTAL["programs"] += 1
    _TOTAL["seconds"] += duration


jax.monitoring.register_event_duration_secs_listener(_listen)


class CompilationCounter:
  """XLA backend compilations in this process since the counter was made (or last ``take``).

  Counts every compiled program, including the small ones of eager jax.numpy calls.
  """

  def __init__(self):
    self._start = dict(_TOTAL)

  def peek(self) -> tuple[int, float]:
    """``(programs, seconds)`` since the start, without resetting."""
    return (_TOTAL["programs"] - self._start["programs"],
            _TOTAL["seconds"] - self._start["seconds"])

  def take(self) -> tuple[int, float]:
    """``(programs, seconds)`` since the start; then starts again from now."""
    out = self.peek()
    self._start = dict(_TOTAL)
    return out
