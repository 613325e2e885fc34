"""`python -m bench.compare`: a bare baseline and Nudge, alternately, metric by metric.

Kept empty of imports: the bare worker's sandbox re-imports `bench.compare.bare_journey`,
and with it this package.
"""
