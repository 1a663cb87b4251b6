"""The one signal that a snapshot has too little history for a model.

Core raises `InsufficientHistory` with a reason a user can read ("6 repeat customers,
50 needed"); defs turns it into a documented state (empty snapshot + metadata + a WARN
check) instead of catching a broad `ValueError`, which would hide real data bugs.
"""


class InsufficientHistory(Exception):
    """Too little history before the snapshot to fit or validate a model."""

    def __init__(self, model: str, reason: str):
        self.model, self.reason = model, reason
        super().__init__(f"{model}: {reason}")
