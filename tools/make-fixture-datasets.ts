// Rebuilds the fixture datasets in every format fewshot-eval reads (configs/eval/*.yaml), small and made here:
// 32x32 pictures of one coloured square on a coloured background, with questions, captions and labels that say
// what is in them. Deterministic: `node --import tsx tools/make-fixture-datasets.ts` rewrites the same files.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "datasets");
const SIZE = 32;

const COLORS: Record<string, [number, number, number]> = {
  red: [220, 30, 30],
  green: [30, 180, 60],
  blue: [40, 70, 220],
  yellow: [235, 215, 40],
  white: [245, 245, 245],
  black: [15, 15, 15],
};
const POSITIONS = ["top left", "top right", "bottom left", "bottom right"] as const;

interface Picture {
  shape: string;
  background: string;
  position: (typeof POSITIONS)[number];
  count: number;
}

/** The k-th picture of a stream: colours and position cycle with different periods, so pictures differ. */
function picture(k: number): Picture {
  const names = Object.keys(COLORS);
  const shape = names[k % names.length];
  const background =
    names[(k * 5 + 3) % names.length] === shape ? names[(k * 5 + 4) % names.length] : names[(k * 5 + 3) % names.length];
  return { shape, background, position: POSITIONS[(k * 3) % 4], count: 1 + (k % 3) };
}

async function draw(p: Picture, file: string): Promise<void> {
  const px = Buffer.alloc(SIZE * SIZE * 3);
  const [bg, fg] = [COLORS[p.background], COLORS[p.shape]];
  const x0 = p.position.endsWith("left") ? 2 : 17;
  const y0 = p.position.startsWith("top") ? 2 : 17;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      // count squares of 4x4 along the row of the position's quadrant
      let inside = false;
      for (let c = 0; c < p.count; c++) inside ||= x >= x0 + c * 5 && x < x0 + c * 5 + 4 && y >= y0 && y < y0 + 10;
      px.set(inside ? fg : bg, (y * SIZE + x) * 3);
    }
  }
  mkdirSync(dirname(file), { recursive: true });
  const image = sharp(px, { raw: { width: SIZE, height: SIZE, channels: 3 } });
  await (file.endsWith(".png") ? image.png({ compressionLevel: 9 }) : image.jpeg({ quality: 90 })).toFile(file);
}

const json = (file: string, value: unknown) => {
  mkdirSync(dirname(join(ROOT, file)), { recursive: true });
  writeFileSync(join(ROOT, file), `${JSON.stringify(value, null, 1)}\n`);
};
const jsonl = (file: string, values: unknown[]) => {
  mkdirSync(dirname(join(ROOT, file)), { recursive: true });
  writeFileSync(join(ROOT, file), values.map((v) => JSON.stringify(v)).join("\n") + "\n");
};

const caption = (p: Picture) =>
  `${p.count === 1 ? "a" : ["", "", "two", "three"][p.count]} ${p.shape} square${p.count > 1 ? "s" : ""} at the ${p.position} of a ${p.background} picture`;
const captions = (p: Picture) => [
  caption(p),
  `A ${p.background} background with ${p.count === 1 ? "one" : p.count} ${p.shape} square${p.count > 1 ? "s" : ""}.`,
  `${p.count} ${p.shape} block${p.count > 1 ? "s" : ""} in the ${p.position} corner`,
];

/** Ten answers as annotators give them: mostly the truth, a few variants and mistakes. */
function tenAnswers(truth: string, variants: string[], k: number): string[] {
  const out = new Array<string>(10).fill(truth);
  variants.forEach((v, i) => (out[(k + 3 * i) % 10] = v));
  return out;
}

function questionsFor(p: Picture, k: number) {
  return [
    {
      question: "What color is the square?",
      answers: tenAnswers(p.shape, [`${p.shape} square`, p.background], k),
      answer_type: "other",
      question_type: "what color is the",
    },
    {
      question: "How many squares are there?",
      answers: tenAnswers(String(p.count), [["", "one", "two", "three"][p.count]], k),
      answer_type: "number",
      question_type: "how many",
    },
    {
      question: `Is the square ${p.shape}?`,
      answers: tenAnswers("yes", k % 2 ? ["no"] : [], k),
      answer_type: "yes/no",
      question_type: "is the",
    },
  ];
}

async function coco() {
  const train = Array.from({ length: 8 }, (_, i) => ({ id: i + 1, p: picture(i) }));
  const val = Array.from({ length: 6 }, (_, i) => ({ id: 101 + i, p: picture(20 + i) }));
  const file = (split: string, id: number) => `COCO_${split}_${String(id).padStart(12, "0")}.jpg`;
  for (const { id, p } of train) await draw(p, join(ROOT, "coco", "train2014", file("train2014", id)));
  for (const { id, p } of val) await draw(p, join(ROOT, "coco", "val2014", file("val2014", id)));
  json("coco/dataset_coco.json", {
    dataset: "coco",
    images: [
      ...train.map(({ id, p }, i) => ({
        filepath: "train2014",
        filename: file("train2014", id),
        split: i < 6 ? "train" : "restval",
        cocoid: id,
        imgid: i,
        sentences: captions(p).map((raw) => ({ raw, tokens: raw.toLowerCase().replace(/\./g, "").split(" ") })),
      })),
      ...val.map(({ id, p }, i) => ({
        filepath: "val2014",
        filename: file("val2014", id),
        split: i < 4 ? "test" : "val",
        cocoid: id,
        imgid: 8 + i,
        sentences: captions(p).map((raw) => ({ raw, tokens: raw.toLowerCase().replace(/\./g, "").split(" ") })),
      })),
    ],
  });
  for (const [dir, prefix, idBase] of [
    ["vqav2", "v2_", 0],
    ["okvqa", "", 5000],
  ] as const) {
    for (const [split, images] of [
      ["train2014", train],
      ["val2014", val],
    ] as const) {
      const qs = images.flatMap(({ id, p }, i) =>
        questionsFor(p, i).map((q, j) => ({ ...q, image_id: id, question_id: idBase + id * 10 + j })),
      );
      json(`${dir}/${prefix}OpenEnded_mscoco_${split}_questions.json`, {
        questions: qs.map((q) => ({ image_id: q.image_id, question: q.question, question_id: q.question_id })),
      });
      json(`${dir}/${prefix === "v2_" ? "v2_" : ""}mscoco_${split}_annotations.json`, {
        annotations: qs.map((q) => ({
          question_id: q.question_id,
          image_id: q.image_id,
          question_type: q.question_type,
          answer_type: q.answer_type,
          multiple_choice_answer: q.answers[0],
          answers: q.answers.map((answer, k) => ({ answer, answer_confidence: "yes", answer_id: k + 1 })),
        })),
      });
    }
  }
}

async function vizwiz() {
  for (const [split, n, offset] of [
    ["train", 8, 40],
    ["val", 4, 60],
  ] as const) {
    const items = [];
    for (let i = 0; i < n; i++) {
      const p = picture(offset + i);
      const image = `VizWiz_${split}_${String(i).padStart(8, "0")}.jpg`;
      await draw(p, join(ROOT, "vizwiz", split, image));
      const q = questionsFor(p, i)[i % 2];
      // VizWiz files carry no answer_id: duplicates are left out by position (src/eval/metrics/vqa.ts).
      items.push({
        image,
        question: q.question,
        answers: q.answers.map((answer) => ({ answer, answer_confidence: "yes" })),
        answer_type: q.answer_type,
        answerable: 1,
      });
    }
    json(`vizwiz/${split}.json`, items);
  }
}

async function textvqa() {
  for (const [split, n, offset] of [
    ["train", 8, 70],
    ["val", 4, 90],
  ] as const) {
    const data = [];
    for (let i = 0; i < n; i++) {
      const p = picture(offset + i);
      const imageId = `${split === "train" ? "a" : "b"}${(offset * 7919 + i * 104729).toString(16).padStart(15, "0")}`;
      await draw(p, join(ROOT, "textvqa", "train_images", `${imageId}.jpg`));
      data.push({
        question_id: offset * 100 + i,
        question: "what color is written on the sign?",
        image_id: imageId,
        answers: tenAnswers(p.shape, [p.background], i),
        image_classes: ["Sign"],
        set_name: split,
      });
    }
    json(`textvqa/TextVQA_0.5.1_${split}.json`, {
      dataset_type: split,
      dataset_name: "textvqa",
      dataset_version: "0.5.1",
      data,
    });
  }
}

async function hatefulMemes() {
  for (const [file, n, offset] of [
    ["train.jsonl", 8, 110],
    ["dev_seen.jsonl", 6, 130],
  ] as const) {
    const lines = [];
    for (let i = 0; i < n; i++) {
      const p = picture(offset + i);
      const id = 10000 + offset * 10 + i;
      await draw(p, join(ROOT, "hateful_memes", "img", `${id}.png`));
      lines.push({
        id,
        img: `img/${id}.png`,
        label: (i + (p.shape === "red" ? 1 : 0)) % 2,
        text: `when the ${p.shape} square is at the ${p.position}`,
      });
    }
    jsonl(`hateful_memes/${file}`, lines);
  }
}

async function flickr30k() {
  const images = [];
  for (let i = 0; i < 12; i++) {
    const p = picture(150 + i);
    const filename = `${1000000 + i * 7}.jpg`;
    await draw(p, join(ROOT, "flickr30k", "flickr30k_images", filename));
    images.push({
      filename,
      split: i < 8 ? "train" : "test",
      imgid: i,
      sentences: captions(p).map((raw) => ({ raw, tokens: raw.toLowerCase().split(" ") })),
    });
  }
  json("flickr30k/dataset_flickr30k.json", { dataset: "flickr30k", images });
}

async function classFolder() {
  const classes = ["red", "green", "blue"];
  let k = 0;
  for (const split of ["train", "val"]) {
    for (const [c, cls] of classes.entries()) {
      for (let i = 0; i < 2; i++) {
        const p = { ...picture(200 + k++), shape: cls, background: ["white", "black", "yellow"][(c + i) % 3] };
        await draw(p, join(ROOT, "imagenet", split, cls, `${split}_${cls}_${i}.JPEG`));
      }
    }
  }
}

async function customJsonl() {
  for (const [file, n, offset] of [
    ["train.jsonl", 8, 230],
    ["val.jsonl", 4, 250],
  ] as const) {
    const lines = [];
    for (let i = 0; i < n; i++) {
      const p = picture(offset + i);
      const image = `images/${file.replace(".jsonl", "")}_${i}.png`;
      await draw(p, join(ROOT, "custom", image));
      lines.push({
        id: `${file.replace(".jsonl", "")}-${i}`,
        image,
        question: "What color is the square?",
        answers: [p.shape, p.shape, `${p.shape} square`],
      });
    }
    jsonl(`custom/${file}`, lines);
  }
}

for (const dir of ["coco", "vqav2", "okvqa", "vizwiz", "textvqa", "hateful_memes", "flickr30k", "imagenet", "custom"])
  rmSync(join(ROOT, dir), { recursive: true, force: true });
await coco();
await vizwiz();
await textvqa();
await hatefulMemes();
await flickr30k();
await classFolder();
await customJsonl();
