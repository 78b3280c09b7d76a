// Feed: every call, live. Incoming events are buffered and flushed at most every 100 ms, and the
// list is capped, so hundreds of events per second cost a few renders per second, not one each.
import { Component, type JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { onStatus, subscribe, type LiveEvent } from "../events";
import { Decision, fmtClock, fmtMs, Link, navigate, useRoute } from "../util";

const CAP = 250;
const FLUSH_MS = 200;
const CALL_TYPES = new Set(["action", "call", "feed"]);

export interface FeedItem {
  key: string;
  clock: string;
  id?: string;
  /** The record's place in the audit trail (newest is highest): how fetched and live rows interleave. */
  seq?: number;
  timestamp: unknown;
  tool_name?: string;
  upstream?: string;
  policy_decision?: string;
  block_reason?: string | null;
  agent_id?: string | null;
  session_id?: string | null;
  total_duration_ms?: number | null;
  dry_run?: boolean;
}

let seq = 0;

export function toItem(raw: Record<string, unknown>, timestamp?: number): FeedItem {
  const record = (raw.record as Record<string, unknown> | undefined) ?? raw;
  const id = (record.id ?? record.record_id ?? record.audit_id) as string | undefined;
  return {
    key: `${id ?? "e"}-${++seq}`,
    clock: fmtClock(record.timestamp ?? timestamp),
    id,
    seq: typeof record.seq === "number" ? record.seq : undefined,
    timestamp: record.timestamp ?? timestamp,
    tool_name: record.tool_name as string | undefined,
    upstream: record.upstream as string | undefined,
    policy_decision: record.policy_decision as string | undefined,
    block_reason: record.block_reason as string | null | undefined,
    agent_id: record.agent_id as string | null | undefined,
    session_id: record.session_id as string | null | undefined,
    total_duration_ms: record.total_duration_ms as number | null | undefined,
    dry_run: record.dry_run as boolean | undefined,
  };
}

/** ``fetched`` (a fresh first page, newest first) merged into the rows shown: a record already
 * shown keeps its row, one the live stream missed (it was down) takes its place by ``seq``, and the
 * list stays capped. Rows without a ``seq`` keep their place relative to their neighbours. */
export function mergeItems(now: FeedItem[], fetched: FeedItem[]): FeedItem[] {
  const shown = new Set(now.map((i) => i.id).filter((id) => id !== undefined));
  const missed = fetched.filter((i) => i.id === undefined || !shown.has(i.id));
  if (missed.length === 0) return now;
  const merged = [...now, ...missed];
  merged.sort((a, b) => (a.seq !== undefined && b.seq !== undefined ? b.seq - a.seq : 0));
  return merged.slice(0, CAP);
}

/** A row re-renders only when its item changes: a flush adds rows without touching the others. */
class FeedRow extends Component<{ item: FeedItem }> {
  shouldComponentUpdate(next: { item: FeedItem }): boolean {
    return next.item !== this.props.item;
  }

  render(): JSX.Element {
    const { item } = this.props;
    return (
      <tr class="feed-row" data-decision={item.policy_decision}>
        <td>{item.clock}</td>
        <td>
          {item.id ? <Link href={`/audit/${item.id}`}>{item.tool_name ?? "?"}</Link> : item.tool_name}
          {item.upstream && <span class="muted"> · {item.upstream}</span>}
        </td>
        <td>
          <Decision decision={item.policy_decision} reason={item.block_reason} />
        </td>
        <td class="wide">{item.agent_id ?? "—"}</td>
        <td class="wide">
          {item.session_id ? (
            <Link href={`/sessions/${encodeURIComponent(item.session_id)}`}>{item.session_id}</Link>
          ) : (
            "—"
          )}
        </td>
        <td class="num">{fmtMs(item.total_duration_ms)}</td>
      </tr>
    );
  }
}

function matches(item: FeedItem, decision: string, text: string): boolean {
  if (decision) {
    const blocked = Boolean(item.block_reason);
    if (decision === "blocked" && !blocked) return false;
    if (decision === "allowed" && (blocked || item.policy_decision === "dry_run")) return false;
    if (decision === "dry_run" && item.policy_decision !== "dry_run") return false;
  }
  if (text) {
    const hay = `${item.tool_name ?? ""} ${item.upstream ?? ""} ${item.agent_id ?? ""} ${item.session_id ?? ""}`;
    if (!hay.toLowerCase().includes(text.toLowerCase())) return false;
  }
  return true;
}

export function Feed(): JSX.Element {
  const { query } = useRoute();
  const decision = query.get("decision") ?? "";
  const text = query.get("q") ?? "";
  const [items, setItems] = useState<FeedItem[]>([]);
  const [paused, setPaused] = useState(false);
  const [held, setHeld] = useState(0);
  const [rate, setRate] = useState(0);
  const buffer = useRef<FeedItem[]>([]);
  const pausedRef = useRef(false);
  pausedRef.current = paused;

  useEffect(() => {
    let live = true;
    // The latest calls, merged into what is shown: on opening the screen, and again whenever the
    // event stream (re)opens, so calls made while it was down (a restarted proxy, a network
    // blip) are not missing from the list.
    const load = () =>
      api<{ data: Record<string, unknown>[] }>("GET", "/api/feed?limit=100").then(
        (body) => {
          if (!live) return;
          const fetched = (body.data ?? []).map((r) => toItem(r));
          setItems((now) => mergeItems(now, fetched));
        },
        () => undefined, // the live stream still fills the list
      );
    void load();
    const offStatus = onStatus((connected) => {
      if (connected) void load();
    });
    let count = 0;
    const off = subscribe((event: LiveEvent) => {
      if (!CALL_TYPES.has(event.type)) return;
      count += 1;
      buffer.current.unshift(toItem(event.data, event.timestamp));
      if (buffer.current.length > CAP) buffer.current.length = CAP;
    });
    const flush = setInterval(() => {
      if (pausedRef.current) {
        setHeld(buffer.current.length);
        return;
      }
      if (buffer.current.length === 0) return;
      const fresh = buffer.current;
      buffer.current = [];
      setHeld(0);
      setItems((now) => mergeItems(now, fresh));
    }, FLUSH_MS);
    const meter = setInterval(() => {
      setRate(count);
      count = 0;
    }, 1000);
    return () => {
      live = false;
      off();
      offStatus();
      clearInterval(flush);
      clearInterval(meter);
    };
  }, []);

  const setFilter = (key: string, value: string) => {
    const next = new URLSearchParams(location.search);
    if (value) next.set(key, value);
    else next.delete(key);
    const s = next.toString();
    navigate(`/feed${s ? `?${s}` : ""}`, true);
  };
  const shown = items.filter((i) => matches(i, decision, text));

  return (
    <div>
      <div class="toolbar">
        <h1>Feed</h1>
        <label>
          Decision{" "}
          <select value={decision} onChange={(e) => setFilter("decision", (e.target as HTMLSelectElement).value)}>
            <option value="">all</option>
            <option value="allowed">allowed</option>
            <option value="blocked">blocked</option>
            <option value="dry_run">dry run</option>
          </select>
        </label>
        <label>
          Search{" "}
          <input
            type="search"
            value={text}
            placeholder="tool, agent, session"
            onInput={(e) => setFilter("q", (e.target as HTMLInputElement).value)}
          />
        </label>
        <button type="button" aria-pressed={paused} onClick={() => setPaused((p) => !p)}>
          {paused ? `Resume${held ? ` (${held} waiting)` : ""}` : "Pause"}
        </button>
        <span class="muted" aria-live="off">
          {rate}/s · showing {shown.length} of the last {items.length}
        </span>
      </div>
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
        <table class="list" aria-label="Live calls">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Tool</th>
              <th scope="col">Decision</th>
              <th scope="col" class="wide">Agent</th>
              <th scope="col" class="wide">Session</th>
              <th scope="col" class="num">Duration</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((item) => (
              <FeedRow key={item.key} item={item} />
            ))}
          </tbody>
        </table>
        {shown.length === 0 && <p class="muted empty">No calls yet: they appear here as agents make them.</p>}
      </div>
    </div>
  );
}
