"""Numbers from predictions: metrics (:mod:`.metrics`), statistics across seeds and arms — intervals, paired tests,
McNemar, Holm (:mod:`.stats`) — and the tables that show them (:mod:`.tables`).

Arrays in, numbers out: tested without any model, and used by every stage that finishes a run (fine-tuning and
probe runs record their metrics). May import only the shared modules. Reading run directories and comparing arms
is :mod:`medimg.compare`.
"""
