"""The processing pipeline: received actions -> credited grams and points, exactly once, in bulk.

Read the modules in the order of the flow:

- `process`  — `actions_process`, the orchestration below;
- `evaluate` — residents through bindings and consent, the version in force, data and validity rules;
- `rules`    — the history rules, one function per `validity_rules` key (and double claiming of trips);
- `caps`     — daily caps reserved per action in a short transaction (released again by review);
- `claims`   — the database uniqueness claims that make the history rules hold under concurrency;
- `write`    — grams and points, statuses, history and the ledger credits.
"""

from backend.actions.pipeline.caps import cap_usage_release
from backend.actions.pipeline.claims import claims_release
from backend.actions.pipeline.process import actions_process, batch_actions_process, batches_close
from backend.actions.pipeline.write import has_credit
from backend.core.days import local_day as shanghai_day  # the name callers of the pipeline use

__all__ = [
    "actions_process",
    "batch_actions_process",
    "batches_close",
    "cap_usage_release",
    "claims_release",
    "has_credit",
    "shanghai_day",
]
