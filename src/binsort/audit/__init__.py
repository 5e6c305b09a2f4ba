"""``binsort audit``: find the duplicates, leaks, odd files and likely wrong labels of photo
folders, for a person to review (nothing is changed).

``audit`` (``binsort.audit.core``) returns an ``AuditResult``; ``binsort.audit.outputs`` writes
its findings as CSV, JSON, a contact sheet and an HTML page. See docs/audit.md.
"""

from binsort.audit.core import COLUMNS, ISSUES, NEAR_THRESHOLD, AuditResult, Finding, audit

__all__ = ["COLUMNS", "ISSUES", "NEAR_THRESHOLD", "AuditResult", "Finding", "audit"]
