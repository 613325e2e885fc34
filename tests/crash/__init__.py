"""The crash matrix (issue 17): kill -9 one part of a running Nudge while journeys flow
through it, restart it, and count what was lost or sent twice.

Every part is a real process on this machine: a private PostgreSQL 15 cluster, the Temporal
dev server (SQLite state on disk), `nudge api` (router off), `nudge router` and
`nudge worker`, with the APNs peer (`tests.peers.apns`) as the provider that counts sends.

    python -m tests.crash --journeys 300 --kills 3 --target all

| module | what it holds |
|---|---|
| `services` | killable, restartable child processes and the supervisor that restarts exits |
| `stack` | the whole product for one target: cluster, Temporal, api, router, worker, keys |
| `load` | the HTTP client that drives users, devices and events, retrying like a product |
| `tally` | waiting until everything settled, and the counts (lost, duplicates, unknown) |
| `matrix` | one target's run (load + kills), all targets, the table |

See `tests/crash/README.md` for what each column means and the numbers seen.
"""
