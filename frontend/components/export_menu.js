// The header's Export menu: the chat as Markdown or as JSON with every branch (a run's page
// passes its own formats). A menu button that closes after a choice, on a click outside and
// on Escape (focus back on the button), and stays available on a phone (an icon there).
import { html, useEffect, useRef, useState } from "../ui.js";
import { Icon } from "./icons.js";

const CHAT_FORMATS = [["md", "Markdown (.md)"], ["json", "JSON with every branch (.json)"]];

/** `items`: [format, label] pairs, each a link to `${exportBase}?format=<format>`. */
export function ExportMenu({ exportBase, items: formats = CHAT_FORMATS, label = "Export chat",
  title = "Export this chat" }) {
  const [open, setOpen] = useState(false);
  const root = useRef(null);
  const button = useRef(null);
  const items = () => [...(root.current?.querySelectorAll("[role='menuitem']") ?? [])];
  useEffect(() => {
    if (!open) return undefined;
    const onPointer = (event) => { if (!root.current?.contains(event.target)) setOpen(false); };
    const onKey = (event) => {
      if (event.key !== "Escape") return;
      event.stopPropagation(); // Escape closes the menu; it does not also stop a reply
      setOpen(false);
      button.current?.focus();
    };
    document.addEventListener("pointerdown", onPointer);
    document.addEventListener("keydown", onKey, true); // before the page's Escape (stop)
    return () => {
      document.removeEventListener("pointerdown", onPointer);
      document.removeEventListener("keydown", onKey, true);
    };
  }, [open]);
  // The arrow keys move through the choices, as in any menu; Tab leaves and closes it.
  const onMenuKey = (event) => {
    const list = items();
    const at = list.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      list[(at + step + list.length) % list.length]?.focus();
    } else if (event.key === "Tab") {
      setOpen(false);
    }
  };
  const onButtonKey = (event) => {
    if (event.key !== "ArrowDown") return;
    event.preventDefault();
    setOpen(true);
    requestAnimationFrame(() => items()[0]?.focus()); // once the menu is drawn
  };
  const choose = () => setOpen(false); // the download goes on; the menu is done
  return html`<div class="menu-wrap export" ref=${root}>
    <button type="button" class="btn has-icon" ref=${button} aria-haspopup="menu"
      aria-expanded=${open ? "true" : "false"} aria-label=${label} title=${title}
      onClick=${() => setOpen(!open)} onKeyDown=${onButtonKey}>
      <${Icon} name="download" /><span class="wide-only">Export</span>
    </button>
    ${open && html`<div class="popover" role="menu" aria-label="Export as" onKeyDown=${onMenuKey}>
      ${formats.map(([format, text]) => html`<a role="menuitem" key=${format}
        href=${`${exportBase}?format=${format}`} download onClick=${choose}>${text}</a>`)}
    </div>`}
  </div>`;
}
