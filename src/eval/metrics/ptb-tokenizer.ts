// A PTB-style tokenizer for captions, standing in for the Stanford CoreNLP 3.4.1 PTBTokenizer that pycocoevalcap
// runs through Java (tokenizer/ptbtokenizer.py: -preserveLines -lowerCase, then punctuation tokens are dropped).
// It follows the PTB rules that ordinary captions meet: lowercase; sentence punctuation split off; clitics split
// ("don't" -> "do n't", "dog's" -> "dog 's"); hyphenated words, decimals, times and thousands kept whole; known
// abbreviations and letter-dot initialisms keep their period; double quotes become `` and ''; brackets become
// -lrb- style tokens (the jar lowercases them after escaping, so they are NOT in the dropped list); "/" is escaped
// as "\/" (PTB3 escaping). It is not the full Stanford lexer: URLs, emoticons, SGML and unusual unicode are out of
// scope. The expected tokens in test/eval/metrics/ptb-tokenizer.test.ts say exactly what is covered.

/** The tokens pycocoevalcap removes after tokenizing (ptbtokenizer.py PUNCTUATIONS). */
const DROPPED = new Set([
  "''",
  "'",
  "``",
  "`",
  "-LRB-",
  "-RRB-",
  "-LCB-",
  "-RCB-",
  ".",
  "?",
  "!",
  ",",
  ":",
  "-",
  "--",
  "...",
  ";",
]);

/** Abbreviations whose period the PTB lexer keeps on the word. */
const ABBREVIATIONS = new Set(["mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "mt"]);

const BRACKETS: Record<string, string> = {
  "(": "-lrb-",
  ")": "-rrb-",
  "[": "-lsb-",
  "]": "-rsb-",
  "{": "-lcb-",
  "}": "-rcb-",
};

const ELLIPSIS = /\.\.\.+/y;
const DASHES = /--+/y;
const BEFORE_NEGATION = /\p{L}+(?=n't(?![\p{L}\p{N}]))/uy;
const NEGATION = /n't(?![\p{L}\p{N}])/uy;
const CLITIC = /'(?:s|re|ve|ll|d|m)(?![\p{L}\p{N}])/uy;
/** A word: letters/digits joined by hyphens, periods, &, / or _, or by , and : between digits (1,000 and 10:30). */
const WORD = /[\p{L}\p{N}]+(?:(?:[-.&/_]|(?<=\p{N})[,:](?=\p{N}))[\p{L}\p{N}]+)*/uy;
const INITIALISM = /^(?:\p{L}\.)+\p{L}$/u;

function tokenizeChunk(chunk: string, out: string[]): void {
  let at = 0;
  const take = (re: RegExp): string | null => {
    re.lastIndex = at;
    const m = re.exec(chunk);
    if (!m || m[0].length === 0) return null;
    at += m[0].length;
    return m[0];
  };
  while (at < chunk.length) {
    let token: string | null;
    if ((token = take(ELLIPSIS))) out.push("...");
    else if ((token = take(DASHES))) out.push("--");
    else if ((token = take(BEFORE_NEGATION))) out.push(token);
    else if ((token = take(NEGATION))) out.push(token);
    else if ((token = take(CLITIC))) out.push(token);
    else if ((token = take(WORD))) {
      if (chunk[at] === "." && (INITIALISM.test(token) || ABBREVIATIONS.has(token))) {
        token += ".";
        at += 1;
      }
      out.push(token.replace(/\//g, "\\/"));
    } else {
      const c = chunk[at];
      at += 1;
      if (c === '"') out.push(at === 1 ? "``" : "''");
      else if (c === "'") out.push(at === 1 ? "`" : "'");
      else if (c === "/") out.push("\\/");
      else out.push(BRACKETS[c] ?? c);
    }
  }
}

/** Tokens of one caption, lowercased, before the punctuation filter. */
export function ptbTokens(caption: string): string[] {
  const text = caption
    .replace(/\n/g, " ")
    .replace(/[\u2018\u2019]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    .toLowerCase();
  const out: string[] = [];
  for (const chunk of text.split(/\s+/)) if (chunk.length > 0) tokenizeChunk(chunk, out);
  return out;
}

/** What pycocoevalcap hands to CIDEr: the tokens without punctuation, joined by single spaces. */
export function ptbTokenizeCaption(caption: string): string {
  return ptbTokens(caption)
    .filter((t) => !DROPPED.has(t))
    .join(" ");
}
