"""A template's parameters are checked by the record they feed (the command line's fields and types), and a wrong one
shows in the chapter as one line naming it, not as a traceback."""
from __future__ import annotations

import pytest

from medimg.errors import MedimgError
from medimg.study.parameters import TEMPLATE_PARAMETERS, checked_parameter, template_parameters


@pytest.mark.parametrize("value, expected", [("false", False), ("No", False), ("0", False), (0, False), ("true", True),
                                             ("yes", True), ("1", True), (True, True), (None, None)])
def test_a_boolean_parameter_reads_the_words_people_type(value, expected):
    assert checked_parameter("finetune", "augment", value) is expected


@pytest.mark.parametrize("name, value, words", [
    ("size", "abc", ["size='abc'", "whole number", "-p size 64"]),
    ("size", 32.5, ["size=32.5", "whole number"]),
    ("augment", "maybe", ["augment='maybe'", "true or false"]),
    ("balance", "sideways", ["balance='sideways'", "none, down, over"]),
    ("arch", "resnet9000", ["arch='resnet9000'", "mobilenetv2_100"]),
    ("method", "transfer", ["method='transfer'", "tl, ssl, tl+ssl, scratch"]),
    ("seeds", "zero", ["seeds", "whole numbers"]),
])
def test_a_wrong_parameter_is_refused_naming_it_and_the_values_it_takes(name, value, words):
    with pytest.raises(MedimgError) as err:
        checked_parameter("finetune", name, value)
    for word in words:
        assert word in str(err.value)


def test_numbers_arrive_as_the_fields_types_and_every_template_is_checked():
    assert checked_parameter("finetune", "size", "48") == 48 and checked_parameter("finetune", "epochs", 3.0) == 3
    assert checked_parameter("dataset_card", "size", "32") == 32
    assert checked_parameter("finetune", "seeds", "0,2") == (0, 2)
    assert checked_parameter("comparison", "datasets", ["busi_256"]) == ["busi_256"]
    for template, names in TEMPLATE_PARAMETERS.items():
        namespace = dict.fromkeys(names) | {"profile": "smoke"}
        assert template_parameters(template, namespace)["profile"] == "smoke"


def test_in_a_kernel_a_refused_parameter_is_one_line(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("from medimg.study.parameters import template_parameters\n"
                       "template_parameters('finetune', dict(profile='smoke', dataset='x', method='tl', seeds=None, "
                       "size='abc', epochs=None, arch=None, tl_weights=None, augment=None, balance=None, "
                       "intermediate=None, intermediate_epochs=None, intermediate_max_train_images=None))")
        out = capsys.readouterr()
        shown = out.out + out.err
        assert "medimg: error: parameter size='abc' is not a whole number" in shown
        assert "Traceback" not in shown and "File " not in shown
    finally:
        InteractiveShell.clear_instance()
