// The VQA score of the official evaluation (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py),
// reproduced rule by rule, quirks included where they change numbers. Checked against numbers the
// official script printed: test/eval/metrics/vqa.test.ts.

const CONTRACTIONS: Record<string, string> = {
  aint: "ain't",
  arent: "aren't",
  cant: "can't",
  couldve: "could've",
  couldnt: "couldn't",
  "couldn'tve": "couldn't've",
  "couldnt've": "couldn't've",
  didnt: "didn't",
  doesnt: "doesn't",
  dont: "don't",
  hadnt: "hadn't",
  "hadnt've": "hadn't've",
  "hadn'tve": "hadn't've",
  hasnt: "hasn't",
  havent: "haven't",
  hed: "he'd",
  "hed've": "he'd've",
  "he'dve": "he'd've",
  hes: "he's",
  howd: "how'd",
  howll: "how'll",
  hows: "how's",
  "Id've": "I'd've",
  "I'dve": "I'd've",
  Im: "I'm",
  Ive: "I've",
  isnt: "isn't",
  itd: "it'd",
  "itd've": "it'd've",
  "it'dve": "it'd've",
  itll: "it'll",
  "let's": "let's",
  maam: "ma'am",
  mightnt: "mightn't",
  "mightnt've": "mightn't've",
  "mightn'tve": "mightn't've",
  mightve: "might've",
  mustnt: "mustn't",
  mustve: "must've",
  neednt: "needn't",
  notve: "not've",
  oclock: "o'clock",
  oughtnt: "oughtn't",
  "ow's'at": "'ow's'at",
  "'ows'at": "'ow's'at",
  "'ow'sat": "'ow's'at",
  shant: "shan't",
  "shed've": "she'd've",
  "she'dve": "she'd've",
  "she's": "she's",
  shouldve: "should've",
  shouldnt: "shouldn't",
  "shouldnt've": "shouldn't've",
  "shouldn'tve": "shouldn't've",
  "somebody'd": "somebodyd",
  "somebodyd've": "somebody'd've",
  "somebody'dve": "somebody'd've",
  somebodyll: "somebody'll",
  somebodys: "somebody's",
  someoned: "someone'd",
  "someoned've": "someone'd've",
  "someone'dve": "someone'd've",
  someonell: "someone'll",
  someones: "someone's",
  somethingd: "something'd",
  "somethingd've": "something'd've",
  "something'dve": "something'd've",
  somethingll: "something'll",
  thats: "that's",
  thered: "there'd",
  "thered've": "there'd've",
  "there'dve": "there'd've",
  therere: "there're",
  theres: "there's",
  theyd: "they'd",
  "theyd've": "they'd've",
  "they'dve": "they'd've",
  theyll: "they'll",
  theyre: "they're",
  theyve: "they've",
  twas: "'twas",
  wasnt: "wasn't",
  "wed've": "we'd've",
  "we'dve": "we'd've",
  weve: "we've",
  werent: "weren't",
  whatll: "what'll",
  whatre: "what're",
  whats: "what's",
  whatve: "what've",
  whens: "when's",
  whered: "where'd",
  wheres: "where's",
  whereve: "where've",
  whod: "who'd",
  "whod've": "who'd've",
  "who'dve": "who'd've",
  wholl: "who'll",
  whos: "who's",
  whove: "who've",
  whyll: "why'll",
  whyre: "why're",
  whys: "why's",
  wont: "won't",
  wouldve: "would've",
  wouldnt: "wouldn't",
  "wouldnt've": "wouldn't've",
  "wouldn'tve": "wouldn't've",
  yall: "y'all",
  "yall'll": "y'all'll",
  "y'allll": "y'all'll",
  "yall'd've": "y'all'd've",
  "y'alld've": "y'all'd've",
  "y'all'dve": "y'all'd've",
  youd: "you'd",
  "youd've": "you'd've",
  "you'dve": "you'd've",
  youll: "you'll",
  youre: "you're",
  youve: "you've",
};

const NUMBER_WORDS: Record<string, string> = {
  none: "0",
  zero: "0",
  one: "1",
  two: "2",
  three: "3",
  four: "4",
  five: "5",
  six: "6",
  seven: "7",
  eight: "8",
  nine: "9",
  ten: "10",
};

const ARTICLES = new Set(["a", "an", "the"]);

const PUNCTUATION = [
  ";",
  "/",
  "[",
  "]",
  '"',
  "{",
  "}",
  "(",
  ")",
  "=",
  "+",
  "\\",
  "_",
  "-",
  ">",
  "<",
  "@",
  "`",
  ",",
  "?",
  "!",
];

const COMMA_BETWEEN_DIGITS = /(\d)(,)(\d)/;

/**
 * The official regex is "(?!<=\d)(\.)(?!\d)": its first group is a lookahead (a typo for a lookbehind) that never
 * fails in front of a ".", so it removes every "." not followed by a digit. It is called as
 * `periodStrip.sub("", text, re.UNICODE)`, which passes re.UNICODE (32) as the replacement COUNT: only the first 32
 * such periods go.
 */
const PERIOD_NOT_BEFORE_DIGIT = /\.(?!\d)/g;
const OFFICIAL_PERIOD_COUNT = 32;

/** vqaEval.processPunctuation: the tests look at the input text, the replacements accumulate on the output. */
export function processPunctuation(text: string): string {
  let out = text;
  const commaNumber = COMMA_BETWEEN_DIGITS.test(text);
  for (const p of PUNCTUATION) {
    const remove = text.includes(`${p} `) || text.includes(` ${p}`) || commaNumber;
    out = out.split(p).join(remove ? "" : " ");
  }
  let removed = 0;
  return out.replace(PERIOD_NOT_BEFORE_DIGIT, (dot) => (removed++ < OFFICIAL_PERIOD_COUNT ? "" : dot));
}

/** Python's str.split() with no argument: runs of whitespace, no empty pieces. */
function pythonSplit(text: string): string[] {
  return text.split(/\s+/).filter((w) => w.length > 0);
}

/** vqaEval.processDigitArticle: lowercase, number words to digits, no articles, contractions restored. */
export function processDigitArticle(text: string): string {
  const words = pythonSplit(text.toLowerCase())
    .map((w) => (Object.hasOwn(NUMBER_WORDS, w) ? NUMBER_WORDS[w] : w))
    .filter((w) => !ARTICLES.has(w));
  return words.map((w) => (Object.hasOwn(CONTRACTIONS, w) ? CONTRACTIONS[w] : w)).join(" ");
}

/** The whitespace clean-up every answer gets before anything else (newlines and tabs to spaces, then strip). */
export function stripAnswer(text: string): string {
  return text
    .replace(/\n/g, " ")
    .replace(/\t/g, " ")
    .replace(/^\s+|\s+$/g, "");
}

export function normalizeVqaAnswer(text: string): string {
  return processDigitArticle(processPunctuation(text));
}

export interface VqaScoreOptions {
  /**
   * The official script normalizes nothing (neither the prediction nor the answers) when all ground-truth answers
   * are the same string, so "Yes" scores 0 against ten "yes". That is the default here, to give the official
   * numbers; true normalizes always, as OpenFlamingo's copy does.
   */
  alwaysNormalize?: boolean;
}

/**
 * Accuracy of one prediction against the ground-truth answers (usually 10), in [0,1]: each answer is left out in
 * turn BY POSITION, the prediction scores min(1, matches among the others / 3), and the results are averaged. The
 * official script leaves out by dict equality, which equals this when every answer has its answer_id (VQAv2,
 * OK-VQA) but removes every duplicate when the ids are missing (VizWiz files), underrating majority answers.
 */
export function vqaAccuracy(prediction: string, answers: readonly string[], options: VqaScoreOptions = {}): number {
  if (answers.length === 0) throw new Error("a VQA question needs at least one ground-truth answer");
  let gt = answers.map(stripAnswer);
  let pred = stripAnswer(prediction);
  if (options.alwaysNormalize || new Set(gt).size > 1) {
    gt = gt.map(normalizeVqaAnswer);
    pred = normalizeVqaAnswer(pred);
  }
  let total = 0;
  for (let left = 0; left < gt.length; left++) {
    let matches = 0;
    for (let i = 0; i < gt.length; i++) if (i !== left && gt[i] === pred) matches++;
    total += Math.min(1, matches / 3);
  }
  return total / gt.length;
}

/**
 * Emu2's clean-up of a generated short answer before scoring (Emu2's VQA evaluation): the text up to the first
 * newline, ". ", '"' or ", ", lowercased, without a leading "it is", "it's" or article.
 */
export function emu2ShortAnswer(text: string): string {
  // A quote that opens the answer ("blue") is not a cut: the answer is what it quotes.
  let answer = text.trimStart().replace(/^"/, "");
  for (const cut of ["\n", ". ", '"', ", "]) answer = answer.split(cut)[0];
  answer = answer.toLowerCase().trim();
  for (const prefix of ["it is ", "it's "]) if (answer.startsWith(prefix)) answer = answer.slice(prefix.length).trim();
  for (const article of ["a ", "an ", "the "])
    if (answer.startsWith(article)) answer = answer.slice(article.length).trim();
  return answer;
}

export interface VqaItem {
  prediction: string;
  answers: readonly string[];
  answerType?: string;
  questionType?: string;
}

export interface VqaSummary {
  /** 100 x mean accuracy, as the official script and papers print it (unrounded). */
  score: number;
  n: number;
  perAnswerType: Record<string, number>;
  perQuestionType: Record<string, number>;
}

function pushTo(groups: Map<string, number[]>, key: string, value: number): void {
  const list = groups.get(key);
  if (list) list.push(value);
  else groups.set(key, [value]);
}

function meanBy(groups: Map<string, number[]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, values] of [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    out[key] = (100 * values.reduce((s, v) => s + v, 0)) / values.length;
  }
  return out;
}

export function summarizeVqa(
  accuracies: readonly number[],
  items: readonly Pick<VqaItem, "answerType" | "questionType">[],
): VqaSummary {
  const byAnswer = new Map<string, number[]>();
  const byQuestion = new Map<string, number[]>();
  accuracies.forEach((acc, i) => {
    const { answerType, questionType } = items[i];
    if (answerType !== undefined) pushTo(byAnswer, answerType, acc);
    if (questionType !== undefined) pushTo(byQuestion, questionType, acc);
  });
  const sum = accuracies.reduce((s, v) => s + v, 0);
  return {
    score: accuracies.length === 0 ? 0 : (100 * sum) / accuracies.length,
    n: accuracies.length,
    perAnswerType: meanBy(byAnswer),
    perQuestionType: meanBy(byQuestion),
  };
}

export function scoreVqa(items: readonly VqaItem[], options: VqaScoreOptions = {}): VqaSummary {
  return summarizeVqa(
    items.map((item) => vqaAccuracy(item.prediction, item.answers, options)),
    items,
  );
}
