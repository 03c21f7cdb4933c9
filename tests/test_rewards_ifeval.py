"""IFEval checkers: every instruction family, satisfied and violated; NLTK data offline."""
import os
import subprocess
import sys

import pytest

from m2rl.rewards import ifeval

EN = "This is a simple sentence written entirely in English for the test"
CASES = {  # id: (kwargs, satisfied, violated)
    "keywords:existence": ({"keywords": ["river", "stone"]}, "The river hides a stone.", "Only the river."),
    "keywords:frequency": ({"keyword": "tea", "frequency": 3, "relation": "at least"}, "tea, tea and more tea.", "tea once."),
    "keywords:forbidden_words": ({"forbidden_words": ["cat", "dog"]}, "I like birds.", "My dog barks."),
    "keywords:letter_frequency": ({"letter": "z", "let_frequency": 3, "let_relation": "at least"}, "The buzz of a zoo.", "No such letter."),
    "language:response_language": ({"language": "fr"}, "Ceci est une réponse écrite entièrement en français, sans autre langue.", EN + "."),
    "length_constraints:number_sentences": ({"num_sentences": 3, "relation": "less than"}, "Dr. Smith came. He sat down.", "One. Two. Three. Four."),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 2}, "First.\n***\nSecond.", "First.\n***\nSecond.\n***\nThird."),
    "length_constraints:number_words": ({"num_words": 5, "relation": "at least"}, "one two three four five six", "one two"),
    "length_constraints:nth_paragraph_first_word": ({"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"}, "First part.\n\nHowever, the second.", "First part.\n\nBut the second."),
    "detectable_content:number_placeholders": ({"num_placeholders": 2}, "Send it to [name] at [address].", "Send it to [name]."),
    "detectable_content:postscript": ({"postscript_marker": "P.S."}, "Hello there.\n\nP.S. See you soon.", "Hello there."),
    "detectable_format:number_bullet_lists": ({"num_bullets": 2}, "* apples\n* pears", "* apples\n* pears\n* plums"),
    "detectable_format:constrained_response": ({}, "My answer is yes.", "Sure thing."),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2}, "Note *one* and *two*.", "Note *one* only."),
    "detectable_format:multiple_sections": ({"section_spliter": "Section", "num_sections": 2}, "Section 1\nIntro.\nSection 2\nBody.", "Section 1\nIntro only."),
    "detectable_format:json_format": ({}, '{"answer": 42}', "answer: 42"),
    "detectable_format:title": ({}, "<<A Good Title>>\nSome text.", "A Good Title\nSome text."),
    "combination:two_responses": ({}, "First answer.\n******\nSecond answer.", "Only one answer."),
    "combination:repeat_prompt": ({"prompt_to_repeat": "Say hi to me."}, "Say hi to me. Hi!", "Hi! Say hi to me."),
    "startend:end_checker": ({"end_phrase": "Any other questions?"}, "Done here. Any other questions?", "Any other questions? Done here."),
    "change_case:capital_word_frequency": ({"capital_frequency": 2, "capital_relation": "at least"}, "This is VERY VERY good.", "This is good."),
    "change_case:english_capital": ({}, EN.upper() + ".", EN + "."),
    "change_case:english_lowercase": ({}, EN.lower() + ".", EN + "."),
    "punctuation:no_comma": ({}, "No commas in here.", "Well, there is one."),
    "startend:quotation": ({}, '"All of it is quoted."', "Nothing is quoted."),
}


def test_every_instruction_is_covered():
    assert set(CASES) == set(ifeval.registry())
    assert len(CASES) == 25


@pytest.mark.parametrize("iid", sorted(CASES))
def test_instruction_satisfied_and_violated(iid):
    kwargs, good, bad = CASES[iid]
    spec = {"instruction_id_list": [iid], "kwargs": [kwargs], "prompt": "Say hi to me."}
    assert ifeval.verify(good, spec)[0] == 1.0, good
    assert ifeval.verify(bad, spec)[0] == 0.0, bad


def test_reward_needs_all_and_logs_the_fraction():
    spec = {"instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
            "kwargs": [{}, {}], "prompt": ""}
    reward, info = ifeval.verify(EN + ".", spec)
    assert reward == 0.0 and info["followed"] == [True, False] and info["fraction"] == 0.5
    assert ifeval.verify("", spec)[0] == 0.0  # an empty response follows nothing


def test_nltk_data_is_built_offline(tmp_path):
    """A fresh process with an empty cache: no download is tried, sentences are counted."""
    code = ("from m2rl.rewards import ifeval\n"
            "ifeval.registry()\n"
            "from lm_eval.tasks.ifeval import instructions_util as u\n"
            "print('COUNT', u.count_sentences('Dr. Smith came home. He slept. Then he ate.'))\n")
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    env.update(M2RL_CACHE=str(tmp_path), HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "COUNT 3" in out.stdout
    text = out.stdout + out.stderr
    assert "Downloaded" not in text and "Error loading" not in text
    assert (tmp_path / "nltk_data/tokenizers/punkt_tab/english/abbrev_types.txt").exists()
