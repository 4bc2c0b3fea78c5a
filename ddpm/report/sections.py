"""The report's sections, in order: a registry of builders, each ``(ReportContext) -> Section | None``.

Adding a section is one function plus its ``@register_section`` line; a builder returns None when
its section does not apply (e.g. the Pareto front of a single-objective study).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from ddpm.formatting import fmt, fmt_seconds, web_url
from ddpm.machine import machine_text
from ddpm.registry import Registry
from ddpm.report import figures
from ddpm.report.blocks import Cell, Code, Figure, Gallery, Link, Section, Table, Text
from ddpm.report.collect import StudyData, TrialData
from ddpm.sweeps.importance import EVALUATOR
from ddpm.sweeps.metrics import omega_at_edge, throughput_text
from ddpm.sweeps.verdict import fmt_interval, objective_score, study_verdict, ties

TOP_N = 10          # rows in the top-trials table
CURVES_N = 5        # trials in the loss-curve chart
GALLERY_N = 4       # trials whose best-omega grids are shown side by side


@dataclass
class ReportContext:
    data: StudyData
    best: Optional[TrialData]
    best_config_yaml: Optional[str]     # the text written to best_config.yaml (None: no completed trial)
    out_dir: Path


SectionBuilder = Callable[[ReportContext], Optional[Section]]
SECTIONS: Registry[SectionBuilder] = Registry("report section")
register_section: Callable[[str], Callable[[SectionBuilder], SectionBuilder]] = SECTIONS.register


def build_sections(ctx: ReportContext) -> list[Section]:
    return [s for s in (build(ctx) for build in SECTIONS.values()) if s is not None]


def _spec_name(spec: dict[str, Any], key: str) -> str:
    v = spec.get(key)
    if isinstance(v, dict):
        name = v.get("name") or v.get("type") or next(iter(v), None)
        rest = {k: x for k, x in v.items() if k not in ("name", "type")}
        return f"{name} ({', '.join(f'{k}={fmt(x)}' for k, x in rest.items())})" if rest else str(name)
    return str(v) if v is not None else "not recorded"


# A sweep's guidance grid sets every trial's sampling (sampler, steps, eta) and picks its omega: the
# seed default is judged on what a trial trained, and on clip_x0, which the grid keeps from the config.
GRID_SET_KEYS = ("sample.omega", "sample.sampler", "sample.steps", "sample.eta")


def is_seed_default(t: TrialData) -> bool:
    """Whether the trial ran the seed's DMConfig exactly (``ddpm.config.seed_differences``, runtime keys aside)."""
    from ddpm.config import seed_differences

    return t.config is not None and not seed_differences(t.config, ignore=GRID_SET_KEYS)


def _relative(path: Any) -> str:
    """A base experiment's path as a reader can find it: relative to here, else its folder and file name."""
    p = Path(str(path))
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(Path(p.parent.name) / p.name) if p.is_absolute() else str(p)


def base_label(data: StudyData) -> str:
    """What the baseline trial ran: "the sweep's base config: cpu-quick + overrides (data.limit=15000, ...)"."""
    base = data.base_experiment or data.spec.get("base")
    if not base:
        return "the sweep's base config (not recorded in this study)"
    name = Path(str(base)).stem
    overrides = data.spec.get("overrides") or {}
    if not isinstance(overrides, dict) or not overrides:
        return f"the sweep's base config: {name} (no overrides)"
    return f"the sweep's base config: {name} + overrides ({', '.join(f'{k}={fmt(v)}' for k, v in overrides.items())})"


def _trial_label(data: StudyData, t: TrialData) -> str:
    tags = (["baseline"] if data.baseline_trial == t.number else []) + (["seed default"] if is_seed_default(t) else [])
    return f"#{t.number}" + (f" ({', '.join(tags)})" if tags else "")


def _wandb_columns(trials: list[TrialData]) -> list[str]:
    """["W&B run"] when any of these trials recorded its W&B run, else [] (no empty column)."""
    return ["W&B run"] if any(t.record.wandb_run_id for t in trials) else []


def _wandb_cell(t: TrialData) -> Cell:
    """The trial's W&B run id, a link to the run's page when it was tracked online."""
    run_id, url = t.record.wandb_run_id, t.record.wandb_url
    return Link(run_id, url) if run_id and web_url(url) else (run_id or "–")


def _environment(data: StudyData) -> str:
    """Where the trials ran and how big they were: a reader must not mistake a smoke study for a result."""
    import socket

    recorded = data.study.user_attrs.get("environment")
    hosts = sorted({t.record.host for t in data.trials if t.record.host})
    cfgs = [t.config for t in data.trials if t.config]
    devices = sorted({str(c.get("train", {}).get("device", "auto")) for c in cfgs})
    parts: list[str] = []
    if recorded:
        parts.append(f"Environment: {recorded}.")
    elif hosts == [socket.gethostname()]:
        parts.append(f"Environment: the trials ran on this machine, {machine_text()}, with `train.device` = "
                     f"{', '.join(devices) or 'auto'}.")
    else:
        where = f" on host(s) {', '.join(hosts)}" if hosts else ""
        parts.append(f"Environment: the trials ran{where} with `train.device` = {', '.join(devices) or 'auto'} "
                     f"(auto = CUDA when present, else CPU); this report was written on {machine_text()}.")
    if cfgs:
        epochs = [c.get("train", {}).get("epochs") for c in cfgs]
        limits = [c.get("data", {}).get("limit") for c in cfgs]
        ts = sorted({c.get("diffusion", {}).get("T") for c in cfgs if c.get("diffusion", {}).get("T")})
        max_ep = max((e for e in epochs if isinstance(e, int)), default=None)
        lim = [x for x in limits if isinstance(x, int)]
        data_part = (f"on up to {max(lim):,} training images" if len(lim) == len(limits) and lim
                     else "on the full training set")
        parts.append(f"Scale: {len(data.trials)} trial(s), at most {max_ep} epoch(s) each {data_part}, "
                     f"T in {{{', '.join(str(x) for x in ts)}}}.")
        if (max_ep is not None and max_ep < 10) or (len(lim) == len(limits) and lim):
            parts.append("This is a short study: it ranks configs at a small budget; its models are not "
                         "converged and its FIDs are not comparable to fully trained ones.")
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------
# sections, in report order


@register_section("summary")
def summary(ctx: ReportContext) -> Section:
    d = ctx.data
    states: dict[str, int] = {}
    for t in d.trials:
        states[t.state] = states.get(t.state, 0) + 1
    start, end = d.time_span()
    total = sum(t.duration_s or 0.0 for t in d.trials)
    attrs = d.study.user_attrs
    rows = [["study", d.name]]
    if d.spec.get("description"):
        rows.append(["description", str(d.spec["description"])])
    if attrs.get("sweep_file"):
        rows.append(["sweep file", f"`{attrs['sweep_file']}`"])
    rows += [
        ["storage", d.storage],
        ["objective" + ("s" if d.multi_objective else ""),
         "; ".join(f"{o.metric} ({o.direction}, {o.arrow})" for o in d.objectives)],
        ["sampler", _spec_name(d.spec, "sampler")],
        ["pruner", _spec_name(d.spec, "pruner")],
        ["base experiment", _relative(d.base_experiment) if d.base_experiment else "–"],
        ["trials by state", ", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "no trials yet"],
        ["wall time", f"{fmt_seconds(d.wall_time_s())} (sum of trial durations {fmt_seconds(total)})"],
        ["throughput", throughput_text([t.trial for t in d.trials]) or "–"],
        ["started / last finished", f"{start:%Y-%m-%d %H:%M:%S} / {end:%Y-%m-%d %H:%M:%S}" if start and end else "–"],
        ["verdict", _verdict(ctx)],
    ]
    if d.confirmation is not None:
        rows.append(["confirmed verdict", str(d.confirmation.get("verdict") or "–")])
    blocks: list[Any] = [Table(["", ""], rows), Text(_environment(d), note=True)]
    return Section("summary", "Study summary", blocks)


def _verdict(ctx: ReportContext) -> str:
    """The best trial against the baseline in words (``ddpm.sweeps.verdict``); 95% intervals."""
    d = ctx.data
    return study_verdict([t.trial for t in d.completed], [(o.metric, o.direction) for o in d.objectives],
                         d.baseline_trial, ctx.best.number if ctx.best is not None else None)


@register_section("confirmation")
def confirmation(ctx: ReportContext) -> Optional[Section]:
    """The confirmation stage: the top trials and the baseline re-scored on the test split (fresh seeds,
    larger n) beside their search-time numbers (validation split, one seed)."""
    from ddpm.sweeps.confirm import confirmed_score

    d, rec = ctx.data, ctx.data.confirmation
    if rec is None:
        return None
    st = rec.get("settings", {})
    key = rec.get("row_key") or rec.get("metric") or "fid"
    metric = str(rec.get("metric") or key)
    cols = ["trial", "omega", f"{metric} at search (val, 1 seed)", f"{metric} confirmed (test)", "per seed",
            "KID confirmed (test)", "accuracy confirmed (test)", "vs confirmed winner"]
    winner = rec.get("winner")
    rows_by = rec.get("trials", {})
    best_score = confirmed_score(rows_by.get(str(winner), {}), key) if winner is not None else None
    out = []
    for number in rec.get("ranking") or [int(n) for n in rows_by]:
        row = rows_by.get(str(number), {})
        t = d.by_number(int(number))
        search = objective_score(t.trial, 0, metric) if t is not None else None
        score = confirmed_score(row, key)
        tie = ties(best_score, [score])[0] if number != winner else None
        kid, acc = confirmed_score(row, "kid"), confirmed_score(row, "accuracy")
        label = _trial_label(d, t) if t is not None else f"#{number}"
        out.append([label, fmt(row.get("omega")), search.text() if search else "–", score.text() if score else "–",
                    ", ".join(f"{v:.3g}" for v in row.get(f"{key}_per_seed", [])) or "–",
                    kid.text() if kid else "–", acc.text() if acc else "–",
                    "winner" if number == winner else {True: "tie", False: "worse", None: "–"}[tie]])
    caption = (f"Re-scored after the study at each trial's selected omega on the test split: {st.get('seeds')} "
               f"fresh sampling seed(s) x {st.get('n')} images per trial (the search scored one seed on the "
               f"validation split). Confirmed value = mean over seeds; 95% interval of that mean (per-seed "
               f"bootstrap half-widths in quadrature / seeds). The winner is named from these numbers.")
    return Section("confirmation", "Confirmation on the test split",
                   [Text(str(rec.get("verdict") or ""), note=False), Table(cols, out, caption=caption)])


@register_section("best")
def best(ctx: ReportContext) -> Section:
    b = ctx.best
    if b is None:
        return Section("best", "Best trial", [Text("No trial has completed yet, so there is no best config "
                                                    "(best_config.yaml is not written). Rerun the report later.", note=True)])
    values = ", ".join(f"{o.metric} = {fmt(v)}" for o, v in zip(ctx.data.objectives, b.values or []))
    why = ("the Pareto-optimal trial that is best on the first objective" if ctx.data.multi_objective
           else "Optuna's best trial")
    lines = [Text(f"Trial {b.number} ({why}): {values}; best guidance weight omega = {fmt(b.best_omega)}; "
                  f"run folder `{b.run_dir}`."),
             Text(f"Rerun it as is: `ddpm train {ctx.out_dir / 'best_config.yaml'}` (its name is "
                  f"`{ctx.data.name}-best`, its sampling default `sample.omega` is the best omega).")]
    edge = omega_at_edge(b.guidance, b.best_omega)
    if edge:
        lines.append(Text(f"Note: {edge} (guidance grid {fmt([r.get('omega') for r in b.guidance])}); widen "
                          f"guidance.omegas to find it.", note=True))
    if ctx.best_config_yaml:
        lines.append(Code(ctx.best_config_yaml.rstrip(), "yaml", title="best_config.yaml"))
    return Section("best", "Best trial and its config", lines)


TOP_TABLE_GUIDANCE_METRICS = ("fid", "accuracy", "kid", "diversity")  # from the guidance row at the trial's best omega


def _guidance_keys(d: StudyData) -> list[str]:
    """Guidance metrics not already shown as an objective."""
    objectives = {o.metric.lower() for o in d.objectives}
    return [k for k in TOP_TABLE_GUIDANCE_METRICS if k not in objectives]


def _guidance_cells(t: TrialData, keys: list[str]) -> list[str]:
    row = t.guidance_row(t.best_omega) or {}
    return [fmt(t.best_omega)] + [_with_interval(row, k) for k in keys]


def _with_interval(row: dict[str, Any], key: str) -> str:
    """``240 [221, 262]`` when the row has the key's interval, else the plain value ("–" when missing)."""
    if row.get(key) is None:
        return "–"
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    return fmt_interval(row[key], lo, hi) if lo is not None and hi is not None else fmt(row.get(key))


@register_section("top")
def top_trials(ctx: ReportContext) -> Section:
    d = ctx.data
    ranked = d.ranked()
    shown = ranked[:TOP_N]
    baseline = d.by_number(d.baseline_trial)
    if baseline is not None and baseline not in shown:
        shown = shown + [baseline]
    keys = sorted({k for t in shown for k in t.params})
    gkeys = _guidance_keys(d)
    wandb = _wandb_columns(shown)
    cols = (["trial", "state"] + [o.metric for o in d.objectives] + ["vs best"] + ["best omega"] + gkeys
            + ["final test loss", "epochs", "duration"] + wandb + keys)
    rows = []
    winner = objective_score(ctx.best.trial, 0, d.objectives[0].metric) if ctx.best is not None else None
    for t in shown:
        scores = [objective_score(t.trial, i, o.metric) for i, o in enumerate(d.objectives)]
        vals = [s.text() if s is not None else "–" for s in scores]
        tie = ties(winner, scores[:1])[0]
        vs = ("best" if ctx.best is not None and t.number == ctx.best.number
              else "–" if tie is None else "tie" if tie else "worse")
        rows.append([_trial_label(d, t), t.state] + vals + [vs] + _guidance_cells(t, gkeys)
                    + [fmt(t.last("test_loss")), fmt(len(t.metrics)), fmt_seconds(t.duration_s)]
                    + [_wandb_cell(t) for _ in wandb] + [fmt(t.params.get(k)) for k in keys])
    blocks: list[Any] = []
    if not rows:
        blocks.append(Text("No completed trials yet.", note=True))
    else:
        blocks.append(Table(cols, rows, caption=f"Completed trials ranked by {d.objectives[0].metric} "
                            f"({d.objectives[0].arrow}); guidance metrics at each trial's best omega, with "
                            f"95% intervals in brackets where the row has them. \"tie\": the trial's "
                            f"{d.objectives[0].metric} interval overlaps the best's; \"–\": no interval."))
    if d.baseline_trial is None:
        blocks.append(Text(f"No baseline trial: {base_label(d)} was not run as a trial in this study "
                           f"(enqueue_baseline: true runs it).", note=True))
    elif baseline is None:
        blocks.append(Text(f"Baseline trial {d.baseline_trial} is not in the storage.", note=True))
    else:
        where = (f"ranked {ranked.index(baseline) + 1} of {len(ranked)}" if baseline in ranked
                 else f"{baseline.state}, not ranked")
        blocks.append(Text(f"Baseline: trial {baseline.number} ran {base_label(d)} ({where}). "
                           + _seed_note(baseline), note=True))
    return Section("top", "Top trials", blocks)


def _seed_note(t: TrialData) -> str:
    from ddpm.config import seed_differences

    if t.config is None:
        return "Its resolved config was not recorded, so it is not called the seed default."
    diff = seed_differences(t.config, ignore=GRID_SET_KEYS)
    if not diff:
        return "That is the seed's DMConfig exactly: the seed default."
    more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
    return f"It is not the seed default (it differs in {', '.join(diff[:6])}{more})."


@register_section("history")
def history(ctx: ReportContext) -> Section:
    d = ctx.data
    if not d.completed:
        return Section("history", "Optimisation history", [Text("No completed trials to plot yet.", note=True)])
    blocks: list[Any] = []
    for i, o in enumerate(d.objectives):
        try:
            chart = figures.optimisation_history(d.study, i, o.metric)
        except Exception as e:  # Optuna refuses an unusual study: say why, keep the report
            blocks.append(Text(f"Optuna could not draw the history of {o.metric}: {e}", note=True))
            continue
        blocks.append(Figure(f"history-{i}", chart, f"Optuna optimisation history of {o.metric} "
                                                    f"({o.arrow}): each completed trial and the best so far."))
    return Section("history", "Optimisation history", blocks)


def _varying_params(d: StudyData) -> list[str]:
    keys = sorted({k for t in d.completed for k in t.params})
    return [k for k in keys if len({repr(t.params.get(k)) for t in d.completed}) > 1]


@register_section("importances")
def importances(ctx: ReportContext) -> Section:
    d = ctx.data
    title = "Parameter importances"
    varying = _varying_params(d)
    if len(d.completed) < 2 or not varying:
        why = (f"only {len(d.completed)} completed trial(s)" if len(d.completed) < 2
               else "no searched parameter varies across the completed trials")
        return Section("importances", title, [Text(f"Parameter importances need at least 2 completed trials whose "
                                                   f"parameters differ; this study has {why}.", note=True)])
    blocks: list[Any] = []
    for i, o in enumerate(d.objectives):
        try:
            chart, numbers = figures.param_importances(d.study, i, o.metric)
        except Exception as e:
            blocks.append(Text(f"Optuna could not compute importances for {o.metric}: {e}", note=True))
            continue
        blocks.append(Figure(f"importances-{i}", chart, f"Parameter importances for {o.metric} "
                                                        f"(optuna.importance, evaluator {EVALUATOR})."))
        blocks.append(Table(["parameter", f"importance for {o.metric}"],
                            [[k, f"{v:.3f}"] for k, v in numbers.items()]))
    if len(d.completed) < 10:
        blocks.append(Text(f"With {len(d.completed)} completed trials these importances are a rough hint only.",
                           note=True))
    return Section("importances", title, blocks)


def _searched_params(d: StudyData) -> list[str]:
    """The parameters the completed trials were searched over (Optuna's params, sorted)."""
    return sorted({k for t in d.completed for k in t.params})


def _param_plot(ctx: ReportContext, key: str, title: str, draw: Callable[..., bytes], what: str) -> Section:
    """One Optuna plot of every searched parameter per objective; a note when fewer than 2 parameters or
    completed trials (one parameter's plot is the top-trials table; Optuna draws nothing useful)."""
    d = ctx.data
    params = _searched_params(d)
    if len(params) < 2 or len(d.completed) < 2:
        why = (f"{len(params)} searched parameter(s) ({', '.join(params) or 'none'})" if len(params) < 2
               else f"{len(d.completed)} completed trial(s)")
        return Section(key, title, [Text(f"A {title.lower()} needs at least 2 searched parameters and 2 completed "
                                         f"trials; this study has {why}.", note=True)])
    blocks: list[Any] = []
    for i, o in enumerate(d.objectives):
        try:
            chart = draw(d.study, i, o.metric, params)
        except Exception as e:  # Optuna refuses an unusual study: say why, keep the report
            blocks.append(Text(f"Optuna could not draw the {title.lower()} of {o.metric}: {e}", note=True))
            continue
        blocks.append(Figure(f"{key}-{i}", chart, f"Optuna {title.lower()} of {o.metric} ({o.arrow}) over "
                                                  f"{', '.join(params)}: {what}"))
    return Section(key, title, blocks)


@register_section("parallel")
def parallel_coordinate(ctx: ReportContext) -> Section:
    return _param_plot(ctx, "parallel", "Parallel-coordinate plot", figures.parallel_coordinate,
                       f"one line per completed trial, coloured by its {ctx.data.objectives[0].metric}.")


@register_section("slice")
def slice_plot(ctx: ReportContext) -> Section:
    return _param_plot(ctx, "slice", "Slice plot", figures.slices,
                       "one panel per parameter, each point a completed trial, coloured by trial number.")


@register_section("pareto")
def pareto(ctx: ReportContext) -> Optional[Section]:
    d = ctx.data
    if not d.multi_objective:
        return None
    title = "Pareto front"
    if len(d.objectives) > 3:
        return Section("pareto", title, [Text("Optuna plots Pareto fronts of 2 or 3 objectives only.", note=True)])
    if not d.completed:
        return Section("pareto", title, [Text("No completed trials yet.", note=True)])
    front = sorted(t.number for t in d.study.best_trials)
    blocks: list[Any] = []
    try:
        blocks.append(Figure("pareto", figures.pareto_front(d.study, [o.metric for o in d.objectives]),
                             "Optuna Pareto front: trials no other trial beats on every objective."))
    except Exception as e:
        blocks.append(Text(f"Optuna could not draw the Pareto front: {e}", note=True))
    rows = [[f"#{t.number}"] + [fmt(v) for v in t.values or []] + [fmt(t.best_omega)]
            for t in d.completed if t.number in front]
    blocks.append(Table(["trial"] + [o.metric for o in d.objectives] + ["best omega"], rows,
                        caption="Pareto-optimal trials"))
    return Section("pareto", title, blocks)


@register_section("losses")
def losses(ctx: ReportContext) -> Section:
    d = ctx.data
    chosen = [t for t in d.ranked()[:CURVES_N] if t.metrics]
    baseline = d.by_number(d.baseline_trial)
    if baseline is not None and baseline.metrics and baseline not in chosen:
        chosen.append(baseline)
    if not chosen:
        return Section("losses", "Loss curves", [Text("No per-epoch metrics found in the run folders.", note=True)])
    chart = figures.loss_curves([(f"{_trial_label(d, t)}", t.metrics) for t in chosen])
    return Section("losses", "Loss curves", [Figure("losses", chart, "Per-epoch noise loss of the top trials "
                                                     "(from each run folder's metrics.jsonl).")])


@register_section("guidance")
def guidance(ctx: ReportContext) -> Section:
    b = ctx.best
    title = "Guidance trade-off of the best trial"
    if b is None or not b.guidance:
        why = "no completed trial" if b is None else f"trial {b.number} has no guidance table"
        return Section("guidance", title, [Text(f"Nothing to show: {why}.", note=True)])
    chart = figures.guidance_tradeoff(b.guidance, f"Trial {b.number}: FID and accuracy against omega")
    rows = [[fmt(r.get("omega")), _with_interval(r, "fid"), fmt(r.get("floor")), _with_interval(r, "accuracy"),
             _with_interval(r, "kid"), fmt(r.get("diversity")), fmt(r.get("n")), fmt_seconds(r.get("seconds"))]
            for r in b.guidance]
    return Section("guidance", title, [
        Figure("guidance", chart, "Classifier-free guidance weight omega against FID (classifier features; "
                                  "dotted: the real-data floor) and conditional accuracy."),
        Table(["omega", "FID", "real-data floor", "accuracy", "KID", "diversity", "n", "seconds"], rows,
              caption=f"Trial {b.number}'s guidance table; best omega = {fmt(b.best_omega)}; 95% intervals "
                      "(FID: bootstrap over the samples; accuracy: Wilson; KID: jackknife)."),
    ])


def _grid_png(t: TrialData, rel: Any) -> Optional[bytes]:
    """The PNG at ``rel`` inside the trial's run folder (or its artifact-store copy), when it is there and readable."""
    path = t.file(str(rel)) if rel else None
    return figures.image_png(path.read_bytes()) if path is not None else None


def _last_epoch_grid(t: TrialData) -> Optional[Figure]:
    """The trial's last training-epoch grid (at its config's omega), when the run folder holds one."""
    data = _grid_png(t, next((m["grid"] for m in reversed(t.metrics) if m.get("grid")), None))
    if data is None:
        return None
    omega = (t.config or {}).get("sample", {}).get("omega")
    return Figure(f"grid-trial{t.number}-last-epoch", data,
                  f"Trial {t.number}'s last training epoch's grid (omega = {fmt(omega)}); row r holds digit r.")


def _gallery_caption(d: StudyData, t: TrialData, row: Optional[dict[str, Any]]) -> str:
    score = objective_score(t.trial, 0, d.objectives[0].metric)
    params = ", ".join(f"{k} = {fmt(v)}" for k, v in sorted(t.params.items())) or "no searched parameters"
    where = f"best omega = {fmt(t.best_omega)}" if row is not None else "no guidance grid: last epoch's grid"
    return (f"{_trial_label(d, t)}: {params}; {where}; {d.objectives[0].metric} "
            f"{score.text() if score is not None else '–'}" + (f" (n = {score.n})" if score and score.n else "") + ".")


def _gallery_figure(d: StudyData, t: TrialData) -> Optional[Figure]:
    """Trial ``t``'s grid at its best omega (else its last epoch's grid), captioned for the gallery."""
    row = t.guidance_row(t.best_omega)
    data = _grid_png(t, (row or {}).get("grid"))
    if data is None:
        last, row = _last_epoch_grid(t), None
        data = last.png if last is not None else None
    return Figure(f"grid-top-trial{t.number}", data, _gallery_caption(d, t, row)) if data is not None else None


@register_section("gallery")
def gallery(ctx: ReportContext) -> Section:
    """The top trials' sample grids side by side, each at its own best omega."""
    d = ctx.data
    title = "Samples of the top trials"
    top = d.ranked()[:GALLERY_N]
    found = [(t, _gallery_figure(d, t)) for t in top]
    shown = [f for _, f in found if f is not None]
    missing = [f"#{t.number}" for t, f in found if f is None]
    blocks: list[Any] = []
    if shown:
        blocks.append(Gallery(shown, f"The {len(shown)} best-ranked completed trial(s) by {d.objectives[0].metric} "
                                     f"({d.objectives[0].arrow}), each sampled at its own best omega; row r holds "
                                     f"digit r; 95% interval in brackets."))
    if missing or not shown:
        blocks.append(Text(f"No sample grid found for trial(s) {', '.join(missing)}." if missing
                           else "No completed trials yet.", note=True))
    return Section("gallery", title, blocks)


@register_section("grids")
def grids(ctx: ReportContext) -> Section:
    b = ctx.best
    title = "Samples of the best trial"
    if b is None or b.run_dir is None:
        return Section("grids", title, [Text("No completed trial with a run folder yet.", note=True)])
    shown: list[Figure] = []
    notes: list[Any] = []
    for r in b.guidance:
        if not r.get("grid"):
            continue
        data = _grid_png(b, r["grid"])
        if data is None:
            notes.append(Text(f"omega = {fmt(r.get('omega'))}: grid `{r['grid']}` is missing or unreadable.", note=True))
            continue
        shown.append(Figure(f"grid-omega{float(r['omega']):g}", data,
                            f"omega = {fmt(r.get('omega'))}: samples ordered by requested digit; accuracy "
                            f"{fmt(r.get('accuracy'))}, FID {fmt(r.get('fid'))}."))
    if not shown and (last := _last_epoch_grid(b)) is not None:
        shown.append(last)
    elif not shown:
        notes.append(Text(f"Trial {b.number} has no sample grids in {b.run_dir}.", note=True))
    return Section("grids", title, ([Gallery(shown)] if shown else []) + notes)


@register_section("failures")
def failures(ctx: ReportContext) -> Optional[Section]:
    d = ctx.data
    bad = [t for t in d.trials if t.state in ("failed", "pruned")]
    if not bad:
        return None
    wandb = _wandb_columns(bad)  # a failed trial's W&B run holds its logs up to the failure
    rows = [[f"#{t.number}", t.state, fmt(len(t.metrics)), fmt(t.last("test_loss"))]
            + [_wandb_cell(t) for _ in wandb] + [t.failure_reason or "–"] for t in bad]
    return Section("failures", "Failed and pruned trials",
                   [Table(["trial", "state", "epochs run", "last test loss", *wandb, "reason"], rows)])


@register_section("spec")
def spec(ctx: ReportContext) -> Optional[Section]:
    d = ctx.data
    if not d.spec:
        return None
    text = yaml.safe_dump(d.spec, sort_keys=False, default_flow_style=None).rstrip()
    return Section("spec", "Sweep definition", [Text("The sweep file as the study recorded it:"), Code(text, "yaml")])
