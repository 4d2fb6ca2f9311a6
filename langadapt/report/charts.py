"""The report's PNG charts: tokens per word, loss curves, perplexity, task scores, wall time."""

from __future__ import annotations

import os

from langadapt.report.collect import ordered_stages


def plot_charts(data: dict, out_dir: str) -> dict[str, str]:
    """Write the PNG charts the data allows; returns ``{name: file name}``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    charts: dict[str, str] = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"{name}.png"), dpi=100)
        plt.close(fig)
        charts[name] = f"{name}.png"

    tok = data.get("tokenizer")
    if tok and tok["files"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = list(tok["files"])
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [tok["files"][n]["base"] for n in names], 0.4, label="base tokenizer")
        ax.bar([x + 0.2 for x in xs], [tok["files"][n]["merged"] for n in names], 0.4, label="merged tokenizer")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names)
        ax.set_ylabel("tokens per word")
        ax.legend()
        save(fig, "tokens_per_word")

    if data["training"]:
        fig, axes = plt.subplots(1, len(data["training"]), figsize=(5 * len(data["training"]), 3.5), squeeze=False)
        for ax, (stage, c) in zip(axes[0], data["training"].items()):
            ax.plot(c["steps"], c["loss"], marker=".", label="train")
            if c["eval_loss"]:
                ax.plot(c["eval_steps"], c["eval_loss"], marker="o", label="eval")
            ax.set_title(stage)
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.legend()
        save(fig, "loss")

    ppl = data["perplexity"]
    if ppl:
        keys = sorted({k for p in ppl.values() for k in p.get("files", {})})
        stages = [s for s, _ in ordered_stages(list(ppl.items()))]
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
        for ax, k in zip(axes[0], keys):
            vals = [ppl[s].get("files", {}).get(k, {}).get("ppl_word", float("nan")) for s in stages]
            ax.bar(range(len(stages)), vals)
            ax.set_xticks(range(len(stages)))
            ax.set_xticklabels(stages, rotation=20)
            ax.set_yscale("log")
            ax.set_title(f"held-out {k}: perplexity per word")
        save(fig, "perplexity")

    sc = data.get("scores")
    if sc and sc.get("columns"):
        from langadapt.compare import comparison_chart

        comparison_chart(sc, os.path.join(out_dir, "scores.png"))
        charts["scores"] = "scores.png"

    tm = data.get("timings")
    if tm and tm.get("stages"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = list(tm["stages"])
        ax.barh(names, [tm["stages"][n] / 60 for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("minutes")
        save(fig, "timings")
    return charts
