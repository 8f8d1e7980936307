"""Computes the reference numbers of test/eval/metrics/*.test.ts with the OFFICIAL evaluation code (not in this repo).

Inputs: cases.json next to this file. Output: official.json next to it (committed; the tests read both).

The official files are fetched, never committed:
  vqaEval.py       GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py (Python 2: turn its two
                   `print "..."` statements into print("...") in your copy, nothing else)
  cider_scorer.py  salaniz/pycocoevalcap cider/cider_scorer.py (as is)
Run:  /usr/bin/python3 official_reference.py DIR_WITH_THOSE_TWO_FILES
ROC-AUC has no official script here (the Hateful Memes challenge used sklearn.metrics.roc_auc_score, which is not
installed): it is computed twice in numpy, as Mann-Whitney U with average ranks and as the trapezoid area under the
ROC curve with tied scores as one step (sklearn's method), and the two must agree.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, sys.argv[1])
from vqaEval import VQAEval  # noqa: E402
from cider_scorer import CiderScorer  # noqa: E402


class _Qa:
    def __init__(self, qa):
        self.qa = qa

    def getQuesIds(self):
        return list(self.qa)


def official_vqa(cases, with_ids, always_normalize_probe=False):
    gts, res = {}, {}
    for case in cases:
        answers = []
        for i, a in enumerate(case["answers"]):
            entry = {"answer": a, "answer_confidence": "yes"}
            if with_ids:
                entry["answer_id"] = i + 1
            answers.append(entry)
        gts[case["id"]] = {"answers": answers, "question_type": case["question_type"], "answer_type": case["answer_type"]}
        res[case["id"]] = {"answer": case["prediction"]}
    ev = VQAEval(_Qa(gts), _Qa(res), n=12)
    ev.evaluate()
    return {
        "per_question": {str(q): ev.evalQA[q] for q in gts},
        "overall": ev.accuracy["overall"],
        "per_answer_type": ev.accuracy["perAnswerType"],
        "per_question_type": ev.accuracy["perQuestionType"],
    }


def official_cider(images):
    scorer = CiderScorer(n=4, sigma=6.0)
    for image in images:
        scorer += (image["hypothesis"], image["references"])
    score, scores = scorer.compute_score()
    return {"score": float(score), "per_image": [float(s) for s in scores]}


def auc_mann_whitney(scores, labels):
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_trapezoid(scores, labels):
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    thresholds = np.unique(scores)[::-1]
    tpr = [0.0] + [float(((scores >= t) & (labels == 1)).sum()) / (labels == 1).sum() for t in thresholds]
    fpr = [0.0] + [float(((scores >= t) & (labels == 0)).sum()) / (labels == 0).sum() for t in thresholds]
    return float(np.trapz(tpr, fpr))


def main():
    cases = json.load(open(os.path.join(HERE, "cases.json")))
    out = {"vqa": official_vqa(cases["vqa"], with_ids=True)}
    out["vqa_duplicates_with_ids"] = official_vqa(cases["vqa_duplicates"], with_ids=True)
    out["vqa_duplicates_without_ids"] = official_vqa(cases["vqa_duplicates"], with_ids=False)
    tok = lambda c: c["tokens"]
    images = [{"hypothesis": tok(i["hypothesis"]), "references": [tok(r) for r in i["references"]]} for i in cases["cider"]["images"]]
    out["cider"] = official_cider(images)
    out["cider_first_three"] = official_cider(images[:3])
    out["cider_single"] = official_cider([cases["cider_single"]])
    out["roc_auc"] = {}
    for case in cases["roc_auc"]:
        u, t = auc_mann_whitney(case["scores"], case["labels"]), auc_trapezoid(case["scores"], case["labels"])
        assert abs(u - t) < 1e-12, (case["name"], u, t)
        out["roc_auc"][case["name"]] = u
    json.dump(out, open(os.path.join(HERE, "official.json"), "w"), indent=1, sort_keys=True)
    print("wrote official.json")


if __name__ == "__main__":
    main()
