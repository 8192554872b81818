"""The built-in tasks ship their data and licences and read through the ordinary data pipeline."""

import gzip
import json

import numpy as np
import pytest

from duelist.cli import main
from duelist.data import tasks
from duelist.data.formats import validate
from duelist.data.sources import read_records
from duelist.data.tasks.judged_builders import PAIR_ORDER, qa_pairs
from duelist.judges import get_judge

TASKS = ["positive-review", "intransitive-review", "hh-harmless", "finegrained-qa"]


@pytest.mark.parametrize("name", TASKS)
def test_task_files_and_licences_exist(name):
    t = tasks.get(name)
    for split in t.splits:
        assert t.path(split).is_file(), (name, split)
    for lic in t.licences:
        assert (tasks.HERE / t.folder / lic).is_file()
    if t.judge:
        get_judge(t.judge)


def test_tasks_command_lists_all(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in TASKS:
        assert name in out


def test_finegrained_labels_become_pairs():
    """Labels follow (1v2, 1v3, 1v4, 2v3, 2v4, 3v4): 1 = first preferred, 2 = second, 0 = no preference."""
    assert PAIR_ORDER == ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    assert qa_pairs({"preference": [1, 2, 0, 0, 1, 2]}) == [(0, 1), (2, 0), (1, 3), (3, 2)]
    train = validate(read_records("finegrained-qa")).examples
    test = validate(read_records("finegrained-qa:test")).examples
    assert (len(train), len(test)) == (2088, 528)
    q_train = {r.data["question_id"] for r in read_records("finegrained-qa")}
    q_test = {r.data["question_id"] for r in read_records("finegrained-qa:test")}
    # 400 / 100 questions; those whose 6 labels are all ties give no pair
    assert (len(q_train), len(q_test)) == (388, 100) and not q_train & q_test  # held out by question
    with gzip.open(tasks.data_file("finegrained-qa:questions"), "rt") as f:
        qs = [json.loads(line) for line in f]
    assert len(qs) == 100 and q_test <= {q["question_id"] for q in qs}
    # every held-out pair is one of its question's non-tie human labels, the winner as chosen
    by_id = {q["question_id"]: q for q in qs}
    for r in read_records("finegrained-qa:test"):
        q = by_id[r.data["question_id"]]
        w, lo = (a - 1 for a in r.data["answers"])
        assert (w, lo) in qa_pairs(q)
        assert r.data["chosen"][0]["content"] == q["answers"][w]


def test_intransitive_review_pairs_agree_with_the_judge():
    """Relabelled pairs: the intransitive judge prefers every chosen response to its rejected one."""
    ex = validate(read_records("intransitive-review")).examples
    assert len(ex) == 1023
    p = get_judge("intransitive").prob(
        [""] * len(ex), [e.chosen[-1]["content"] for e in ex], [e.rejected[-1]["content"] for e in ex]
    )
    assert np.all(p == 1.0)
    prompts = read_records("intransitive-review:test")
    assert len(prompts) == 256 and "prompt" in prompts[0].data
