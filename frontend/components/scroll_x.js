// A box that scrolls sideways and shows it: a fade on each edge that has more beyond it, and
// a line above saying the table scrolls while any of it is out of sight. A phone cut a wide
// table's columns off with no sign that there were more (issue 23). Render only: the box
// measures itself (on scroll, and when it or its content change size).
import { html, useLayoutEffect, useRef, useState } from "../ui.js";

const SLACK_PX = 1; // sub-pixel widths: "at the edge" within a pixel

/** Which edges of `box` have content beyond them. */
function edgesOf(box) {
  const beyondRight = box.scrollWidth - box.clientWidth - box.scrollLeft;
  return { left: box.scrollLeft > SLACK_PX, right: beyondRight > SLACK_PX };
}

/** `className` styles the scrolling box itself (its border, its overflow); `label` names it
 *  as a region, focusable so the keyboard's arrows scroll it too. */
export function ScrollX({ className, label, children }) {
  const box = useRef(null);
  const [edges, setEdges] = useState({ left: false, right: false });
  useLayoutEffect(() => {
    const el = box.current;
    const measure = () => {
      const next = edgesOf(el);
      setEdges((now) => (now.left === next.left && now.right === next.right ? now : next));
    };
    measure();
    const watch = new ResizeObserver(measure);
    watch.observe(el);
    for (const child of el.children) watch.observe(child); // rows arriving widen a table
    el.addEventListener("scroll", measure, { passive: true });
    return () => {
      watch.disconnect();
      el.removeEventListener("scroll", measure);
    };
  }, []);
  const more = [edges.left && "more-left", edges.right && "more-right"].filter(Boolean);
  return html`<div class=${["scroll-x", ...more].join(" ")}>
    ${more.length > 0 && html`<p class="scroll-hint" aria-hidden="true">${edges.right
      ? "More columns: scroll sideways →" : "← Scroll back for the first columns"}</p>`}
    <div class="scroll-x-frame">
      <div class=${className} ref=${box} role="region" aria-label=${label} tabindex="0">
        ${children}
      </div>
    </div>
  </div>`;
}
