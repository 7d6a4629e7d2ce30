// The sidebar's chats: searched on the server as the user types (debounced), archived or
// not; a late answer to an older search never overwrites a newer one.
// Two errors, kept apart: the list's own (loading it failed; the next load that works clears
// it) and an action's (an import, rename, archive or delete refused; it stays until the next
// action or until dismissed). One state for both let a list load that finished just after a
// refused import wipe the import's error before anyone could read it.
import { useCallback, useEffect, useRef, useState } from "../ui.js";
import { chats } from "../api.js";

const SEARCH_DEBOUNCE_MS = 200;

export function useChatList() {
  const [chatList, setChatList] = useState([]);
  const [loadError, setLoadError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [query, setQuery] = useState("");
  const [archived, setArchived] = useState(false);
  const asked = useRef({ query, archived });
  asked.current = { query, archived };
  const seq = useRef(0);

  const refreshList = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const { chats: items } = await chats.list(asked.current.query, asked.current.archived);
      if (mine === seq.current) { setChatList(items); setLoadError(null); }
    } catch (error) {
      if (mine === seq.current) setLoadError(error.message);
    }
  }, []);
  useEffect(() => {
    const timer = setTimeout(refreshList, query ? SEARCH_DEBOUNCE_MS : 0);
    return () => clearTimeout(timer);
  }, [query, archived]);
  // What the sidebar shows: an action's error first; only that one can be dismissed.
  const dismissError = actionError ? () => setActionError(null) : null;
  return { chatList, listError: actionError || loadError, dismissError, setActionError, query,
    setQuery, archived, setArchived, refreshList };
}
