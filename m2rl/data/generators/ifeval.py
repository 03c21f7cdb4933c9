"""Instruction-following prompts: a writing task plus 1-3 IFEval instructions.

The instruction text is the checker's own description (lm-eval's `build_description`)
for arguments drawn here from the seeded generator, so prompt and reward agree. A
reference response is built to follow the instructions and kept only if the checkers
pass it (SFT uses those tasks; RL can use any).
"""
from __future__ import annotations

import json
import random

from m2rl.rewards import ifeval as checkers

_TOPICS = ["the ocean", "a small town", "winter mornings", "learning to cook", "bicycles",
           "the history of maps", "a rainy afternoon", "city gardens", "old libraries",
           "mountain hiking", "the night sky", "a friendly robot", "public transport",
           "honey bees", "a school trip", "coffee", "chess", "volcanoes", "paper airplanes",
           "the moon", "street music", "a lost key", "lighthouses", "desert plants"]
_TASKS = ["Write a short essay about {t}.", "Describe {t} for a young reader.",
          "Write a blog post about {t}.", "Give advice to someone curious about {t}.",
          "Write a short story about {t}."]
_SENTENCES = ["This topic has many sides worth a look", "People often notice small details first",
              "There is always more to learn here", "Simple habits can make a big difference",
              "Every season brings something new", "Curious minds keep asking good questions",
              "The best stories start with a single step", "Patience often pays off in the end"]
_CANNED = {"fr": "Ceci est une courte réponse écrite entièrement en français pour montrer la langue.",
           "de": "Dies ist eine kurze Antwort, die vollständig auf Deutsch geschrieben wurde.",
           "es": "Esta es una respuesta corta escrita completamente en español para mostrar el idioma.",
           "it": "Questa è una breve risposta scritta interamente in italiano per mostrare la lingua."}
_REL = ("less than", "at least")


def _kwargs(iid: str, r: random.Random, words: list[str]) -> dict:
    n = r.randint(2, 4)
    table = {
        "keywords:existence": {"keywords": r.sample(words, 2)},
        "keywords:frequency": {"keyword": r.choice(words), "frequency": n, "relation": r.choice(_REL)},
        "keywords:forbidden_words": {"forbidden_words": r.sample(words, 2)},
        "keywords:letter_frequency": {"letter": r.choice("qzxj"), "let_frequency": r.randint(3, 6), "let_relation": r.choice(_REL)},
        "language:response_language": {"language": r.choice(sorted(_CANNED))},
        "length_constraints:number_sentences": {"num_sentences": r.randint(2, 6), "relation": r.choice(_REL)},
        "length_constraints:number_paragraphs": {"num_paragraphs": n},
        "length_constraints:number_words": {"num_words": r.choice([30, 50, 80, 120]), "relation": r.choice(_REL)},
        "length_constraints:nth_paragraph_first_word": {"num_paragraphs": n, "nth_paragraph": r.randint(1, n), "first_word": r.choice(words)},
        "detectable_content:number_placeholders": {"num_placeholders": r.randint(1, 3)},
        "detectable_content:postscript": {"postscript_marker": r.choice(["P.S.", "P.P.S"])},
        "detectable_format:number_bullet_lists": {"num_bullets": n},
        "detectable_format:number_highlighted_sections": {"num_highlights": r.randint(1, 3)},
        "detectable_format:multiple_sections": {"section_spliter": r.choice(["Section", "SECTION"]), "num_sections": n},
        "startend:end_checker": {"end_phrase": r.choice(["Any other questions?", "Is there anything else I can help with?"])},
        "change_case:capital_word_frequency": {"capital_frequency": r.randint(2, 5), "capital_relation": r.choice(_REL)},
    }
    return table.get(iid, {})


def _build(task: str, topic: str, ids: list[str], kws: list[dict], r: random.Random) -> str:
    """A response meant to follow the instructions (checked afterwards, not trusted)."""
    spec = dict(zip(ids, kws))
    sents = [s for s in r.sample(_SENTENCES, 5)]
    n_sent = spec.get("length_constraints:number_sentences")
    if n_sent:
        k = n_sent["num_sentences"] - 1 if n_sent["relation"] == "less than" else n_sent["num_sentences"] + 1
        sents = (sents * 3)[:max(1, k)]
    if "keywords:existence" in spec:
        sents[0] += " with " + " and ".join(spec["keywords:existence"]["keywords"])
    kf = spec.get("keywords:frequency")
    if kf and kf["relation"] == "at least":
        sents[0] += " about " + " ".join([kf["keyword"]] * kf["frequency"])
    lf = spec.get("keywords:letter_frequency")
    if lf and lf["let_relation"] == "at least":
        sents[0] += " " + lf["letter"] * lf["let_frequency"]
    cw = spec.get("change_case:capital_word_frequency")
    if cw and cw["capital_relation"] == "at least":
        sents[0] += " " + " ".join(["NOTE"] * cw["capital_frequency"])
    nw = spec.get("length_constraints:number_words")
    if nw and nw["relation"] == "at least":
        while sum(len(s.split()) for s in sents) < nw["num_words"] + 5:
            sents += sents
    elif nw:
        while sum(len(s.split()) for s in sents) >= nw["num_words"] and len(sents) > 1:
            sents.pop()
    if "detectable_content:number_placeholders" in spec:
        sents[0] += " " + " ".join(f"[place{i}]" for i in range(spec["detectable_content:number_placeholders"]["num_placeholders"]))
    if "detectable_format:number_highlighted_sections" in spec:
        sents[0] += " " + " ".join(f"*part {i}*" for i in range(spec["detectable_format:number_highlighted_sections"]["num_highlights"]))
    body = [s + "." for s in sents]
    paras = [" ".join(body)]
    if "length_constraints:number_paragraphs" in spec:
        n = spec["length_constraints:number_paragraphs"]["num_paragraphs"]
        paras = [" ".join(body[i::n]) or body[0] for i in range(n)]
        text = "\n***\n".join(paras)
    elif "length_constraints:nth_paragraph_first_word" in spec:
        p = spec["length_constraints:nth_paragraph_first_word"]
        paras = [" ".join(body[i::p["num_paragraphs"]]) or body[0] for i in range(p["num_paragraphs"])]
        paras[p["nth_paragraph"] - 1] = p["first_word"].capitalize() + " " + paras[p["nth_paragraph"] - 1]
        text = "\n\n".join(paras)
    elif "detectable_format:multiple_sections" in spec:
        s = spec["detectable_format:multiple_sections"]
        text = "\n".join(f"{s['section_spliter']} {i + 1}\n{b}" for i, b in enumerate((body * 5)[:s["num_sections"]]))
    elif "detectable_format:number_bullet_lists" in spec:
        text = "\n".join(f"* {b}" for b in (body * 5)[:spec["detectable_format:number_bullet_lists"]["num_bullets"]])
    else:
        text = paras[0]
    if "language:response_language" in spec:
        text = _CANNED[spec["language:response_language"]["language"]]
    if "detectable_format:title" in spec:
        text = f"<<{topic.title()}>>\n" + text
    if "detectable_format:constrained_response" in spec:
        text = "My answer is yes."
    if "detectable_content:postscript" in spec:
        text += f"\n\n{spec['detectable_content:postscript']['postscript_marker']} Thanks for reading."
    if "combination:repeat_prompt" in spec:
        text = spec["combination:repeat_prompt"]["prompt_to_repeat"] + "\n" + text
    if "combination:two_responses" in spec:
        text = text + "\n******\n" + " ".join(reversed(body))
    if "detectable_format:json_format" in spec:
        text = json.dumps({"topic": topic, "text": text})
    if "punctuation:no_comma" in spec:
        text = text.replace(",", "")
    if "change_case:english_lowercase" in spec:
        text = text.lower()
    if "change_case:english_capital" in spec:
        text = text.upper()
    if "startend:end_checker" in spec:
        text += " " + spec["startend:end_checker"]["end_phrase"]
    if "startend:quotation" in spec:
        text = f'"{text}"'
    return text


def make(r: random.Random, max_instructions: int = 3) -> dict:
    lm_registry, lm_util = checkers.lm_eval_ifeval()
    registry, conflicts = lm_registry.INSTRUCTION_DICT, lm_registry.INSTRUCTION_CONFLICTS
    topic = r.choice(_TOPICS)
    task = r.choice(_TASKS).format(t=topic)
    ids: list[str] = []
    for _ in range(r.randint(1, max_instructions)):
        iid = r.choice(sorted(registry))
        if all(iid not in conflicts[o] and o not in conflicts[iid] for o in ids):
            ids.append(iid)
    words = [w for w in lm_util.WORD_LIST if len(w) > 3]
    kws = [_kwargs(iid, r, words) for iid in ids]
    for iid, kw in zip(ids, kws):
        if iid == "combination:repeat_prompt":
            kw["prompt_to_repeat"] = task
    descriptions = [registry[i](i).build_description(**k) for i, k in zip(ids, kws)]
    prompt = task + " " + " ".join(descriptions)
    spec = {"instruction_id_list": ids, "kwargs": kws, "prompt": prompt}
    response = _build(task, topic, ids, kws, r)
    if checkers.verify(response, spec)[0] < 1.0:
        response = None
    return {"key": prompt, "prompt": prompt, "reward_spec": spec, "response": response}
