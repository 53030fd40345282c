"""The reports of ``spicecross infer --read-disturb``: its text and JSON, and the figure of
accuracy against images read (:func:`~spicecross.nn.read_disturb.read_disturb_infer` makes the
runs)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["cmd_read_disturb", "json_report", "plot_read_disturb", "print_report"]


def json_report(res: dict[str, Any]) -> dict[str, Any]:
    """The ``"read_disturb"`` object of ``infer --read-disturb --json``."""
    st = res["stats"]
    return {"images": [c["images"] for c in res["chunks"]],
            "accuracy": [round(c["accuracy"], 4) for c in res["chunks"]],
            "moved_share": [c["moved_share"] for c in res["chunks"]],
            "mean_abs_dw": [c["mean_abs_dw"] for c in res["chunks"]],
            "max_abs_dw": [c["max_abs_dw"] for c in res["chunks"]],
            "read_voltage_v": res["read_voltage_v"], "pulse_width_s": res["pulse_width_s"],
            "chunk": res["chunk"], "seconds": round(res["seconds"], 3),
            "reads": st.reads, "inert_reads": st.inert_reads, "rows_exact": st.rows_exact,
            "rows_aggregated": st.rows_aggregated, "rows_skipped": st.rows_skipped,
            "transfer_builds": st.transfer_builds}


def plot_read_disturb(runs: list[dict[str, Any]], path: str | Path) -> Path:
    """Chunk accuracy against images read, one line per run (labelled by its read voltage
    and pulse width), the undisturbed accuracy dashed; written atomically as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..store import save_figure_atomic

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, res in enumerate(runs):
        color = f"C{k}"
        xs = [c["images"] for c in res["chunks"]]
        ax.plot(xs, [c["accuracy"] for c in res["chunks"]], "o-", ms=3, color=color,
                label=f"{res['read_voltage_v']:g} V reads, {1e9 * res['pulse_width_s']:g} ns "
                      f"(cells moved {100 * res['chunks'][-1]['moved_share']:.3g} %)")
        ax.axhline(res["no_disturb_accuracy"], color=color, ls="--", lw=0.8)
    r0 = runs[0]
    ax.set_xlabel("test images read")
    ax.set_ylabel(f"accuracy of each chunk of {r0['chunk']} images (%)")
    ax.set_title(f"read disturb: {r0['model']}, {r0['tile']} {r0['cell'].upper()} "
                 f"{r0['device_set']} "
                 f"(dashed: undisturbed)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = save_figure_atomic(fig, path)
    plt.close(fig)
    return out


def print_report(res: dict[str, Any]) -> None:
    """The text report of ``infer --read-disturb``."""
    st = res["stats"]
    print(f"{res['model']}: {res['images']} images ({res['data']})")
    print(f"  digital      {res['digital_accuracy']:.2f} %")
    print(f"  undisturbed  {res['no_disturb_accuracy']:.2f} %  ({res['no_disturb_seconds']:.2f} s)")
    print(f"  read disturb {res['accuracy']:.2f} %  ({res['seconds']:.2f} s; reads at "
          f"{res['read_voltage_v']:g} V {res['read_scheme']}, pulses of "
          f"{1e9 * res['pulse_width_s']:g} ns, {res['tile']} {res['cell'].upper()} "
          f"{res['device_set']}, "
          f"chunks of {res['chunk']})")
    print(f"  reads {st.reads}: {st.inert_reads} provably below threshold; (read, row) pairs "
          f"solved {st.rows_exact}, aggregated {st.rows_aggregated}; {st.transfer_builds} "
          f"transfer builds")
    print(f"  {'images':>8} {'accuracy %':>10} {'cells moved %':>14} {'mean |dw|':>10} "
          f"{'max |dw|':>10}")
    for c in res["chunks"]:
        print(f"  {c['images']:>8} {c['accuracy']:>10.2f} {100 * c['moved_share']:>14.4g} "
              f"{c['mean_abs_dw']:>10.3g} {c['max_abs_dw']:>10.3g}")


def cmd_read_disturb(args, config) -> int:
    """``spicecross infer --read-disturb``: the run, its text or JSON report and the PNG."""
    import json

    from ..store import check_output_path

    if getattr(args, "program", None) is not None:
        raise ValueError(f"--read-disturb streams the network as programmed; it cannot be "
                         f"combined with --program {args.program}")
    if args.plot is not None:
        check_output_path(args.plot, "--plot")
    from .read_disturb import read_disturb_infer

    res = read_disturb_infer(args.model, args.data, config, pulse_width_s=1e-9 * args.read_pulse_ns,
                             chunk=args.disturb_chunk, limit=args.limit, weights=args.weights,
                             batch_size=args.batch_size, progress=not args.json)
    if args.plot is not None:
        plot_read_disturb([res], args.plot)
    if args.json:
        print(json.dumps({"accuracy": round(res["accuracy"], 4),
                          "no_disturb_accuracy": round(res["no_disturb_accuracy"], 4),
                          "digital_accuracy": round(res["digital_accuracy"], 4),
                          "images": res["images"], "read_voltage_v": res["read_voltage_v"],
                          "read_scheme": res["read_scheme"],
                          "read_disturb": json_report(res)}))
    else:
        print_report(res)
        if args.plot is not None:
            print(f"  plot: {args.plot}")
    sys.stdout.flush()
    return 0
