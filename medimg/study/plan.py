"""The study's plan: study.yml's profile -> the chapters of its book, in reading order, each with the parameters
papermill passes and what they resolve to, and the chapters each one waits for (:func:`dependencies`).

A chapter is a notebook template from ``notebooks/`` executed with explicit parameters (everything that
decides its runs), so a committed chapter can be checked against the study file. Planning imports no
papermill and trains nothing: ``medimg study --plan`` prices it (:mod:`medimg.study.cost`), and
:mod:`medimg.study.schedule` runs it.
"""
from __future__ import annotations

from medimg.errors import MedimgError
from medimg.finetune.arms import arm_kind
from medimg.study.arm import Arm, profile_arm
from medimg.study.chapter import Chapter
from medimg.study.chapter_arms import ABLATION_BY, ablation_arms, double_groups, main_arms
from medimg.study.profiles import available, targets
from medimg.study.templates import ARM_PARAMETERS, TEMPLATES, pool_key


def _dicts(arms: list[Arm]) -> list[dict]:
    return [a.to_dict() for a in arms]


def _variant(p: dict, arm: Arm) -> dict:
    """The fine-tuning settings (and TL weights) in which ``arm`` differs from the profile's plain arm (an
    ablation's setting)."""
    plain = profile_arm(p, arm.dataset, arm.method)
    weights = ({"tl_weights": arm.tl_weights} if arm_kind(arm.method).imagenet and arm.tl_weights != plain.tl_weights
               else {})
    variant = {k: v for k, v in arm.finetune.items() if plain.finetune.get(k) != v} | weights
    unknown = sorted(set(variant) - set(ARM_PARAMETERS))
    if unknown:  # a template could not be given them: the chapter would run another arm than planned
        raise MedimgError(f"the {arm.dataset} {arm.method} arm of profile {p['name']} differs from the plain arm in "
                         f"{', '.join(unknown)}, which the finetune template takes no parameter for: add it to "
                         f"medimg.study.templates.ARM_PARAMETERS and the template")
    return variant


def _finetune_chapter(p: dict, path: str, title: str, arm: Arm) -> Chapter:
    return Chapter(path, "finetune", title, dict(profile=p["name"], dataset=arm.dataset, method=arm.method,
                                                 **_variant(p, arm)), dict(arm=arm.to_dict()))


def plan(p: dict, *, every_dataset: bool = False) -> tuple[list[Chapter], list[str]]:
    """The chapters of profile ``p`` in reading (and execution) order, and the targets skipped as missing
    (``every_dataset``: none skipped, as if every dataset were here: what ``medimg study --plan`` shows)."""
    book, name = f"book/{p['name']}", p["name"]
    skipped = [] if every_dataset else [d for _, d in targets(p) if not available(d)]
    present = [(m, d) for m, d in targets(p) if d not in skipped]
    names = [d for _, d in present]
    ablations = _ablations(p, book, names, every_dataset) if present else []
    # the chapters a template plans by itself (its row's plan): at the start of the book, or before its conclusions
    own = {place: [c for row in TEMPLATES.values() if row.plan and row.place == place for c in row.plan(p, book)]
           for place in ("start", "end")}
    chapters = own["start"] + _pretraining(p, book, main_arms(p, names) + [Arm.from_dict(a) for c in ablations
                                                                          for a in c.resolved["arms"]])
    for modality, dataset in present:
        arms = main_arms(p, [dataset])
        sections = [_finetune_chapter(p, f"{book}/{dataset}/{a.slug}.ipynb", f"{dataset}: {a.method}", a) for a in arms]
        sections.append(Chapter(f"{book}/{dataset}/comparison.ipynb", "comparison", f"{dataset}: comparison",
                                dict(profile=name, datasets=[dataset]),
                                dict(arms=_dicts(arms), by="method", gallery=list(p.get("gallery", [])),
                                     title=f"{dataset}: TL vs SSL vs scratch")))
        chapters.append(Chapter(f"{book}/{dataset}/card.ipynb", "dataset_card", dataset, dict(profile=name, dataset=dataset),
                                dict(dataset=dataset, size=p["finetune"]["size"],
                                     medmnist_size=p["finetune"].get("medmnist_size", 28)),
                                tuple(sections), part=f"{modality.capitalize()} datasets"))
    if not present:  # nothing to study here: the book is the datasets page, saying how to get them
        return chapters, skipped
    chapters += ablations + own["end"]
    main = _dicts(main_arms(p, names))
    doubles = double_groups(p, names, every_dataset=every_dataset)
    chapters.append(Chapter(f"{book}/summary.ipynb", "summary", "Summary: the paper's claims", dict(profile=name),
                            dict(arms=main, double=[_dicts(g) for g in doubles], skipped=skipped),
                            part="Conclusions"))
    chapters.append(Chapter(f"{book}/reproducibility.ipynb", "reproducibility", "Reproducibility", dict(profile=name),
                            dict(arms=main, profile=name), part="Appendix"))
    return chapters, skipped


def _pretraining(p: dict, book: str, arms: list[Arm]) -> list[Chapter]:
    """One notebook per distinct self-supervised checkpoint the arms need, in a part before the runs, each titled
    with its method's own name."""
    pretraining, seen_pools = [], set()
    for arm in arms:
        if arm.uses_ssl and not arm.ssl_checkpoint:  # the stage's checkpoints are the budget chapter's
            key = pool_key(arm)
            if key not in seen_pools:
                seen_pools.add(key)
                # another network than the profile's pretraining one (the architecture ablation) is named in the path
                arch = {"arch": arm.ssl["arch"]} if arm.ssl["arch"] != p["ssl"].get("arch") else {}
                suffix = f"-{arch['arch']}" if arch else ""
                pretraining.append(Chapter(f"{book}/ssl/{arm.slug}-{arm.dataset}{suffix}.ipynb", "ssl_pretraining",
                                           f"{_method_name(arm)} pool for {arm.dataset} "
                                           f"({arm.method}{suffix.replace('-', ', ')})",
                                           dict(profile=p["name"], dataset=arm.dataset, method=arm.method, **arch),
                                           dict(arm=arm.to_dict())))
    if not pretraining:
        return []
    first = pretraining[0]
    names = " and ".join(dict.fromkeys(_method_name(Arm.from_dict(c.resolved["arm"])) for c in pretraining))
    return [Chapter(f"{book}/ssl/index.ipynb", "ssl_pretraining", f"{names} pretraining", first.parameters,
                    first.resolved, tuple(pretraining[1:]), part="Pretraining")]


def _method_name(arm: Arm) -> str:
    """The display name of the self-supervised method ``arm``'s checkpoint is pretrained with (SimCLR, VICReg)."""
    from medimg.ssl.methods import METHODS

    return METHODS[arm.ssl_config([arm.dataset]).method].name


ABLATION_TITLES = {"augmentation": "Ablation: augmentation", "balance": "Ablation: balance",
                   "imagenet_then_simclr": "Ablation: SimCLR after ImageNet (TL+SSL)",
                   "double": "Ablation: double fine-tuning", "architecture": "Ablation: the network"}


def _ablations(p: dict, book: str, names: list[str], every_dataset: bool = False) -> list[Chapter]:
    """One comparison chapter per ablation of the profile on the targets here, with a fine-tuning section for
    each arm no earlier chapter runs."""
    chapters = []
    for key, title in ABLATION_TITLES.items():
        spec = p.get("ablations", {}).get(key)
        if not spec:
            continue
        arms = ablation_arms(p, key, names, every_dataset=every_dataset)
        if not arms:
            continue
        new = [a for a in arms if _variant(p, a) or a.method not in p["methods"]]
        sections = tuple(_finetune_chapter(p, f"{book}/ablations/{key}/{a.dataset}-{a.slug}.ipynb",
                                           f"{a.dataset}: {_label(key, a)}", a) for a in new)
        chapters.append(Chapter(f"{book}/ablations/{key}.ipynb", "comparison", title,
                                dict(profile=p["name"], ablation=key),
                                dict(arms=_dicts(arms), by=ABLATION_BY[key], gallery=[], title=title),
                                sections, part="Ablations"))
    return chapters


def _label(key: str, arm: Arm) -> str:
    if key == "double":
        return f"{arm.method} after {arm.finetune['intermediate']}"
    if key == "architecture":
        return f"{arm.method} on {arm.finetune['arch']}"
    return arm.method if key == "imagenet_then_simclr" else f"{arm.method} with {key}"


def profile_datasets(p: dict) -> list[str]:
    """Every dataset a profile reads: targets, SimCLR candidates and intermediates, in that order."""
    names = [d for m in ("grey", "colour") for d in p["targets"].get(m, [])]
    names += [d for m in ("grey", "colour") for d in p.get("ssl_candidates", {}).get(m, [])]
    names += [s["intermediate"] for s in p.get("ablations", {}).get("double", [])]
    return list(dict.fromkeys(names))


def flatten(chapters: list[Chapter]) -> list[Chapter]:
    return [c for chapter in chapters for c in (chapter, *chapter.sections)]


def dependencies(chapters: list[Chapter]) -> dict[str, tuple[str, ...]]:
    """Every chapter's path -> the chapters it must wait for: what ``--jobs`` schedules by.

    A chapter starts as soon as what it reads is finished, not when a whole stage is (the waves of
    earlier versions left slots idle). A SimCLR chapter and a dataset card wait for nothing; the workshop for
    its dataset's card, where the book has one (it prepares the same data); a fine-tuning
    chapter waits for its dataset's card (which prepares the data) and, for an SSL arm, the chapter that
    pretrains its checkpoint; a dataset's comparison waits for its card and its arms; an ablation waits for
    its own new arms and for the comparison of every dataset whose arms it reads (that chapter extracts
    their probe features); the summary waits for every other chapter, and the reproducibility appendix
    for the summary too. So no two chapters running at once write the same run, checkpoint or feature file.
    """
    everything = flatten(chapters)
    parents = {s.path: chapter for chapter in chapters for s in chapter.sections}
    provided = {key: c.path for c in everything for key in TEMPLATES[c.template].provides(c, parents.get(c.path))}
    deps: dict[str, tuple[str, ...]] = {}
    for c in everything:
        row = TEMPLATES[c.template]
        wait = [provided.get(w) if isinstance(w, tuple) else w for w in row.waits_for(c, parents.get(c.path))]
        wait += [x.path for x in everything if TEMPLATES[x.template].closes < row.closes]
        deps[c.path] = tuple(dict.fromkeys(w for w in wait if w and w != c.path))
    return deps
