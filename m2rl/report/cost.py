"""The report's cost sections: the summary (cost per arm, the study's mixed/separate
ratio) and the same comparison normalised per step, prompt and generated token."""
from __future__ import annotations

from m2rl.ledger import Ledger

from . import compare
from .fmt import fmt_dur, fmt_h, fmt_num, fmt_pct, rel
from .render import Doc

STUDY_RATIO = 2166.4 / (2172.8 + 3187.2 + 787.2 + 377.6)


def summary_section(doc: Doc, led: Ledger, comp: compare.Comparison, files, out) -> None:
    U = led.unit
    doc.h(1, "Summary")
    sep, mix = comp.separate_rl, comp.mixed
    if comp.headline is not None:
        doc.p(f"**Mixed multi-task RL cost {fmt_h(mix.gpu_s)} {U}-hours, {comp.headline:.1%} of the "
              f"{fmt_h(sep.gpu_s)} {U}-hours of the {len(sep.runs)} separate single-domain RL runs** "
              f"(the study's definition; it published {STUDY_RATIO:.1%}). With the merge jobs, separate costs "
              f"{fmt_h(comp.separate.gpu_s)} {U}-hours (ratio {fmt_pct(comp.ratio(mix, comp.separate))}).")
    else:
        missing = [n for n, g in (("single-domain RL (grpo on one domain)", sep), ("mixed (grpo domain=multi)", mix))
                   if not g.runs]
        doc.p(f"No mixed/separate ratio: this experiment has no {' and no '.join(missing)} run.")
    if comp.opd.runs:
        doc.p(f"MT-OPD cost {fmt_h(comp.opd.gpu_s)} {U}-hours alone, {fmt_h(comp.opd_teachers.gpu_s)} with the "
              f"single-domain RL runs that serve as its teachers.")
    rows = []
    for g in comp.groups:
        if not g.runs:
            continue
        prompts, measured = g.prompts
        rows.append([g.label, len(g.runs), fmt_h(g.gpu_s), fmt_num(g.steps), fmt_num(prompts, measured),
                     fmt_num(g.tokens), fmt_h(g.lost_gpu_s), fmt_dur(g.queued_s)])
    if comp.unattributed_gpu_s or led.unattributed:
        rows.append(["unattributed Slurm usage", "", fmt_h(comp.unattributed_gpu_s), "", "", "", "", ""])
    rows.append(["**all runs**", len(led.runs), fmt_h(led.gpu_s), "", "", "", fmt_h(sum(t.lost_gpu_s for t in
                 led.runs.values())), fmt_dur(sum(t.queued_s or 0 for t in led.runs.values()) or None)])
    doc.table(["arm", "runs", f"{U} hours", "steps", "prompts", "generated tokens", f"{U} hours lost",
               "queued"], rows, caption="Groups overlap (separate = RL + merge; MT-OPD + teachers includes the "
               "single-domain runs); eval runs are in no arm. est. = batch x steps, where DONE.json gives no "
               "`prompts` count.")
    if (r := rel(files, "arms", out)):
        doc.img(*r, f"{U} cost per arm")


def ratios_section(doc: Doc, comp: compare.Comparison, files, out, U: str) -> None:
    doc.h(1, "Mixed vs separate, normalised")
    if not comp.separate_rl.runs:
        doc.p("No single-domain RL runs: nothing to normalise against.")
        return
    sep, mix, opd = comp.separate_rl, comp.mixed, comp.opd
    rows = [[f"{U} hours (the study's ratio)", fmt_h(sep.gpu_s), fmt_h(mix.gpu_s) if mix.runs else "n/a",
             fmt_pct(comp.ratio(mix, sep)), fmt_h(opd.gpu_s) if opd.runs else "n/a", fmt_pct(comp.ratio(opd, sep))],
            [f"{U} hours with merge jobs / teachers", fmt_h(comp.separate.gpu_s),
             fmt_h(mix.gpu_s) if mix.runs else "n/a", fmt_pct(comp.ratio(mix, comp.separate)),
             fmt_h(comp.opd_teachers.gpu_s) if opd.runs else "n/a", fmt_pct(comp.ratio(comp.opd_teachers, sep))]]
    for label, what, scale, unit in ((f"{U}-seconds per step", "step", 1.0, ""),
                                     (f"{U}-seconds per prompt", "prompt", 1.0, ""),
                                     (f"{U}-seconds per 1k generated tokens", "token", 1000.0, "")):
        f = lambda g: fmt_num(g.per(what) * scale) if g.runs and g.per(what) is not None else "n/a"  # noqa: E731
        rows.append([label, f(sep), f(mix), fmt_pct(comp.ratio(mix, sep, what)), f(opd),
                     fmt_pct(comp.ratio(opd, sep, what))])
    doc.table(["measure", "separate RL", "mixed", "mixed / separate", "MT-OPD", "MT-OPD / separate"], rows)
    notes = [f"Steps: separate {fmt_num(sep.steps)}, mixed {fmt_num(mix.steps)}, MT-OPD {fmt_num(opd.steps)}; "
             "a step is one optimizer step on one rollout batch, so per-step and per-prompt ratios compare equal "
             "amounts of training."]
    est = [t.run.key for g in (sep, mix, opd) for t in g.trainers
           if t.run.prompts[0] is not None and not t.run.prompts[1]]
    if est:
        notes.append(f"Prompts are batch x steps from the config where DONE.json has no `prompts` count: "
                     f"{', '.join(est)}.")
    no_tok = [t.run.key for g in (sep, mix, opd) for t in g.trainers if t.run.generated_tokens is None]
    if no_tok:
        notes.append(f"No per-token figure where a run's DONE.json has no `generated_tokens`: {', '.join(no_tok)}.")
    doc.items(notes)
    if (r := rel(files, "ratios", out)):
        doc.img(*r, "ratios")
