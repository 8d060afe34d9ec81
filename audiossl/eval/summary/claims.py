"""The demo's claims (issue #20), checked against the bench tables by whether 95 % intervals separate.

A claim is a list of comparisons ``A op B on task`` between rows picked by family and iteration.
Each comparison is decided by the two rows' 95 % confidence intervals alone (higher = better, error
rates as 100 − x):

* ``A > B``:  **met** when A's interval lies above B's, **not met** when it lies below, else
  **not significant** (the intervals overlap);
* ``A ≥ B``:  **not met** when A's interval lies below B's, else **met** (overlap: no significant
  difference, which ``≥`` allows);
* **not run** when a row or the task is in no table, **no CI** when a row has no interval.

A claim is not met when any comparison is not met, met when every comparison that ran is met,
not run when none ran, and not significant otherwise. Which tasks and rows exist comes from the
results files; nothing here knows an outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from audiossl.eval.report import BASELINE
from audiossl.eval.summary.bench import BenchTable, Score

MET, NOT_MET, NOT_SIG, NOT_RUN, NO_CI = "met", "not met", "not significant", "not run", "no CI"
SPEECH_TASKS = ("pr", "ks", "er", "asv", "sid", "asr")
MUSIC_TASKS = ("pitch", "key", "instrument")
CTC_TASKS = ("pr", "asr")


@dataclass(frozen=True)
class Row:
    """A table row: ``family`` (the run's model family, or ``fbank``) and ``iteration`` (``it2``);
    iteration None = the latest iteration of that family in the table."""

    family: str
    iteration: str | None = None

    def text(self) -> str:
        return self.family if self.iteration is None else f"{self.family} {self.iteration}"


FBANK = Row(BASELINE)


@dataclass(frozen=True)
class Comparison:
    a: Row
    op: str  # ">" or ">="
    b: Row
    tasks: tuple[str, ...] | None
    """task names or ("overall",); None = every task of the table holding both rows"""
    tasks_of: Row | None = None
    """with ``tasks`` None: the tasks that this row was benched on"""
    except_tasks: tuple[str, ...] = ()
    """with ``tasks`` None: tasks left out of the row's tasks"""


@dataclass
class Claim:
    key: str
    text: str
    comparisons: list[Comparison]


@dataclass
class Check:
    comparison: Comparison
    task: str
    outcome: str
    table: str | None = None
    a: Score | None = None
    b: Score | None = None
    rows: tuple[str, str] | None = None
    shown: tuple[str, str] | None = None
    """both values as their table shows them (error rates as they are, ↓ = lower is better)"""


@dataclass
class ClaimResult:
    claim: Claim
    checks: list[Check] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        ran = [c.outcome for c in self.checks if c.outcome != NOT_RUN]
        if not ran:
            return NOT_RUN
        if NOT_MET in ran:
            return NOT_MET
        return MET if all(o == MET for o in ran) else NOT_SIG


def demo_claims() -> list[Claim]:
    """Issue #20's claims. (b)'s "audio tasks" are the tasks BEATs was benched on (the demo's audio
    table); "BEATs it2 > it1" is read on the overall score; "BEATs > FBANK" uses the latest iteration."""
    h1, h2, b1, b2 = Row("hubert", "it1"), Row("hubert", "it2"), Row("beats", "it1"), Row("beats", "it2")
    return [
        Claim("a", "HuBERT it2 ≥ it1 > FBANK on the speech tasks (PR, KS, ER, ASV, SID, ASR)",
              [Comparison(h2, ">=", h1, SPEECH_TASKS), Comparison(h1, ">", FBANK, SPEECH_TASKS)]),
        Claim("b", "BEATs it2 > it1 (overall), and BEATs > FBANK on instrument and the audio tasks",
              [Comparison(b2, ">", b1, ("overall",)),
               # BEATs' PR/ASR (CTC on its ×8-tiled 6.25 Hz frames) are speech recognition, not the claim's audio tasks
               Comparison(Row("beats"), ">", FBANK, None, tasks_of=Row("beats"), except_tasks=CTC_TASKS)]),
        Claim("c", "MERT > HuBERT and > FBANK on pitch, key, instrument",
              [Comparison(Row("mert"), ">", Row("hubert"), MUSIC_TASKS), Comparison(Row("mert"), ">", FBANK, MUSIC_TASKS)]),
    ]


def compare(a: Score, b: Score, op: str) -> str:
    if a.lo is None or b.lo is None:
        return NO_CI
    above, below = a.lo > b.hi, a.hi < b.lo  # type: ignore[operator]
    if op == ">=":
        return NOT_MET if below else MET
    return MET if above else NOT_MET if below else NOT_SIG


def _it_num(it: str) -> int:
    m = re.search(r"\d+", it)
    return int(m.group()) if m else 0


def pick(table: BenchTable, row: Row) -> str | None:
    """The table's row label for ``row`` (the latest iteration when ``row.iteration`` is None)."""
    if row.family == BASELINE:
        return BASELINE if BASELINE in table.rows else None
    cands = [lab for lab, run in table.runs.items() if run.family == row.family
             and (row.iteration is None or run.iteration == row.iteration)]
    return max(cands, key=lambda lab: _it_num(table.runs[lab].iteration), default=None)


def _check(cmp: Comparison, task: str, tables: list[BenchTable]) -> Check:
    for t in tables:
        ra, rb = pick(t, cmp.a), pick(t, cmp.b)
        if ra is None or rb is None:
            continue
        sa, sb = t.score(ra, task), t.score(rb, task)
        if sa is None or sb is None:
            continue
        return Check(cmp, task, compare(sa, sb, cmp.op), t.name, sa, sb, (ra, rb), (t.shown(ra, task), t.shown(rb, task)))
    return Check(cmp, task, NOT_RUN)


def _tasks(cmp: Comparison, tables: list[BenchTable]) -> list[str]:
    if cmp.tasks is not None:
        return list(cmp.tasks)
    row = cmp.tasks_of or cmp.a
    out: dict[str, None] = {}
    for t in tables:
        lab = pick(t, row)
        if lab is not None and pick(t, cmp.b) is not None:
            out.update((task, None) for task in t.tasks if t.record(lab, task) is not None)
    return [task for task in out if task not in cmp.except_tasks]


def evaluate(claims: list[Claim], tables: list[BenchTable]) -> list[ClaimResult]:
    """Every comparison of every claim on every task it names, in the first table holding both rows and the task."""
    out = []
    for claim in claims:
        res = ClaimResult(claim)
        for cmp in claim.comparisons:
            tasks = _tasks(cmp, tables)
            res.checks += [_check(cmp, task, tables) for task in tasks] or [Check(cmp, "any", NOT_RUN)]
        out.append(res)
    return out
