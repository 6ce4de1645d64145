"""Argos-style anomaly monitoring: LLM-written numpy rules, run sandboxed, on NAB-form
series and on ``speechlm serve``'s own metrics.

Modules: ``rule`` (the rule file format), ``sandbox`` (running a rule safely), ``nab``
(NAB-form data dirs and the time split), ``scoring`` (point-wise, range-based and
point-adjusted F1), ``detectors`` (classic baselines), ``agents`` (detection, repair and
review through the runtime's LLM), ``aggregate`` (rules + a classic detector),
``online`` (scraping ``/metrics`` and raising alerts).
"""
