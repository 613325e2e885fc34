"""The test kit: every harness the suite shares, in one place.

| module | what it holds |
|---|---|
| `stack` | `Stack`: API + router + worker in-process on a real database and Temporal |
| `waiting` | `eventually` and `idle`: waits on conditions, never on the clock |
| `sms` | the SMPP recorder and message builders; a stack on the SMS route, its users |
| `processes` | `nudge worker` as a subprocess (to kill it mid-send) |
| `db` | sessions on a test database URL, for the store's own tests |
| `clock` | virtual start instants for the time-skipping kit (`engine.testing`) |
| `plaintext` | looking for personal data in exported histories |

The journeys made for tests (`TEST_JOURNEYS`, one part of the contract each) are in
`tests/journeys.py`, outside this package: the workflow sandbox imports their module, and
it must not pull in the harnesses. Journeys that run for days use
`engine.testing.JourneyEnv` (the `journey_env` fixture, enabled in `tests/conftest.py`), so
virtual time replaces real sleeps.
"""

from tests.kit.stack import TEST_TEMPLATES, Stack, kit_templates, sent
from tests.kit.waiting import DEADLINE, eventually, idle

__all__ = [
    "DEADLINE",
    "TEST_TEMPLATES",
    "Stack",
    "eventually",
    "idle",
    "kit_templates",
    "sent",
]
