"""Value from data, measured: the effect of initiatives (kiban.value.effect), read from the warehouse and kept in
a ledger (kiban.value.measure, kiban.value.ledger). Needs the ``value`` extra (statsmodels, SciPy, pandas)."""
