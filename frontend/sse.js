// Server-Sent Events parsing for fetch() streams: one small function, no shared regex state.

/** Split buffered text into complete events; returns [events, rest]. Each event is
 *  {event, data, id}: `id` is the event's `id:` field (null without one), what a reader
 *  sends back as Last-Event-ID to reattach after a dropped connection. */
export function parseSSE(buffer) {
  const events = [];
  const blocks = buffer.replace(/\r\n/g, "\n").split("\n\n");
  const rest = blocks.pop();
  for (const block of blocks) {
    let name = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue; // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (data.length) events.push({ event: name, data: JSON.parse(data.join("\n")), id });
  }
  return [events, rest];
}
