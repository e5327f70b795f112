"""What a dataset holds: splits, classes, channels, image sizes and duplicates, as a dict."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from medimg.errors import MedimgError
from medimg.paths import data_dir
from medimg.data.pipeline import PreparedData
from medimg.data.registry import MEDMNIST_SIZES, REGISTRY, DatasetSpec, cite_role
from medimg.data.records import SPLITS
from medimg.data.intensity import IntensityMapping
from medimg.data.medmnist_files import find_medmnist_file
from medimg.data.splits import duplicate_groups, near_duplicate_report


def describe(data: PreparedData) -> dict:
    source, decoded, split = data.source, data.decoded, data.split
    classes = list(source.classes)
    label_of = dict(zip(decoded.ids, decoded.labels.tolist()))
    splits = {}
    for s in SPLITS:
        members = [i for i in decoded.ids if split.assignment[i] == s]
        per_class = Counter(classes[label_of[i]] for i in members)
        splits[s] = dict(n=len(members), per_class={c: per_class.get(c, 0) for c in classes})
    dups = duplicate_groups(source, decoded)
    spec = source.spec
    near = near_duplicate_report(source, decoded, split)
    return dict(
        name=source.name, kind=spec.kind, description=spec.description, root=str(source.root),
        modality=decoded.modality, channels=decoded.channels, classes=classes,
        n_images=len(decoded.ids),
        per_class={c: int((decoded.labels == k).sum()) for k, c in enumerate(classes)},
        split=dict(split.to_dict(), counts=split.counts()), splits=splits,
        image_sizes={f"{w}x{h}": n for (w, h), n in sorted(Counter(decoded.original_sizes).items())},
        stored_modes=dict(sorted(Counter(decoded.modes).items())),
        exif_rotated=decoded.rotated,
        transparency=dict(n=decoded.transparent_count, flattened="laid on black (alpha composited over black)",
                          blank=[decoded.ids[i] for i in decoded.blank]),
        intensity=dict(decoded.intensity, text=IntensityMapping(**decoded.intensity).describe()),
        not_images=dict(n=len(source.not_images), first=list(source.not_images[:10])),
        cached_size=decoded.size, cache=str(decoded.path) if decoded.path else None,
        duplicates=[dict(ids=g, labels=sorted({classes[label_of[i]] for i in g}),
                         splits=sorted({split.assignment[i] for i in g})) for g in dups],
        duplicates_across_splits=sum(len({split.assignment[i] for i in g}) > 1 for g in dups),
        excluded_from_training=sorted(split.excluded),
        near_duplicates=near,
        lineage=[str(x) for x in spec.lineage], citation=spec.citation, licence=spec.licence,
        caveats=list(spec.caveats),
    )


def format_description(d: dict) -> str:
    lines = [f"{d['name']}: {d['description']}",
             f"  {d['n_images']} images, {d['modality']} ({d['channels']} channel{'s' if d['channels'] > 1 else ''}), "
             f"{len(d['classes'])} classes; cached at {d['cached_size']} px",
             f"  split: {d['split']['method']}" + (f" (seed {d['split']['seed']})" if d['split']['seed'] is not None else "")]
    width = max(len("total"), *(len(c) for c in d["classes"]))
    lines.append(f"  {'class':<{width}}  {'train':>6} {'val':>6} {'test':>6} {'all':>6}")
    for c in d["classes"]:
        counts = [d["splits"][s]["per_class"][c] for s in SPLITS]
        lines.append(f"  {c:<{width}}  " + " ".join(f"{n:>6}" for n in counts) + f" {sum(counts):>6}")
    lines.append(f"  {'total':<{width}}  " + " ".join(f"{d['splits'][s]['n']:>6}" for s in SPLITS) + f" {d['n_images']:>6}")
    sizes = ", ".join(f"{k} ({v})" for k, v in d["image_sizes"].items())
    lines.append(f"  displayed sizes: {sizes}; stored modes: {', '.join(f'{k} ({v})' for k, v in d['stored_modes'].items())}")
    if d["exif_rotated"]:
        lines.append(f"  EXIF orientation: {d['exif_rotated']} image(s) stored turned, decoded upright as a viewer "
                     f"shows them")
    lines.append(f"  intensity: {d['intensity']['text']}")
    if d["transparency"]["n"]:
        lines.append(f"  transparency: {d['transparency']['n']} image(s) carried it, {d['transparency']['flattened']}")
    if d["transparency"]["blank"]:
        lines.append(f"  blank (one flat value as decoded): {len(d['transparency']['blank'])} image(s): "
                     f"{', '.join(d['transparency']['blank'][:10])}")
    if d["not_images"]["n"]:
        lines.append(f"  not images (not used): {d['not_images']['n']} file(s): {', '.join(d['not_images']['first'])}")
    lines.append(f"  exact duplicates: {len(d['duplicates'])} group(s), {d['duplicates_across_splits']} across splits")
    lines.append(f"  near-duplicates: {near_duplicate_line(d['near_duplicates'])}")
    if d["excluded_from_training"]:
        lines.append(f"  left out of training and validation as copies of a later split's image: "
                     f"{', '.join(d['excluded_from_training'])}")
    for g in d["duplicates"][:10]:
        lines.append(f"    {' = '.join(g['ids'])}  [{', '.join(g['labels'])}; {', '.join(g['splits'])}]")
    for c in d["caveats"]:
        lines.append(f"  caveat: {c}")
    return "\n".join(lines)


def near_duplicate_line(near: dict) -> str:
    """One sentence on near-duplicates: pairs, groups, threshold, and what straddles splits."""
    text = (f"{near['pairs']} pair(s) within {near['max_distance']} of 256 bits ({near['hash']}) in "
            f"{len(near['groups'])} group(s), the largest of {near['largest_group']}; ")
    if near["grouped"]:
        return text + (f"each group kept in one split ({near['across_splits']} pairs across splits; grouping only "
                       f"exact duplicates would have left {near['across_without_grouping']} across)")
    return text + f"{near['across_splits']} pair(s) straddle the splits (kept as the split defines them)"


def availability(spec: DatasetSpec, base) -> str:
    """Where a registered dataset is found here, or 'missing'."""
    if spec.kind == "synthetic":
        return "generated"
    if spec.extra.get("user"):  # a study file's folder, by its own path
        return "yes" if Path(spec.location).is_dir() else "missing"
    if base is None:
        return "missing"
    if spec.kind == "medmnist":
        found = [f"{size}px" for size in MEDMNIST_SIZES if find_medmnist_file(base, spec.location, size)]
        return ", ".join(found) if found else "missing"
    return "yes" if (base / (spec.location or spec.name)).is_dir() else "missing"


def dataset_table() -> list[dict]:
    try:
        base = data_dir()
    except MedimgError:  # an unset or unreadable data dir just means nothing is available
        base = None
    return [dict(name=s.name, kind=s.kind, modality=s.modality,
                 classes=len(s.classes) if s.classes else None, paper=s.paper,
                 available=availability(s, base), licence=s.licence) for s in REGISTRY.values()]


def card_markdown(d: dict) -> str:
    """A dataset card's facts as Markdown: what it is, where it comes from, its licence and caveats."""
    lines = [f"**{d['name']}**: {d['description']}.", "",
             f"- **Images**: {d['n_images']}, {d['modality']}, {len(d['classes'])} classes "
             f"({', '.join(d['classes'])}); stored sizes {', '.join(list(d['image_sizes'])[:4])}"
             f"{' and more' if len(d['image_sizes']) > 4 else ''}.",
             f"- **Split**: {d['split']['method']}; train / val / test = "
             f"{d['splits']['train']['n']} / {d['splits']['val']['n']} / {d['splits']['test']['n']}.",
             f"- **Exact duplicates**: {len(d['duplicates'])} groups, {d['duplicates_across_splits']} across "
             f"splits; {len(d['excluded_from_training'])} copies of a later split's image left out of training.",
             f"- **Near-duplicates**: {near_duplicate_line(d['near_duplicates'])}.",
             f"- **Intensity**: {d['intensity']['text']}; EXIF orientation applied to {d['exif_rotated']} image(s).",
             f"- **Cite**: {d['citation']}{cite_role(d['name'])}", f"- **Licence**: {d['licence']}"]
    if d["caveats"]:
        lines += ["", "```{admonition} Caveats", ":class: warning"] + [f"- {c}" for c in d["caveats"]] + ["```"]
    return "\n".join(lines)
