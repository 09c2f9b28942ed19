"""
The results: a Markdown table of medians with min–max and the mailplat/peer
ratio, the raw samples as JSON, and two PNG charts (throughput and time;
memory).
"""

import json
import os
import statistics
import textwrap

# key, label, unit, which is better, chart, the peer it is compared with
FIGURES = [
    ("smtp_1k", "SMTP accept, 20 sessions x 1 KB ({smtp1k} messages)", "msg/s", "higher", "speed", "Postfix"),
    ("smtp_100k", "SMTP accept, 20 sessions x 100 KB ({smtp100k} messages)", "msg/s", "higher", "speed", "Postfix"),
    ("relay", "Relay end to end, smtp-source -> server -> smtp-sink ({relay} x 1 KB)", "msg/s", "higher",
     "speed", "Postfix"),
    ("imap_sessions", "IMAP sessions with reconnects (8 clients)", "sessions/s", "higher",
     "speed", "Dovecot"),
    ("imap_commands", "IMAP commands without reconnects (8 clients)", "commands/s", "higher",
     "speed", "Dovecot"),
    ("pop3_sessions", "POP3 sessions, 20 RETR each (8 clients)", "sessions/s", "higher",
     "speed", "Dovecot"),
    ("mbsync", "mbsync full pull of {mbsync} messages", "s", "lower", "speed", "Dovecot"),
    ("big_time", "{bigMB} MB message: SMTP -> Maildir -> IMAP FETCH, time", "s", "lower", "speed",
     "Postfix+Dovecot"),
    ("startup_smtp", "Start-up to first SMTP greeting", "s", "lower", "speed", "Postfix"),
    ("startup_imap", "Start-up to first IMAP greeting (TLS)", "s", "lower", "speed", "Dovecot"),
    ("rss_rest", "RSS at rest, after start-up", "MiB", "lower", "memory", "Postfix+Dovecot"),
    ("pss_rest", "PSS at rest, after start-up", "MiB", "lower", "memory", "Postfix+Dovecot"),
    ("smtp_idle_rss", "RSS per idle SMTP session ({idleSmtp} open)", "KiB", "lower", "memory", "Postfix"),
    ("smtp_idle_pss", "PSS per idle SMTP session ({idleSmtp} open)", "KiB", "lower", "memory", "Postfix"),
    ("imap_idle_rss", "RSS per idle logged-in IMAP session ({idleImap} open)", "KiB", "lower", "memory",
     "Dovecot"),
    ("imap_idle_pss", "PSS per idle logged-in IMAP session ({idleImap} open)", "KiB", "lower", "memory",
     "Dovecot"),
    ("big_rss", "RSS growth for one {bigMB} MB message (SMTP -> Maildir -> IMAP FETCH)", "MiB",
     "lower", "memory", "Postfix+Dovecot"),
]
SIDES = ("mailplat", "peer")
COLORS = {"mailplat": "#1f77b4", "peer": "#ff7f0e"}


def _fmt(x):
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def summarize(results, key, side, rounds):
    values = results.samples.get(key, {}).get(side, [])
    reason = results.na.get(key, {}).get(side)
    if not values:
        reason = reason or "not measured"
        if len(reason) > 160:
            reason = reason[:150].rstrip() + " … (see Notes)"
        return None, "n/a: " + reason.replace("|", "\\|")
    med = statistics.median(values)
    text = f"{_fmt(med)} ({_fmt(min(values))}–{_fmt(max(values))})"
    if len(values) < rounds:
        text += f" [{len(values)} of {rounds} rounds]"
    return med, text


def _params(meta):
    p = meta["params"]
    return (
        f"{p['rounds']} rounds per server, alternating mailplat / peer (A B A B ...); "
        f"SMTP accept {p['smtp1k']} x 1 KB and {p['smtp100k']} x 100 KB, relay {p['relay']} x 1 KB; "
        f"IMAP/POP3 runs of {p['duration']:g} s; idle: {p['idleSmtp']} SMTP and "
        f"{p['idleImap']} IMAP sessions; one {p['bigMB']} MB message; "
        f"mbsync pull of {p['mbsync']} messages"
    )


def write(directory, stem, meta, results):
    os.makedirs(directory, exist_ok=True)
    rounds = meta["params"]["rounds"]
    md = os.path.join(directory, stem + ".md")
    raw = os.path.join(directory, stem + ".json")
    charts = {kind: os.path.join(directory, f"{stem}-{kind}.png")
              for kind in ("throughput", "memory")}

    rows, medians = [], {}
    for key, label, unit, better, _chart, peer in FIGURES:
        label = label.format(**meta["params"])
        m, mt = summarize(results, key, "mailplat", rounds)
        p, pt = summarize(results, key, "peer", rounds)
        medians[key] = (m, p)
        ratio = f"{m / p:.2f}" if m is not None and p else "–"
        rows.append(f"| {label} | {unit} | {better} | {mt} | {peer} | {pt} | {ratio} |")

    load = meta["load"]
    v = meta["versions"]
    lines = [
        f"# mailplat vs Postfix and Dovecot — {meta['started']} on {meta['host']}"
        + (" (quick mode)" if meta["mode"] == "quick" else ""),
        "",
        f"`{'bench/run --quick' if meta['mode'] == 'quick' else 'make bench'}`, "
        f"{meta['duration'] / 60:.1f} minutes. {_params(meta)}.",
        "Medians with min–max over the rounds; the ratio is mailplat / peer of the "
        "medians (above 1 is better for mailplat where higher is better, below 1 "
        "where lower is better). What each figure means: `bench/README.md`.",
        "",
        "| figure | unit | better | mailplat | peer | peer figure | mailplat / peer |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"![throughput and time]({os.path.basename(charts['throughput'])})",
        f"![memory]({os.path.basename(charts['memory'])})",
        "",
        "## Machine and versions",
        "",
        *(f"- {k}: {val}" for k, val in v.items()),
        f"- load average (1, 5, 15 min) at start {', '.join(f'{x:.2f}' for x in load[0])}, "
        f"at end {', '.join(f'{x:.2f}' for x in load[1])}: other work on the machine "
        "(tests, builds) makes figures noisy; compare ratios from one run, not "
        "absolute figures across runs",
        f"- RLIMIT_NOFILE for the harness and every server: {meta['fileLimit']}",
    ]
    if meta.get("installed"):
        lines.append(f"- installed by this run: {', '.join(meta['installed'])}")
    if results.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results.notes]
    lines += ["", "Raw samples: " + os.path.basename(raw) + "."]
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(raw, "w") as f:
        json.dump({"meta": meta, "samples": results.samples, "na": results.na,
                   "notes": results.notes}, f, indent=1)
    try:
        drawCharts(charts, results, meta)
    except ImportError as e:
        with open(md, "a") as f:
            f.write(f"\n(no charts: {e})\n")
    return [md, raw, *charts.values()]


def drawCharts(paths, results, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for kind, title in (("throughput", "Throughput and time"), ("memory", "Memory")):
        figs = [f for f in FIGURES if (f[4] == "speed") == (kind == "throughput")]
        cols = 4 if kind == "memory" else 5
        nrows = -(-len(figs) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.3 * cols, 3.6 * nrows), squeeze=False)
        for ax in axes.flat[len(figs):]:
            ax.axis("off")
        for ax, (key, label, unit, better, _chart, peer) in zip(axes.flat, figs):
            label = label.format(**meta["params"])
            names = ["mailplat", peer]
            for i, side in enumerate(SIDES):
                values = results.samples.get(key, {}).get(side, [])
                if not values:
                    ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=10, color="grey")
                    continue
                med = statistics.median(values)
                ax.bar(i, med, color=COLORS[side], width=0.6,
                       yerr=[[med - min(values)], [max(values) - med]], capsize=4)
                ax.plot([i] * len(values), values, "k.", markersize=4)
                ax.text(i, med, " " + _fmt(med), ha="left", va="bottom", fontsize=8)
            ax.set_xticks([0, 1], names, fontsize=8)
            ax.set_xlim(-0.6, 1.6)
            ax.set_title("\n".join(textwrap.wrap(label, 30)), fontsize=8.5)
            ax.set_ylabel(f"{unit} ({better} is better)", fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_ylim(bottom=0)
        fig.suptitle(
            f"mailplat vs peers — {title} — {meta['started']} {meta['host']}"
            + (" (quick)" if meta["mode"] == "quick" else "")
            + "\nbars: median of the rounds; whiskers: min–max; dots: each round",
            fontsize=10,
        )
        fig.tight_layout()
        fig.savefig(paths[kind], dpi=90)
        plt.close(fig)
