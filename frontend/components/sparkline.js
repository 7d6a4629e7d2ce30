// A run's loss curve in a few pixels: the training loss as a line, the eval loss dashed (or
// a dot when there is one point), and a tick under each checkpoint's step.
import { html } from "../ui.js";
import { lossText } from "../format.js";

const finite = (points) => (points ?? []).filter(([s, l]) => Number.isFinite(s) && Number.isFinite(l));

export function Sparkline({ train, evals, marks = [], mark = null, width = 112, height = 26 }) {
  const trainPts = finite(train);
  const evalPts = finite(evals);
  const all = [...trainPts, ...evalPts];
  if (trainPts.length < 2 && evalPts.length < 2) return null;
  const steps = all.map(([s]) => s);
  const losses = all.map(([, l]) => l);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.min(...losses), Math.max(...losses)];
  const pad = 2;
  const x = (s) => pad + (x1 === x0 ? (width - 2 * pad) / 2 : ((s - x0) / (x1 - x0)) * (width - 2 * pad));
  const y = (l) => pad + (y1 === y0 ? (height - 2 * pad) / 2
    : ((y1 - l) / (y1 - y0)) * (height - 2 * pad - 3)); // 3 px at the bottom for the ticks
  const line = (pts) => pts.map(([s, l]) => `${x(s).toFixed(1)},${y(l).toFixed(1)}`).join(" ");
  const words = [];
  if (trainPts.length > 1) {
    words.push(`training loss ${lossText(trainPts[0][1])} → ${lossText(trainPts.at(-1)[1])}`);
  }
  if (evalPts.length) words.push(`eval loss ${lossText(evalPts.at(-1)[1])}`);
  const label = `Loss curve: ${words.join(", ")}, steps ${x0}–${x1}`;
  const ticks = marks.filter((s) => s >= x0 && s <= x1);
  return html`<svg class="sparkline" width=${width} height=${height}
    viewBox=${`0 0 ${width} ${height}`} preserveAspectRatio="none" role="img" aria-label=${label}>
    <title>${label}</title>
    ${ticks.map((s) => html`<line key=${s} class=${`spark-mark${s === mark ? " current" : ""}`}
      x1=${x(s)} x2=${x(s)} y1=${height - 3} y2=${height} />`)}
    ${trainPts.length > 1 && html`<polyline class="spark-train" points=${line(trainPts)} />`}
    ${evalPts.length > 1 && html`<polyline class="spark-eval" points=${line(evalPts)} />`}
    ${evalPts.length === 1 && html`<circle class="spark-eval-dot" r="2"
      cx=${x(evalPts[0][0])} cy=${y(evalPts[0][1])} />`}
  </svg>`;
}
