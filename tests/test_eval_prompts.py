import pytest

from cliplab.eval.prompts import PhraseAwareTemplate, check_template, reads_as_phrase
from cliplab.eval.zero_shot import class_prompts


@pytest.mark.parametrize("label, phrase", [("a red circle", True), ("An old car", True), ("the sky at night", True),
                                           ("sky at night.", True), ("ankle boot", False), ("t-shirt", False),
                                           ("a", False), ("anchor chain", False), ("theatre", False)])
def test_reads_as_phrase(label, phrase):
    assert reads_as_phrase(label) is phrase


def test_phrase_aware_templates_give_the_prompts():
    templates = [PhraseAwareTemplate("a photo of the {}."), PhraseAwareTemplate("an image of the {}.")]
    assert class_prompts(["a red circle", "ankle boot"], templates) == [
        "a red circle", "a red circle", "a photo of the ankle boot.", "an image of the ankle boot."]


def test_check_template_names_where_it_came_from():
    assert check_template("a {}", "--template") == "a {}"
    with pytest.raises(ValueError, match="templates.txt line 3: 'a {} {}' must contain"):
        check_template("a {} {}", "--templates: templates.txt line 3")
