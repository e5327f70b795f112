"""What each template takes, stated once: :data:`TEMPLATE_PARAMETERS` names every template's flat parameters,
shared by the templates' parameter cells (a test reads them), the study's plan (:func:`medimg.study.plan.plan`
passes nothing else) and each chapter's "Rerun this chapter" box (:func:`rerun_markdown`).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medimg.study.templates import ARM_PARAMETERS, TEMPLATES  # noqa: F401 (ARM_PARAMETERS: the templates' own)


class _TemplateParameters(Mapping):
    """Template name -> its parameters, in its parameters cell's order: a view of the templates table (a row added
    to it is here at once)."""

    def __getitem__(self, template: str) -> tuple[str, ...]:
        return TEMPLATES[template].parameters

    def __iter__(self):
        return iter(TEMPLATES)

    def __len__(self) -> int:
        return len(TEMPLATES)


# every template's parameters (its row of the templates table); each template also takes chapter_title and
# chapter_path (where the study driver writes it), which are not the chapter's settings
TEMPLATE_PARAMETERS = _TemplateParameters()
CHAPTER_PARAMETERS = ("chapter_title", "chapter_path")


def template_parameters(template: str, namespace: dict) -> dict:
    """Template ``template``'s parameters as they are in ``namespace`` (a kernel's ``globals()``), in its order, each
    checked and coerced by the record it feeds (:func:`checked_parameter`):
    ``profile_arm(**template_parameters("finetune", globals()))``. In a kernel, a :class:`MedimgError` from here on
    shows as one line, not a traceback (:func:`one_line_errors`)."""
    one_line_errors()
    return {name: checked_parameter(template, name, namespace[name]) for name in TEMPLATE_PARAMETERS[template]}


def checked_parameter(template: str, name: str, value):
    """One parameter as papermill hands it over (``-p size 64`` arrives as 64, ``-p augment false`` as the text
    "false"), as the type of the record field it feeds — the same fields and checks as the command line
    (:func:`medimg.record_options.coerce`): :class:`~medimg.data.pipeline.DataConfig` for a dataset card,
    :class:`~medimg.finetune.config.FinetuneConfig` otherwise; ``seeds`` as :func:`medimg.study.arm.parse_seeds` reads
    them; names and lists of names as text. None keeps the profile's value."""
    from medimg.data.pipeline import DataConfig
    from medimg.finetune.config import FinetuneConfig
    from medimg.record_options import coerce
    from medimg.study.arm import parse_seeds

    record = dict(data=DataConfig, finetune=FinetuneConfig)[TEMPLATES[template].record]
    if value is None:
        return None
    if name == "seeds":
        return parse_seeds(value)
    if name in record.__dataclass_fields__ and name != "dataset":
        return coerce(record, name, value)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def one_line_errors() -> None:
    """In an IPython kernel (a chapter run by papermill or Jupyter), show a :class:`MedimgError` as its one line —
    what is wrong and the fix — instead of a traceback; elsewhere nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from medimg.errors import MedimgError

    def show(self, etype, value, tb, tb_offset=None):
        self._showtraceback(etype, value, [f"medimg: error: {value}"])

    shell.set_custom_exc((MedimgError,), show)


def rerun_markdown(template: str, namespace: dict, chapter_path: str | None = None) -> str:
    """A chapter's "Rerun this chapter" commands, as Markdown: papermill with the chapter's own parameters (those of
    :data:`TEMPLATE_PARAMETERS` found in ``namespace``, a kernel's ``globals()``; None ones left to the template),
    and, for a chapter of the book, ``medimg study`` re-executing it."""
    import shlex

    parameters = template_parameters(template, namespace)
    args = []
    for key, value in parameters.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):  # read back by the templates: "0,1" is seeds [0, 1]
            value = ",".join(map(str, value))
        args.append(f"-p {key} {shlex.quote(str(value))}")
    # book/quick/busi_256/tl.ipynb -> busi_256-tl.ipynb, beside the book rather than in it
    out = "-".join(Path(chapter_path).with_suffix("").parts[2:]) + ".ipynb" if chapter_path else f"{template}-out.ipynb"
    # three parameters to a line, so the command fits the page and still pastes as one
    rows = [f"papermill notebooks/{template}.ipynb {out}"] + ["    " + " ".join(args[i:i + 3])
                                                               for i in range(0, len(args), 3)]
    lines = ["```bash", " \\\n".join(rows)]
    if chapter_path and parameters.get("profile"):
        lines.append(f"medimg study --profile {parameters['profile']} --force --only {chapter_path}")
    return "\n".join(lines + ["```"])


