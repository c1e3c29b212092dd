"""The load-test instrument of the permit verification service (see README.md in this folder).

``python -m loadtests run --target URL --info INFO.json --duration SECONDS --out DIR``
makes the data, runs an open-model step load per scenario with a Locust master and
workers (``generator.py``), samples the CPU and memory of every process and Redis's
INFO meanwhile (``monitor.py``), finds each scenario's knee, sizes the nodes for a
national peak (``capacity.py``) and writes ``report.json``, ``report.html`` and PNG
plots (``report.py``).
"""
