"""The evaluation report: metrics.json, report.md, results.jsonl (written by the runner) and two plots."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SYSTEM_NOTES = {
    "hybrid": "ours: e5 dense + kiwi BM25 (weight 2), DBSF fusion as in Qdrant's query API, per-article cap",
    "dense": "ours, dense side only (e5 with query/passage prefixes, 200-token chunks)",
    "sparse": "ours, keyword side only (kiwi BM25, IDF in Qdrant)",
    "llamaindex": "plain llama-index: VectorStoreIndex, default SentenceSplitter (1024 tiktoken tokens), "
    "SimpleVectorStore, same e5 model without prefixes",
}


def write_report(out_dir: Path, metrics: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(metrics), encoding="utf-8")
    plot_recall_at_k(metrics, out_dir / "recall_at_k.png")
    plot_latency(records, out_dir / "latency.png")


# --- text ------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def display_width(text: str) -> int:
    """Terminal columns of `text`: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable on a terminal), columns padded to their widest cell."""
    cells = [[str(h) for h in headers], *[[fmt(v) for v in row] for row in rows]]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = (cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(cells[0]), separator, *(line(row) for row in cells[1:])])


def retrieval_table(metrics: dict[str, Any]) -> str:
    rows = []
    for name, system in metrics["systems"].items():
        r, lat = system["retrieval"], system["latency_ms"]
        rows.append(
            [
                name,
                r["recall@1"],
                r["recall@5"],
                r["recall@10"],
                r["mrr@10"],
                r["ndcg@10"],
                fmt(lat["p50"], 1),
                fmt(lat["p95"], 1),
            ]
        )
    headers = ["system", "recall@1", "recall@5", "recall@10", "MRR@10", "nDCG@10", "p50 ms", "p95 ms"]
    return format_table(headers, rows)


def _answer_row(name: str, figures: dict[str, Any]) -> list[Any]:
    a, c, r = figures["answer"], figures["citations"], figures["refusal"]
    return [
        name,
        a["contains"],
        a.get("char_f1"),
        a["f1"],
        a["exact_match"],
        a["correct"],
        c["precision"],
        c["recall"],
        r["accuracy"],
        r["refused"],
    ]


def answer_table(metrics: dict[str, Any]) -> str:
    """Our answers, and in a generative run the extractive answers to the same questions beside them."""
    mode = metrics.get("setup", {}).get("mode", "ours")
    rows = [_answer_row(mode, metrics)]
    for name, figures in metrics.get("answer_baselines", {}).items():
        rows.append(_answer_row(f"{name} (baseline)", figures))
    headers = ["answers", "contains", "char F1", "F1", "EM", "correct", "citation P", "citation R", "refusal acc"]
    return format_table([*headers, "refused"], rows)


def claims_table(metrics: dict[str, Any]) -> str:
    """What the claim check did to the generated sentences."""
    claims = metrics.get("claims", {})
    rows = [
        [
            claims.get("sentences"),
            claims.get("supported"),
            claims.get("repaired"),
            claims.get("dropped"),
            claims.get("answers_all_supported"),
            claims.get("unsupported_shown"),
            claims.get("sources_differ"),
        ]
    ]
    headers = ["sentences", "supported", "repaired", "dropped", "answers all supported", "unsupported shown"]
    return format_table([*headers, "sources differ"], rows)


def latency_table(metrics: dict[str, Any]) -> str:
    latency = metrics["latency_ms"]
    rows = [
        [stage, fmt(s["p50"], 1), fmt(s["p95"], 1), fmt(s["mean"], 1), fmt(s["max"], 1)]
        for stage, s in latency["stages"].items()
    ]
    rows.append(
        ["total", fmt(latency["p50"], 1), fmt(latency["p95"], 1), fmt(latency["mean"], 1), fmt(latency["max"], 1)]
    )
    return format_table(["stage", "p50", "p95", "mean", "max"], rows)


def format_summary(metrics: dict[str, Any]) -> str:
    """What `python -m eval run` prints without --json."""
    setup = metrics.get("setup", {})
    head = (
        f"{metrics['n_questions']} questions ({setup.get('n_answerable', '?')} answerable) over "
        f"{setup.get('n_documents', '?')} documents, {setup.get('mode', '?')} answers"
    )
    parts = [head, retrieval_table(metrics), answer_table(metrics)]
    if metrics.get("claims", {}).get("answers_checked"):
        parts.append(claims_table(metrics))
    return "\n\n".join([*parts, latency_table(metrics)]) + "\n"


def render_markdown(metrics: dict[str, Any]) -> str:
    setup = metrics.get("setup", {})
    parts = [
        "# Evaluation report",
        "## Setup",
        format_table(["", ""], [[key, _setup_value(value)] for key, value in setup.items()]),
        "## Retrieval (document level)",
        f"Over the {metrics['retrieval']['n']} answerable questions with relevant documents; the first "
        f"{setup.get('depth', {}).get('documents', 10)} distinct documents of each ranking count. Latency is "
        "retrieval only (query embedding + search), warm, one query at a time.",
        retrieval_table(metrics),
        "\n".join(_system_note(name, system) for name, system in metrics["systems"].items()),
        "![recall@k](recall_at_k.png)",
        f"## Answers (ours, {setup.get('mode', '?')})",
        f"F1 / EM / contains over the {metrics['answer']['n']} answerable questions with gold answers (a refusal "
        "scores 0); citation precision over answers with citations; refusal accuracy over all questions. "
        "Extractive answers quote whole sentences, so EM and F1 against short gold spans stay low by design: "
        "`contains` (the gold span occurs in the answer) is the telling number.",
        answer_table(metrics),
        *_claims_section(metrics),
        "## Answer latency (ms)",
        latency_table(metrics),
        "![latency](latency.png)",
    ]
    return "\n\n".join(parts) + "\n"


def _claims_section(metrics: dict[str, Any]) -> list[str]:
    if not metrics.get("claims", {}).get("answers_checked"):
        return []
    return [
        "## Claim check (generated sentences)",
        "Each sentence the model wrote: supported (its numbers, dates and names are in the evidence it cites), "
        "repaired (replaced by that evidence's quote) or dropped. `unsupported shown`: sentences shown as "
        "supported that a second check on the final answer finds unsupported (must be 0). `sources differ`: "
        "answers that named two disagreeing sources. Per question in results.jsonl (`checks`).",
        claims_table(metrics),
    ]


def _system_note(name: str, system: dict[str, Any]) -> str:
    note = f"- **{name}**: {SYSTEM_NOTES.get(name, '')}"
    index = system.get("index")
    if index:
        note += f" (this run built it: {_setup_value(index)})"
    return note


def _setup_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return fmt(value)


# --- plots -----------------------------------------------------------------------------------------


def _pyplot() -> Any:
    # matplotlib takes seconds to import and only the charts need it
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib takes seconds to import and only the charts need it
    import matplotlib.pyplot as plt

    return plt


def plot_recall_at_k(metrics: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, system in metrics["systems"].items():
        curve = system["retrieval"]["recall_at_k"]
        ks = [k for k, value in enumerate(curve, start=1) if value is not None]
        ax.plot(ks, [v for v in curve if v is not None], marker="o", label=name)
    ax.set_xlabel("k (distinct documents)")
    ax.set_ylabel("recall@k")
    ax.set_xticks(range(1, 11))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"Document recall@k ({metrics['retrieval']['n']} questions)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency(records: Sequence[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    totals = [r["timings_ms"]["total"] for r in records if "total" in r["timings_ms"]]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.hist(totals, bins=min(40, max(5, len(totals) // 5)))
    ax.set_xlabel("answer latency, total (ms)")
    ax.set_ylabel("questions")
    ax.set_title(f"Answer latency ({len(totals)} questions)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
