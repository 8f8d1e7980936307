// Metrics of classification tasks: accuracy and ROC-AUC (Hateful Memes' official metric).

/** Fraction of predictions equal to their labels, in [0,1]. */
export function accuracy(predictions: readonly (string | number)[], labels: readonly (string | number)[]): number {
  if (predictions.length !== labels.length)
    throw new Error(`accuracy: ${predictions.length} predictions for ${labels.length} labels`);
  if (labels.length === 0) return 0;
  let correct = 0;
  predictions.forEach((p, i) => {
    if (String(p) === String(labels[i])) correct++;
  });
  return correct / labels.length;
}

/**
 * Area under the ROC curve of scores for binary labels (1 = positive), in [0,1]: the Mann-Whitney U statistic over
 * positives x negatives, where a tie between a positive and a negative counts one half (average ranks), which is
 * also the trapezoid area under the curve with tied scores as one step (sklearn.metrics.roc_auc_score).
 */
export function rocAuc(scores: readonly number[], labels: readonly number[]): number {
  if (scores.length !== labels.length) throw new Error(`roc-auc: ${scores.length} scores for ${labels.length} labels`);
  const positives = labels.filter((l) => l === 1).length;
  const negatives = labels.length - positives;
  if (positives === 0 || negatives === 0) throw new Error("roc-auc needs both positive and negative labels");
  const order = scores.map((s, i) => i).sort((a, b) => scores[a] - scores[b]);
  // Average ranks (1-based) over runs of equal scores.
  let rankSumPositives = 0;
  for (let start = 0; start < order.length;) {
    let end = start;
    while (end + 1 < order.length && scores[order[end + 1]] === scores[order[start]]) end++;
    const averageRank = (start + end) / 2 + 1;
    for (let k = start; k <= end; k++) if (labels[order[k]] === 1) rankSumPositives += averageRank;
    start = end + 1;
  }
  const u = rankSumPositives - (positives * (positives + 1)) / 2;
  return u / (positives * negatives);
}
