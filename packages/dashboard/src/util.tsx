// Routing, data loading and small shared pieces.
import type { AnchorHTMLAttributes, ComponentChildren, JSX } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { api, ApiFailure } from "./api";

// -- routing: the path and query string are the state (every filtered view is a shareable link) --

const routeListeners = new Set<() => void>();

export function navigate(href: string, replace = false): void {
  if (href === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  routeListeners.forEach((l) => l());
}

window.addEventListener("popstate", () => routeListeners.forEach((l) => l()));

export function useRoute(): { path: string; query: URLSearchParams } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const l = () => setTick((t) => t + 1);
    routeListeners.add(l);
    return () => {
      routeListeners.delete(l);
    };
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }): JSX.Element {
  const { href, onClick, ...rest } = props;
  return (
    <a
      {...rest}
      href={href}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
        if (typeof onClick === "function") onClick(e as never);
      }}
    />
  );
}

// -- data ------------------------------------------------------------------------------------

export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

/** GETs `path` (again when it changes, or on reload()). */
export function useApi<T>(path: string | null): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: string | null; loading: boolean }>({
    data: undefined,
    error: null,
    loading: path !== null,
  });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === null) return;
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    api<T>("GET", path).then(
      (data) => live && setState({ data, error: null, loading: false }),
      (err: unknown) =>
        live &&
        setState((s) => ({
          data: s.data,
          error: err instanceof ApiFailure ? `${err.message} (HTTP ${err.status})` : String(err),
          loading: false,
        })),
    );
    return () => {
      live = false;
    };
  }, [path, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

// -- formatting ------------------------------------------------------------------------------

export function toMs(value: unknown): number | null {
  if (typeof value === "number") return value > 1e12 ? value : value * 1000;
  if (typeof value === "string" && value) {
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed;
  }
  return null;
}

// One formatter each: building an Intl formatter per call costs more than the rest of a row.
const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium", hour12: false });
const CLOCK = new Intl.DateTimeFormat(undefined, { timeStyle: "medium", hour12: false });

export function fmtTime(value: unknown): string {
  const ms = toMs(value);
  return ms === null ? "—" : DATE_TIME.format(ms);
}

export function fmtClock(value: unknown): string {
  const ms = toMs(value);
  return ms === null ? "—" : CLOCK.format(ms);
}

export function fmtMs(value: unknown): string {
  return typeof value === "number" ? `${value.toFixed(value < 10 ? 2 : 0)} ms` : "—";
}

export function fmtDuration(seconds: number): string {
  if (seconds <= 0) return "0s";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** The CSS class of a decision (colour plus a text label, so colour is never the only cue). */
export function decisionClass(decision: unknown, blockReason?: unknown): string {
  const d = String(decision ?? "");
  if (d === "allow") return blockReason ? "d-blocked" : "d-allow";
  if (d === "dry_run") return "d-dry";
  if (d === "require_approval") return blockReason ? "d-deny" : "d-pending";
  if (d === "tool_drift_accepted" || d === "tool_drift_reverted") return "d-allow";
  return "d-deny";
}

export function Decision(props: { decision: unknown; reason?: unknown }): JSX.Element {
  return (
    <span class={`badge ${decisionClass(props.decision, props.reason)}`}>
      {String(props.decision ?? "?")}
      {props.reason ? ` · ${String(props.reason)}` : ""}
    </span>
  );
}

export function Json(props: { value: unknown }): JSX.Element {
  return <pre class="json">{JSON.stringify(props.value, null, 2)}</pre>;
}

export function ErrorNote(props: { error: string | null }): JSX.Element | null {
  return props.error ? (
    <p class="error" role="alert">
      {props.error}
    </p>
  ) : null;
}

export function Section(props: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{props.title}</h2>
        {props.actions}
      </header>
      {props.children}
    </section>
  );
}

/** Re-renders every `intervalMs` (countdowns). */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(t);
  }, [intervalMs]);
  return now;
}

export function str(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
