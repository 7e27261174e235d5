#!/usr/bin/env python3
"""Write docs/zdtm.md from the tables of ../shared/zdtm/run.sh (one per flavor run).

usage: scripts/zdtm-doc.py --out docs/zdtm.md [--why WHY.tsv] LABEL=REPORT/table.txt [LABEL=...]

Each table line reads `TEST cryo=RESULT criu=RESULT # reason`. A failure is put in a class by its reason
(REASONS below: the later issues' scope) or by WHY.tsv (optional: `TEST-REGEX<TAB>why` lines); otherwise it
keeps the reason zdtm saw, numbers folded. The page lists, per run, the pass/fail/skip counts beside CRIU
4.2's, and every test cryo fails with why, grouped by that class.
"""
import argparse
import collections
import datetime
import re
import subprocess
import sys


def read_table(path):
    rows = []
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        head, _, reason = line.rstrip("\n").partition(" # ")
        parts = head.split()
        if len(parts) < 3:
            continue
        rows.append((parts[0], parts[1].split("=", 1)[1], parts[2].split("=", 1)[1], reason.strip()))
    return rows


def read_why(path):
    out = []
    if not path:
        return out
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        pat, _, why = line.rstrip("\n").partition("\t")
        out.append((re.compile(pat + r"$"), why.strip()))
    return out


REASONS = [
    (r"not a unix socket|inet sockets are not supported yet", "refused at dump: inet sockets (issue 12)"),
    (
        r"a raw IP socket|an MPTCP socket|an SCTP socket|an ICMP \(ping\) socket|socket of family|"
        r"packet socket: |netlink socket \(protocol",
        "refused at dump: other socket families and types, netlink and packet socket states (issue 12)",
    ),
    (
        r"\(socket:\[\d+\]\): refusing",
        "refused at dump: unix socket states cryo cannot restore exactly yet (issue 12): fds in flight, "
        "connections waiting in a backlog, a bound path unlinked since, a peer outside the tree",
    ),
    (r"is a socket|sockets are not supported", "refused at dump: sockets (issue 12)"),
    (r"--manage-cgroups|cgroups yet", "refused: cgroups (issue 13)"),
    (r"net namespace|namespaces are not supported", "refused at dump: namespaces (issue 13)"),
]


def classify(test, reason, why):
    short = test.split("/", 1)[1] if "/" in test else test
    for pat, w in why:
        if pat.match(short) or pat.match(test):
            return w
    for pat, w in REASONS:
        if re.search(pat, reason):
            return w
    return re.sub(r"\b\d+\b", "N", reason) or "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--why")
    ap.add_argument("runs", nargs="+", help="LABEL=table.txt")
    a = ap.parse_args()
    why = read_why(a.why)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    out = [
        "# cryo against CRIU's zdtm suite",
        "",
        f"Measured {datetime.date.today().isoformat()} at commit {commit} with `../shared/zdtm/run.sh` "
        "(CRIU v4.2's zdtm, `--criu-bin` = cryo through the kit's `cryo-as-criu`, criu's exact command "
        "lines), on the project's machine (Linux 6.18, 2 vCPU). CRIU 4.2's column is its own result on the "
        "same machine (`criu-4.2-results.txt`). Regenerate with `scripts/zdtm-doc.py`.",
        "",
    ]
    for run in a.runs:
        label, _, path = run.partition("=")
        rows = read_table(path)
        cnt = collections.Counter(r[1] for r in rows)
        ccnt = collections.Counter(r[2] for r in rows)
        out += [
            f"## {label}",
            "",
            "| | pass | fail | skip |",
            "|---|---|---|---|",
            f"| cryo | {cnt['PASS']} | {cnt['FAIL']} | {cnt['SKIP']} |",
            f"| CRIU 4.2 | {ccnt['PASS']} | {ccnt['FAIL']} | {ccnt['SKIP']} |",
            "",
        ]
        groups = collections.defaultdict(list)
        for test, res, _, reason in rows:
            if res == "FAIL":
                groups[classify(test, reason, why)].append(test.split("/", 1)[1])
        if groups:
            out += ["Every test cryo fails, by why:", ""]
            for w, tests in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                out.append(f"- **{w}** ({len(tests)}): " + ", ".join(sorted(tests)))
            out.append("")
    open(a.out, "w", encoding="utf-8").write("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
