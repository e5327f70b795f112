"""The paper's three claims, judged from measured comparisons.

1. TL beats SSL on colour images; 2. SSL beats TL on grey-scale images; 3. double fine-tuning
helps TL more than SSL on small data. A claim *holds* when the claimed winner is significantly
better (after Holm's correction) on most datasets of the kind and never significantly worse; it
is *contradicted* when the other arm is significantly better on most; otherwise the data *do
not decide* it. The rules are stated in the book next to the verdicts.
"""
from __future__ import annotations

import pandas as pd

from medimg.compare.comparison import Comparison
from medimg.evaluate.tables import interval_cell, markdown_table
from medimg.finetune.arms import paper_pair, random_init_arm

TL, SSL = paper_pair()  # the two arms the paper's claims set against each other (medimg.finetune.arms)
SCRATCH = random_init_arm()
PAPER_ARMS = (TL, SSL, SCRATCH)
ANSWER_COUNTS = ("winner", "loser", "wins", "losses", "datasets")  # a claim's counts, beside its verdict and evidence


def _pair_rows(tests: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rows comparing ``a`` with ``b``, oriented so that a positive difference favours ``a``."""
    direct = tests[(tests["arm_a"] == a) & (tests["arm_b"] == b)].copy()
    flipped = tests[(tests["arm_a"] == b) & (tests["arm_b"] == a)].copy()
    for col in ("mean_difference", "low", "high"):
        flipped[col] = -flipped[col]
    flipped[["low", "high"]] = flipped[["high", "low"]].to_numpy()
    flipped[["arm_a", "arm_b"]] = a, b
    return pd.concat([direct, flipped], ignore_index=True)


def _verdict(rows: pd.DataFrame, winner: str, loser: str) -> dict:
    """The verdict on "``winner`` beats ``loser``" from the pair's rows: ``verdict``, ``evidence`` in words, and the
    counts it rests on (``wins``/``losses``: datasets where the claimed winner/loser is significantly better)."""
    n = len(rows)
    if n == 0:
        return dict(verdict="not tested", evidence="no dataset of this kind has both arms", wins=0, losses=0)
    wins = int((rows["significant"] & (rows["winner"] == winner)).sum())
    losses = int((rows["significant"] & (rows["winner"] == loser)).sum())
    evidence = (f"{winner} significantly better on {wins} of {n} datasets, {loser} significantly better on "
                f"{losses}, no significant difference on {n - wins - losses}")
    verdict = ("holds" if wins > n / 2 and losses == 0 else "contradicted" if losses > n / 2 else "not decided")
    return dict(verdict=verdict, evidence=evidence, wins=wins, losses=losses)


def modality_claims(main: Comparison, tl: str = TL, ssl: str = SSL) -> list[dict]:
    """Claims 1 and 2 from a comparison by method over grey and colour datasets."""
    out = []
    for claim, modality, winner, loser in (("TL wins on colour images", "colour", tl, ssl),
                                           ("SSL wins on grey-scale images", "grey", ssl, tl)):
        rows = _pair_rows(main.tests, tl, ssl) if not main.tests.empty else pd.DataFrame()
        rows = rows[rows["modality"] == modality] if not rows.empty else rows
        out.append(dict(claim=claim, **_verdict(rows, winner, loser), datasets=int(len(rows)), winner=winner,
                        loser=loser))
    return out


def double_claim(double: Comparison | None, tl: str = TL, ssl: str = SSL) -> dict:
    """Claim 3 from a comparison by ``method,double``: the gain of double over single fine-tuning, per arm."""
    claim = "Double fine-tuning helps TL most on small data"
    if double is None or double.tests.empty:
        return dict(claim=claim, verdict="not tested", evidence="no double fine-tuning runs", datasets=0)
    gains = {}
    for method in (tl, ssl):
        rows = _pair_rows(double.tests, f"{method}/double", f"{method}/single")
        gains[method] = rows.set_index("dataset")
    datasets = sorted(set(gains[tl].index) & set(gains[ssl].index))
    parts, tl_more, tl_sig = [], 0, 0
    for d in datasets:
        g_tl, g_ssl = gains[tl].loc[d], gains[ssl].loc[d]
        tl_more += g_tl["mean_difference"] > g_ssl["mean_difference"]
        tl_sig += bool(g_tl["significant"]) and g_tl["mean_difference"] > 0
        parts.append(f"{d}: TL {g_tl['mean_difference']:+.3f} (Holm p {g_tl['p_holm']:.2g}), "
                     f"SSL {g_ssl['mean_difference']:+.3f} (Holm p {g_ssl['p_holm']:.2g})")
    n = len(datasets)
    if n == 0:
        verdict = "not tested"
    elif tl_more == n and tl_sig > n / 2:
        verdict = "holds"
    elif tl_more == 0 or tl_sig == 0 and all(gains[tl].loc[d]["mean_difference"] <= 0 for d in datasets):
        verdict = "contradicted"
    else:
        verdict = "not decided"
    evidence = "accuracy gain of double over single fine-tuning: " + "; ".join(parts)
    return dict(claim=claim, verdict=verdict, evidence=evidence, datasets=n)


def _above_chance(main: Comparison) -> dict[str, dict[str, bool]]:
    """Per dataset, ``{arm: judged by its interval}`` for the arms above chance (see :func:`above_chance`)."""
    classes = {r.dataset: len(r.classes) for r in main.runs}
    out = {}
    for dataset, group in main.summary.groupby("dataset", sort=False):
        has_interval = group["balanced_accuracy_low"].notna()
        bound = group["balanced_accuracy_low"].where(has_interval, group["balanced_accuracy"])
        out[dataset] = {a: bool(i) for a, b, i in zip(group["arm"], bound, has_interval) if b > 1 / classes[dataset]}
    return out


def above_chance(main: Comparison) -> dict[str, list[str]]:
    """Per dataset, the arms whose balanced accuracy interval over seeds lies wholly above chance.

    Chance is one over the number of classes: what a model that ignores the image scores (always the
    majority class, say). Where no arm clears it, the arms learned nothing the class prior does not
    give, and their comparison says nothing about the claims. An arm with a single seed has no
    interval (see :func:`medimg.evaluate.stats.seed_summary`): its seed's balanced accuracy must
    then exceed chance, weaker evidence that :func:`grey_colour_table` marks.
    """
    return {dataset: list(arms) for dataset, arms in _above_chance(main).items()}


def grey_colour_table(main: Comparison, arms=PAPER_ARMS) -> pd.DataFrame:
    """One row per dataset: each arm's mean accuracy with its interval, the majority class's accuracy,
    the arms above chance, TL minus SSL with its Holm p, the ``verdict`` in words and the significant winner
    (``wins``: the arm, or "none").

    An interval that cannot be computed (one seed) shows as "—" followed by the reason in parentheses,
    and so does an arm above chance by its single seed's value rather than an interval.
    """
    s = main.summary
    learned = _above_chance(main)
    rows = []
    for dataset, group in s.groupby("dataset", sort=False):
        by_arm = group.set_index("arm")
        row = dict(dataset=dataset, modality=group["modality"].iloc[0], seeds=int(group["seeds"].max()))
        for arm in arms:
            if arm in by_arm.index:
                r = by_arm.loc[arm]
                row[arm] = interval_cell(r["accuracy"], r["accuracy_low"], r["accuracy_high"],
                                         reason=r.get("accuracy_note"))
        above = [a if by_interval else f"{a} (1 seed: no interval)" for a, by_interval in learned[dataset].items()]
        row.update(majority=round(float(group["majority_accuracy"].iloc[0]), 3),
                   above_chance=", ".join(above) or "none")
        pair = _pair_rows(main.tests, TL, SSL) if not main.tests.empty else pd.DataFrame()
        pair = pair[pair["dataset"] == dataset] if not pair.empty else pair
        if len(pair):
            t = pair.iloc[0]
            row.update(tl_minus_ssl=round(float(t["mean_difference"]), 3), p_holm=float(t["p_holm"]),
                       verdict=(f"{t['winner']} (significant)" if t["significant"] else "no significant difference"),
                       wins=t["winner"] if t["significant"] else "none")
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values("modality", key=lambda m: m.map({"grey": 0, "colour": 1}), kind="stable")


def grey_colour_markdown(main: Comparison, arms=PAPER_ARMS) -> str:
    """:func:`grey_colour_table` narrowed to fit a book page: the modality joins the dataset's name, the seeds
    and the arms above chance are left to the prose, and the verdict becomes the significant winner ("none")."""
    table = grey_colour_table(main, arms)
    table = table.assign(dataset=table["dataset"] + " (" + table["modality"] + ")").drop(
        columns=["modality", "seeds", "above_chance", "verdict"], errors="ignore")
    table = table.rename(columns={"tl_minus_ssl": "tl − ssl", "p_holm": "Holm p"})
    return markdown_table(table.to_dict("records"), floatfmt=".3g")


CURVES_CHAPTER = "How much pretraining does self-supervision need?"  # the chapter with the learning curves


def modality_claims_checked(main: Comparison, checks: dict, budgets: dict | None = None, tl: str = TL,
                            ssl: str = SSL) -> list[dict]:
    """Claims 1 and 2 as :func:`modality_claims` decides them (holds / contradicted / not decided), their
    evidence followed by the self-supervised pretraining budget of the modality's SSL arms (``budgets``:
    ``{dataset: phrase}``, e.g. :func:`medimg.study.pretraining.budget_phrase`) and, where a target's checkpoint does
    not beat random features on validation (``checks``: ``{dataset: SSLCheck}``, :mod:`medimg.ssl.check`), that
    the SSL arm there measures pretraining at that budget, with the chapter whose curves show it."""
    modality = {r.dataset: r.modality for r in main.runs}
    out = []
    for claim in modality_claims(main, tl, ssl):
        kind = "colour" if "colour" in claim["claim"] else "grey"
        datasets = [d for d in checks if modality.get(d) == kind]
        failed = [d for d in datasets if not checks[d].beats_random]
        extra = []
        stated = list(dict.fromkeys((budgets or {})[d] for d in datasets if d in (budgets or {})))
        if stated:
            extra.append("self-supervised pretraining: " + "; ".join(stated))
        if failed:
            names = failed[0] if len(failed) == 1 else ", ".join(failed[:-1]) + " and " + failed[-1]
            lost = (f"the checkpoint {names}'s SSL arm starts from does not beat random features on validation at "
                    f"that budget, so that arm measures" if len(failed) == 1 else
                    f"the checkpoints the SSL arms of {names} start from do not beat random features on validation "
                    f"at that budget, so those arms measure")
            extra.append(f"{lost} self-supervision at that budget (the learning curves: *{CURVES_CHAPTER}*)")
        if extra:
            claim = dict(claim, evidence=claim["evidence"] + "; " + "; ".join(extra))
        out.append(claim)
    return out


def claims_by_protocol(comparisons: dict[str, Comparison], checks: dict | None = None,
                       budgets: dict | None = None) -> pd.DataFrame:
    """Claims 1 and 2 under each protocol (``{protocol: Comparison by method}``, e.g. fine-tuning, linear
    probe, kNN): one row per claim and protocol with ``verdict`` and ``evidence``, and the counts behind them
    (:data:`ANSWER_COUNTS`; :func:`medimg.compare.answer.answer_lines` reads them). Holm's correction runs
    within each protocol's comparison."""
    rows = []
    for protocol, c in comparisons.items():
        claims = modality_claims_checked(c, checks, budgets) if checks else modality_claims(c)
        rows += [dict(claim=k["claim"], protocol=protocol, verdict=k["verdict"], evidence=k["evidence"],
                      **{key: k[key] for key in ANSWER_COUNTS}) for k in claims]
    return pd.DataFrame(rows)


def agreement_markdown(table: pd.DataFrame) -> str:
    """One line per claim: whether the protocols agree, and each one's verdict where they do not."""
    lines = []
    for claim, group in table.groupby("claim", sort=False):
        verdicts = dict(zip(group["protocol"], group["verdict"]))
        if len(set(verdicts.values())) == 1:
            lines.append(f"- *{claim}*: every protocol agrees, **{next(iter(verdicts.values()))}**.")
        else:
            lines.append(f"- *{claim}*: the protocols disagree: " + "; ".join(
                f"{p} **{v}**" for p, v in verdicts.items()) + ".")
    return "\n".join(lines)


def architecture_table(c: Comparison, pairs=((TL, SSL), (TL, SCRATCH), (SSL, SCRATCH))) -> pd.DataFrame:
    """Whether a verdict depends on the network, from a comparison by ``method,arch`` (the architecture ablation).

    One row per dataset and pair of methods: for each network, the first method minus the second (mean accuracy
    over seeds), the significant winner after Holm's correction or "none", and whether the networks agree.
    Empty when the comparison has no such pairs.
    """
    archs = list(dict.fromkeys(arm.split("/", 1)[1] for arm in c.arms if "/" in arm))
    rows = []
    for dataset in dict.fromkeys(c.per_run["dataset"]):
        for a, b in pairs:
            row, winners = dict(dataset=dataset, pair=f"{a} vs {b}"), []
            for arch in archs:
                found = _pair_rows(c.tests, f"{a}/{arch}", f"{b}/{arch}") if not c.tests.empty else pd.DataFrame()
                found = found[found["dataset"] == dataset] if not found.empty else found
                if found.empty:
                    break
                r = found.iloc[0]
                winner = (a if r["mean_difference"] > 0 else b) if r["significant"] else "none"
                winners.append(winner)
                row[arch] = f"{r['mean_difference']:+.3f} ({winner})"
            else:
                rows.append(dict(row, same=len(set(winners)) == 1))
    return pd.DataFrame(rows)


def architecture_markdown(c: Comparison) -> str:
    """:func:`architecture_table` as Markdown with a sentence saying where the networks disagree."""
    table = architecture_table(c)
    if table.empty:
        return "_No architecture ablation was run: nothing says whether the verdicts depend on the network._"
    differ = [f"{r.dataset} ({r.pair})" for r in table.itertuples() if not r.same]
    sentence = ("On every dataset and pair the two networks give the same significant winner (or none)."
                if not differ else f"The networks give different verdicts on {', '.join(differ)}.")
    return markdown_table(table.to_dict("records")) + "\n\n" + sentence + "\n"


def paper_numbers_table(main: Comparison, arms=PAPER_ARMS) -> pd.DataFrame:
    """The book's numbers beside the paper's, for every dataset of ``main`` that is (a subset of) one of the
    paper's datasets with reported results (the registry's ``paper_dataset`` and ``paper_reported``): one row per
    such dataset with the paper's TL and SSL test accuracy, this book's mean test accuracy and 95% interval over
    seeds for ``arms``, and ``differs``: what is not the same (network, resolution, images, splits, seeds).
    Empty when no dataset of ``main`` has reported numbers."""
    from medimg.data.registry import REGISTRY

    rows = []
    for dataset, group in main.summary.groupby("dataset", sort=False):
        spec = REGISTRY.get(dataset)
        paper = spec.extra.get("paper_dataset") if spec else None
        reported = REGISTRY[paper].extra.get("paper_reported") if paper else None
        if not reported:
            continue
        row = dict(dataset=dataset, paper_dataset=paper)
        row.update({f"paper {m.upper()}": reported.get(m) for m in (TL, SSL)})
        by_arm = group.set_index("arm")
        for arm in arms:
            if arm in by_arm.index:
                r = by_arm.loc[arm]
                row[f"here {arm.upper()}"] = interval_cell(r["accuracy"], r["accuracy_low"], r["accuracy_high"],
                                                           reason=r.get("accuracy_note"))
        runs = [r for r in main.runs if r.dataset == dataset]
        nets = sorted({f"{r.config['arch']} at {r.config['size']} px" for r in runs})
        seeds = len({r.seed for r in runs})
        row["differs"] = (f"here {' and '.join(nets)} for every arm, {seeds} seed{'s' * (seeds != 1)}, splits grouped "
                          f"for near-duplicate images, {spec.description}; the paper: Xception (TL, 299 px) and "
                          f"ResNet-50 (SSL, 224 px), one run")
        rows.append(row)
    return pd.DataFrame(rows)


def paper_numbers_markdown(main: Comparison) -> str:
    """:func:`paper_numbers_table` for the book, or a sentence where no dataset has the paper's numbers."""
    table = paper_numbers_table(main)
    if table.empty:
        return "_None of this book's datasets is one with test accuracy reported in the paper._"
    return markdown_table(table.to_dict("records"), floatfmt=".3f")
