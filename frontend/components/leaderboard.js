// The leaderboard (#/leaderboard): from every stored vote, a Bradley-Terry rating per model
// (Elo scale) with its 95% interval, its votes and wins, losses and ties, the win-rate matrix,
// and the same as CSV (GET /api/leaderboard, /api/leaderboard.csv). An interval the votes
// cannot support yet (the API's too_few_votes) reads "too few votes", never "1218–1218";
// every column says what it counts (a tooltip on its heading, a legend under the table).
import { html, useEffect, useState } from "../ui.js";
import { compares } from "../api.js";
import { Icon } from "./icons.js";

const round = (value) => Math.round(value).toString();

/** What the standings' columns count, in the words of their headings' tooltips. */
const MEANS = {
  rating: "Bradley-Terry rating, Elo scale: 1000 is the reference; 100 points apart is about a 64% chance to win",
  interval: "95% interval: the ratings this model gets when the votes are resampled",
  votes: "Votes on the turns this model answered",
  wins: "Wins: games won, one per other model in a turn",
  losses: "Losses: games lost, one per other model in a turn",
  ties: "Ties: games tied (a tie or “both bad” vote)",
};

/** Why a model's interval is not shown, in a tooltip. */
const tooFewWhy = (standing, least) => (standing.decisive_votes < least
  ? `${standing.decisive_votes} of the ${least} won or lost votes an interval needs`
  : standing.losses === 0
    ? "It has never lost a game yet, so how far above the others it stands is a guess"
    : "It has never won a game yet, so how far below the others it stands is a guess");

/** The rating and its interval on one scale shared by every row. */
function Interval({ standing, low, high }) {
  const span = high - low || 1;
  const at = (value) => `${((value - low) / span) * 100}%`;
  return html`<span class="ci-bar" aria-hidden="true">
    <span class="ci-range" style=${`left: ${at(standing.ci_low)}; width: calc(${at(standing.ci_high)} - ${at(standing.ci_low)})`}></span>
    <span class="ci-dot" style=${`left: ${at(standing.rating)}`}></span>
  </span>`;
}

function WinRate({ standings, winRate }) {
  const models = standings.map((s) => s.model);
  return html`<table class="winrate">
    <caption>Win rate: how often the row's model beat the column's (ties count half)</caption>
    <thead><tr>
      <th scope="col"><span class="pick-sr">Model</span></th>
      ${models.map((model, i) => html`<th scope="col" title=${model}>
        <span aria-hidden="true">#${i + 1}</span><span class="pick-sr">${model}</span></th>`)}
    </tr></thead>
    <tbody>${models.map((row, i) => html`<tr key=${row}>
      <th scope="row"><span class="rank">#${i + 1}</span> ${row}</th>
      ${models.map((column) => {
        const share = winRate?.[row]?.[column];
        if (row === column) return html`<td class="self" aria-label="itself">–</td>`;
        if (share == null) return html`<td class="none" title="No games between them">·</td>`;
        return html`<td style=${`--share: ${share}`} title=${`${row} against ${column}`}>${Math.round(share * 100)}%</td>`;
      })}
    </tr>`)}</tbody>
  </table>`;
}

export function Leaderboard() {
  const [board, setBoard] = useState(null);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(false);
  const load = async () => {
    setLoading(true);
    try {
      setBoard(await compares.leaderboard());
      setError(null);
    } catch (failure) {
      setError(failure.message);
    } finally {
      setLoading(false);
    }
  };
  useEffect(() => { load(); }, []);
  const standings = board?.standings ?? [];
  const least = board?.min_decisive_votes ?? 5;
  // One scale for the bars of the intervals that are shown (the others have no bar).
  const shown = standings.filter((s) => !s.too_few_votes);
  const low = Math.min(...shown.map((s) => s.ci_low));
  const high = Math.max(...shown.map((s) => s.ci_high));
  return html`<main class="board" aria-label="Leaderboard" aria-busy=${loading ? "true" : "false"}>
    <div class="board-inner">
      <div class="board-head">
        <h1>Leaderboard</h1>
        ${board && html`<span class="muted board-votes">${board.votes} vote${board.votes === 1 ? "" : "s"}</span>`}
        <span class="spacer"></span>
        <button type="button" class="btn small has-icon" onClick=${load} disabled=${loading}
          aria-label="Refresh the leaderboard"><${Icon} name="regenerate" />Refresh</button>
        <a class="btn small has-icon" href="api/leaderboard.csv" download="lfgate-leaderboard.csv"
          aria-label="Download the leaderboard as CSV"><${Icon} name="download" />CSV</a>
      </div>
      <p class="muted board-about">A Bradley-Terry rating per model from every vote in the compare
        view (Elo scale: 1000 is the reference, 100 points apart is about a 64% chance to win),
        with 95% intervals from the fit. A vote for one column beats each
        of the others; a tie or “both bad” ties every pair.</p>
      ${error && html`<p class="notice error" role="alert">${error}</p>`}
      ${board && standings.length === 0 && html`<p class="board-empty">No votes yet. Compare two
        to four models (<a href="#/compare">Compare</a> in the chat list) and vote on their
        replies: the ratings appear here.</p>`}
      ${standings.length > 0 && html`<table class="standings" aria-describedby="board-legend">
        <caption class="pick-sr">Ratings, best first</caption>
        <thead><tr>
          <th scope="col">#</th><th scope="col">Model</th>
          <th scope="col"><abbr title=${MEANS.rating}>Rating</abbr></th>
          <th scope="col"><abbr title=${MEANS.interval}>95% interval</abbr></th>
          <th scope="col"><abbr title=${MEANS.votes}>Votes</abbr></th>
          <th scope="col"><abbr title=${MEANS.wins}>W</abbr></th>
          <th scope="col"><abbr title=${MEANS.losses}>L</abbr></th>
          <th scope="col"><abbr title=${MEANS.ties}>T</abbr></th>
        </tr></thead>
        <tbody>${standings.map((s, i) => html`<tr key=${s.model} data-model=${s.model}>
          <td class="rank">${i + 1}</td>
          <th scope="row" class="model">${s.model}</th>
          <td class="rating">${round(s.rating)}</td>
          <td class="ci">${s.too_few_votes
            ? html`<span class="ci-text ci-none" title=${tooFewWhy(s, least)}>too few votes</span>`
            : html`<span class="ci-text">${round(s.ci_low)}–${round(s.ci_high)}</span>
              <${Interval} standing=${s} low=${low} high=${high} />`}</td>
          <td>${s.votes}</td><td>${s.wins}</td><td>${s.losses}</td><td>${s.ties}</td>
        </tr>`)}</tbody>
      </table>
      <p class="muted board-legend" id="board-legend"><strong>Votes</strong>: votes on the turns a
        model answered. <strong>W</strong>, <strong>L</strong>, <strong>T</strong>: its games won,
        lost and tied, a game per other model in the turn (a vote over three columns is two games
        each, so they add up to more than the votes). <strong>95% interval</strong>: “too few
        votes” until a model has ${least} votes it won or lost, and has both won and lost.</p>`}
      ${standings.length > 1 && html`<${WinRate} standings=${standings} winRate=${board.win_rate} />`}
    </div>
  </main>`;
}
