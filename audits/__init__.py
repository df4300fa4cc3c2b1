"""recaudit audits: article-level findings from simulated runs, and their reports.

Public objects
--------------
run_audit, AuditResult, Finding, article_verdicts
    :mod:`audits.audit`.
load_catalogue
    :mod:`audits.catalogue` (the article -> metric -> threshold -> source data file).
write_report
    :mod:`audits.report` (self-contained HTML with figures).
"""

from audits.audit import AuditResult, Finding, article_verdicts, run_audit
from audits.catalogue import load_catalogue

__all__ = ["AuditResult", "Finding", "article_verdicts", "load_catalogue", "run_audit", "write_report"]


def write_report(result, path, manifest=None):
    """Render ``result`` to a self-contained HTML file (see :func:`audits.report.render_html`)."""
    from audits.report import render_html

    html = render_html(result, manifest=manifest)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html)
