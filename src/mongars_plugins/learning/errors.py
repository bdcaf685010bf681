"""The learning plugin's errors, all :class:`~mongars_core.errors.MongarsError`::

MongarsError
├── InvalidInputError
│   ├── NotEnoughExamplesError   too few curated examples for a run
│   └── RunStateError            approve a rejected run, validate one not active...
├── NotFoundError
│   └── UnknownRunError          no run has this id
└── LearningError
    ├── ConsentRequiredError     the user has not opted in to learning
    ├── RunInProgressError       a run is already going (one at a time)
    ├── RunCancelledError        the run was cancelled; nothing of it is kept
    └── TrainingFailedError      the worker failed (its one-line reason)
"""

from __future__ import annotations

from mongars_core.errors import InvalidInputError, MongarsError, NotFoundError


class LearningError(MongarsError):
    """Self-training could not do what was asked."""


class ConsentRequiredError(LearningError):
    """The user has not opted in: none of their text may enter a dataset."""


class RunInProgressError(LearningError):
    """A run is already going on this node."""


class RunCancelledError(LearningError):
    """The run was cancelled before it finished."""


class TrainingFailedError(LearningError):
    """The training worker failed."""


class NotEnoughExamplesError(InvalidInputError):
    """The user has too few curated examples for a run."""


class RunStateError(InvalidInputError):
    """The run's status does not allow this."""


class UnknownRunError(NotFoundError):
    """No run has this id."""
