// The sidebar's chats: searched on the server as the user types (debounced), archived or
// not; a late answer to an older search never overwrites a newer one.
import { useCallback, useEffect, useRef, useState } from "../ui.js";
import { chats } from "../api.js";

const SEARCH_DEBOUNCE_MS = 200;

export function useChatList() {
  const [chatList, setChatList] = useState([]);
  const [listError, setListError] = useState(null);
  const [query, setQuery] = useState("");
  const [archived, setArchived] = useState(false);
  const asked = useRef({ query, archived });
  asked.current = { query, archived };
  const seq = useRef(0);

  const refreshList = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const { chats: items } = await chats.list(asked.current.query, asked.current.archived);
      if (mine === seq.current) { setChatList(items); setListError(null); }
    } catch (error) {
      if (mine === seq.current) setListError(error.message);
    }
  }, []);
  useEffect(() => {
    const timer = setTimeout(refreshList, query ? SEARCH_DEBOUNCE_MS : 0);
    return () => clearTimeout(timer);
  }, [query, archived]);
  return { chatList, listError, setListError, query, setQuery, archived, setArchived, refreshList };
}
