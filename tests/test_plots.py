"""The figures of apo plot: colours, line styles, markers, labels and axes, read
from the matplotlib objects of hand-written runs."""

import json

import pytest
import yaml

from apo.demo.compare import _write_mean_run
from apo.plots import (
    EVAL_SET_DEFAULTS,
    FIGURES,
    default_labels,
    draw_figure,
    load_runs,
    plot_runs,
)

EVAL_CONFIG = {
    "eval": {
        "datasets": {
            "reasoning": {"temperature": 0.0, "samples_per_question": 1},
            "reasoning_sampled": {"temperature": 1.0, "samples_per_question": 4},
            "general": {},  # EvalSetConfig's defaults: greedy
        }
    }
}


def write_run(run_dir, records, config=None):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if config is not None:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def training(steps=30, **keys):
    """Records of ``steps`` steps; each key maps to a function of the step."""
    return [
        {"step": s, **{k.replace("__", "/"): f(s) for k, f in keys.items()}}
        for s in range(1, steps + 1)
    ]


def legend_texts(figure):
    legends = [axis.get_legend() for axis in figure.axes if axis.get_legend() is not None]
    assert len(legends) == 1
    return [text.get_text() for text in legends[0].get_texts()]


def test_an_overlay_colours_each_run_and_styles_each_metric(tmp_path):
    runs = [
        write_run(
            tmp_path / name,
            training(reward__total=lambda s: s, reward__accuracy_rate=lambda s: 0.5),
        )
        for name in ("a", "b")
    ]
    figure = draw_figure("reward_accuracy", load_runs(runs))
    styles = {
        line.get_label(): (line.get_color(), line.get_linestyle())
        for line in figure.axes[0].get_lines()
    }
    assert styles == {
        "a: reward": ("C0", "-"),
        "a: fraction correct": ("C0", "--"),
        "b: reward": ("C1", "-"),
        "b: fraction correct": ("C1", "--"),
    }
    assert legend_texts(figure) == ["a", "b", "reward", "fraction correct"]


def test_a_single_run_colours_each_metric(tmp_path):
    run = write_run(
        tmp_path / "a", training(reward__total=lambda s: s, reward__accuracy_rate=lambda s: 0.5)
    )
    figure = draw_figure("reward_accuracy", load_runs([run]))
    assert [line.get_color() for line in figure.axes[0].get_lines()] == ["C0", "C1"]
    assert legend_texts(figure) == ["reward", "fraction correct"]


def test_short_curves_get_markers(tmp_path):
    records = training(kl__mean=lambda s: 0.01 * s)
    records[0]["eval/reasoning/accuracy"] = 0.2  # evaluated at the first and last step only
    records[-1]["eval/reasoning/accuracy"] = 0.4
    runs = load_runs(
        [
            write_run(tmp_path / "a", records),
            write_run(tmp_path / "b", training(5, kl__mean=lambda s: s)),
        ]
    )
    evals = draw_figure("eval_accuracy", runs).axes[0].get_lines()
    assert [line.get_marker() for line in evals] == ["o"]
    assert len(evals[0].get_xdata()) == 2
    kl = {
        line.get_label(): line.get_marker() for line in draw_figure("kl", runs).axes[0].get_lines()
    }
    assert kl == {"a: KL": "None", "b: KL": "o"}  # 30 points, 5 points


def test_held_out_curves_say_greedy_or_sampled(tmp_path):
    records = [
        {
            "step": s,
            **{
                f"eval/{name}/accuracy": 0.5
                for name in ("reasoning", "reasoning_sampled", "general", "extra")
            },
        }
        for s in (0, 3)
    ]
    figure = draw_figure(
        "eval_accuracy", load_runs([write_run(tmp_path / "run", records, EVAL_CONFIG)])
    )
    labels = {line.get_label() for line in figure.axes[0].get_lines()}
    assert labels == {
        "reasoning (greedy)",
        "reasoning_sampled (sampled, k=4)",
        "general (greedy)",
        "extra",  # not in the config
    }


def test_held_out_curves_are_accuracies_not_the_accuracy_reward(tmp_path):
    records = [
        {"step": s, "eval/reasoning/accuracy": 0.5, "eval/reasoning/reward/accuracy": 0.5}
        for s in (0, 3)
    ]
    figure = draw_figure("eval_accuracy", load_runs([write_run(tmp_path / "run", records)]))
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["reasoning"]


def test_without_a_config_the_held_out_curves_keep_the_set_name(tmp_path):
    records = [{"step": s, "eval/reasoning_sampled/accuracy": 0.5} for s in (0, 3)]
    figure = draw_figure("eval_accuracy", load_runs([write_run(tmp_path / "run", records)]))
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["reasoning_sampled"]


def test_eval_set_defaults_are_the_trainers():
    from apo.evaluation.training import EvalSetConfig

    trainers = {key: EvalSetConfig.model_fields[key].default for key in EVAL_SET_DEFAULTS}
    assert trainers == EVAL_SET_DEFAULTS


@pytest.mark.parametrize(("low", "high", "scale"), [(1e-5, 1e-1, "log"), (0.5, 0.9, "linear")])
def test_the_stcr_weight_has_its_own_axis(tmp_path, low, high, scale):
    records = training(
        5,
        dads__kl_weight_pos_mean=lambda s: 0.8,
        stcr__penalized_frac=lambda s: 0.3,
        stcr__weight_penalized_mean=lambda s: low * (high / low) ** ((s - 1) / 4),
    )
    figure = draw_figure("dads_stcr", load_runs([write_run(tmp_path / "run", records)]), smooth=1)
    left, right = figure.axes
    assert [line.get_label() for line in left.get_lines()] == [
        "DADS KL weight, positive advantages",
        "fraction penalised by STCR",
    ]
    assert [line.get_label() for line in right.get_lines()] == ["STCR weight, penalised responses"]
    assert left.get_yscale() == "linear"
    assert right.get_yscale() == scale
    assert legend_texts(figure)[-1] == "STCR weight, penalised responses (right axis)"


def test_without_stcr_weights_there_is_no_second_axis(tmp_path):
    records = training(5, dads__kl_weight_pos_mean=lambda s: 0.8)
    figure = draw_figure("dads_stcr", load_runs([write_run(tmp_path / "run", records)]))
    assert len(figure.axes) == 1
    assert legend_texts(figure) == ["DADS KL weight, positive advantages"]  # no absent metrics


def test_runs_in_same_named_folders_get_distinct_labels(tmp_path):
    runs = [
        write_run(tmp_path / variant / "seed0", training(3, kl__mean=lambda s: s))
        for variant in ("a", "b")
    ]
    assert default_labels(runs) == ["a/seed0", "b/seed0"]
    assert default_labels([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    assert legend_texts(draw_figure("kl", load_runs(runs))) == ["a/seed0", "b/seed0", "KL"]


def test_plot_runs_writes_every_figure_even_without_data(tmp_path):
    run = write_run(tmp_path / "run", [{"step": 1, "kl/mean": 0.1}])
    paths = plot_runs([run], tmp_path / "plots", labels=["GRPO"])
    assert [p.stem for p in paths] == list(FIGURES)
    assert all(p.stat().st_size > 0 for p in paths)


def test_compare_mean_runs_keep_the_eval_sets_of_their_seeds(tmp_path):
    seeds = [
        write_run(tmp_path / f"seed{s}", [{"step": 0, "eval/reasoning/accuracy": s}], EVAL_CONFIG)
        for s in (0, 1)
    ]
    mean = _write_mean_run(seeds, tmp_path / "mean" / "APO")
    figure = draw_figure("eval_accuracy", load_runs([mean]))
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["reasoning (greedy)"]


def test_every_figure_labels_its_y_axis_and_ticks_whole_steps(tmp_path):
    run = write_run(
        tmp_path / "run",
        [
            {"step": s, "reward/total": 0.5, "kl/mean": 0.1, "eval/reasoning/accuracy": 0.4}
            for s in (1, 2, 3)
        ],
    )
    runs = load_runs([run])
    for name in FIGURES:
        axis = draw_figure(name, runs).axes[0]
        assert axis.get_ylabel(), name
        ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)


def test_every_legend_names_its_metrics_in_words():
    from apo.plots import FIGURES, METRIC_LABELS

    for spec in FIGURES.values():
        for key in (*(spec.keys or ()), *spec.right_keys):
            assert key in METRIC_LABELS and "/" not in METRIC_LABELS[key], key
