"""Sweeps: many experiments (levers x uncertainties x replications) on a Dask cluster.

:mod:`sim.sweep.spec` reads sweep files and expands them into experiments;
:mod:`sim.sweep.runner` runs them (resumable, failure-tolerant) and writes the tables.
The analyses (policy comparison, Sobol indices) are in :mod:`audits.sweeps`.
"""
