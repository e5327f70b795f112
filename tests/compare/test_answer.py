"""The answer's three lines say each claim's verdict under every protocol with the counts and budget behind it."""
from types import SimpleNamespace

from medimg.compare.answer import answer_lines
from medimg.compare.claims import claims_by_protocol, double_claim

from tests.compare.test_claims import comparison, pair_row


def protocol_comparisons():
    runs = [SimpleNamespace(dataset=d, modality=m) for d, m in (("c1", "colour"), ("c2", "colour"), ("g1", "grey"),
                                                                ("g2", "grey"), ("g3", "grey"))]
    fine = comparison([pair_row("c1", "colour", "tl", "ssl", 0.10, True), pair_row("c2", "colour", "tl", "ssl", 0.08, True),
                       pair_row("g1", "grey", "tl", "ssl", 0.10, True), pair_row("g2", "grey", "ssl", "tl", -0.05, True),
                       pair_row("g3", "grey", "tl", "ssl", 0.01, False)])
    # under the linear probe SSL wins one grey target and TL only one colour target
    probe = comparison([pair_row("c1", "colour", "tl", "ssl", 0.10, True), pair_row("c2", "colour", "tl", "ssl", 0.01, False),
                        pair_row("g1", "grey", "ssl", "tl", 0.04, True), pair_row("g2", "grey", "tl", "ssl", 0.01, False),
                        pair_row("g3", "grey", "tl", "ssl", 0.00, False)])
    for c in (fine, probe):
        c.runs = runs
    return claims_by_protocol({"fine-tuning": fine, "linear probe": probe})


def test_each_claim_line_gives_its_verdicts_counts_and_budget():
    table = protocol_comparisons()
    double = double_claim(None)
    colour, grey, third = answer_lines(table, double, {"grey": "SimCLR, 2.05M views at 64 px (4.10 CPU core-hours)"})
    # claim 1: holds under fine-tuning (2 of 2), not decided under the probe (1 of 2): each protocol named
    assert colour == ("*TL wins on colour images* — fine-tuning **holds** (significantly better: TL on 2/2 datasets, "
                      "SSL on 0/2); linear probe **not decided** (TL 1/2, SSL 0/2).")
    # claim 2: the winner it claims is SSL; TL's significant wins are its losses. The grey budget is attached
    assert grey == ("*SSL wins on grey-scale images* — fine-tuning **contradicted** (significantly better: SSL on 0/3 "
                    "datasets, TL on 2/3); linear probe **not decided** (SSL 1/3, TL 0/3). SSL: SimCLR, 2.05M views at "
                    "64 px (4.10 CPU core-hours).")
    assert third == "*Double fine-tuning helps TL most on small data*: **not tested**."


def test_a_missing_modality_drops_its_line():
    table = protocol_comparisons()
    grey_only = table[table["claim"] != "TL wins on colour images"]
    lines = answer_lines(grey_only, dict(claim="Double fine-tuning helps TL most on small data", verdict="holds",
                                         datasets=1))
    assert len(lines) == 2 and lines[0].startswith("*SSL wins on grey-scale images*")
    assert lines[1] == "*Double fine-tuning helps TL most on small data*: **holds** (1 dataset, fine-tuning only)."
