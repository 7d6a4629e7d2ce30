// The page's component toolkit in one import: Preact with htm templates (no build step).
import { h, render } from "preact";
import htm from "htm";

export const html = htm.bind(h);
export { render };
export { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
