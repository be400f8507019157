"""Automation: retraining economics (scheduler, triggers, retraining, gates, decisions planned).

Public names live in the submodules (``keel.automation.economics``,
``keel.automation.decay``, ``keel.automation.rotting``), so importing the
package does not import scipy.
"""
