"""Automation: retraining economics, scheduler and jobs, triggers, retraining, gates, promotion.

Public names live in the submodules (``keel.automation.economics``,
``keel.automation.decay``, ``keel.automation.rotting``), so importing the
package does not import scipy.
"""
