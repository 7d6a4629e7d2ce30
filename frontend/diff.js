// A word-level diff of two replies, for the compare view: the longest common subsequence of
// their words (whitespace kept as it was, never compared), after the common start and end are
// set aside. Each side comes back as segments {text, changed}; `changed` marks words the
// other side does not have there. Past MAX_CELLS the middle is marked changed whole.

const MAX_CELLS = 9_000_000; // words(left) x words(right) in the table; 18 MB of Uint16

/** Leading whitespace, then each word with the whitespace after it. */
function tokens(text) {
  const lead = /^\s*/.exec(text)[0];
  const words = [];
  for (const match of text.slice(lead.length).matchAll(/(\S+)(\s*)/g)) {
    words.push({ word: match[1], space: match[2] });
  }
  return { lead, words };
}

/** Which words of `a` and `b` are kept (in the LCS): two arrays of booleans. */
function common(a, b) {
  const keepA = new Array(a.length).fill(false);
  const keepB = new Array(b.length).fill(false);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) {
    keepA[start] = keepB[start] = true;
    start += 1;
  }
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA -= 1;
    endB -= 1;
    keepA[endA] = keepB[endB] = true;
  }
  const n = endA - start;
  const m = endB - start;
  if (n === 0 || m === 0) return { keepA, keepB, whole: true };
  if ((n + 1) * (m + 1) > MAX_CELLS || n > 65_000 || m > 65_000) {
    return { keepA, keepB, whole: false };
  }
  // lcs[i][j]: the LCS length of a[start+i..endA) and b[start+j..endB)
  const width = m + 1;
  const lcs = new Uint16Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * width + j] = a[start + i] === b[start + j] ? lcs[(i + 1) * width + j + 1] + 1
        : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  for (let i = 0, j = 0; i < n && j < m;) {
    if (a[start + i] === b[start + j]) {
      keepA[start + i] = keepB[start + j] = true;
      i += 1;
      j += 1;
    } else if (lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
      i += 1;
    } else {
      j += 1;
    }
  }
  return { keepA, keepB, whole: true };
}

/** One side's segments: runs of kept or changed words (the space between two changed words
 *  is part of the change, the space after the last one is not). */
function segments({ lead, words }, keep) {
  const out = [];
  const push = (text, changed) => {
    if (!text) return;
    const last = out.at(-1);
    if (last && last.changed === changed) last.text += text;
    else out.push({ text, changed });
  };
  push(lead, false);
  words.forEach(({ word, space }, i) => {
    const changed = !keep[i];
    push(word, changed);
    push(space, changed && i + 1 < words.length && !keep[i + 1]);
  });
  return out;
}

/** The word diff of `left` and `right`: {left, right} segments, `complete` false when the
 *  texts were too long to compare word by word (their differing middle is marked whole). */
export function wordDiff(left, right) {
  const a = tokens(left ?? "");
  const b = tokens(right ?? "");
  const { keepA, keepB, whole } = common(a.words.map((t) => t.word), b.words.map((t) => t.word));
  return { left: segments(a, keepA), right: segments(b, keepB), complete: whole };
}
