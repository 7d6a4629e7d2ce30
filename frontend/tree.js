// A chat's messages form a tree (regenerate and edit add siblings); the page shows one
// branch of it, from the root to the chat's active leaf.

const byTime = (a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0);

export function indexTree(messages) {
  const byId = new Map(messages.map((m) => [m.id, m]));
  const children = new Map();
  for (const m of messages) {
    const key = m.parent_id ?? "";
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(m);
  }
  for (const list of children.values()) list.sort(byTime);
  return { byId, children };
}

/** Root-to-`leafId` path (empty for an empty chat). */
export function pathTo(tree, leafId) {
  const path = [];
  for (let m = leafId ? tree.byId.get(leafId) : null; m; m = tree.byId.get(m.parent_id)) {
    path.push(m);
  }
  return path.reverse();
}

export const siblingsOf = (tree, message) => tree.children.get(message.parent_id ?? "") ?? [message];

/** Where a branch ends: follow the newest child down from `message`. */
export function newestLeaf(tree, message) {
  let current = message;
  for (;;) {
    const kids = tree.children.get(current.id);
    if (!kids?.length) return current;
    current = kids[kids.length - 1];
  }
}
