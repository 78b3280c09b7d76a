// Limits and Budgets: use against limit, reset times, the ledger, exports.
import type { JSX } from "preact";
import { useState } from "preact/hooks";
import type { Page } from "../api";
import { ErrorNote, fmtTime, str, useApi } from "../util";

type Rec = Record<string, unknown>;

function Meter(props: { utilization: unknown; label: string }): JSX.Element {
  const u = typeof props.utilization === "number" ? props.utilization : 0;
  return (
    <meter min={0} max={1} low={0.7} high={0.9} optimum={0} value={Math.min(u, 1)} aria-label={props.label}>
      {Math.round(u * 100)}%
    </meter>
  );
}

function BucketRows(props: { rows: Rec[]; rule?: boolean }): JSX.Element {
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
      <table class="list">
        <thead>
          <tr>
            {props.rule && <th scope="col">Rule</th>}
            <th scope="col">Subject</th>
            <th scope="col" class="num">Used</th>
            <th scope="col" class="num">Limit</th>
            <th scope="col">Use</th>
            <th scope="col">Resets</th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((b) => (
            <tr key={str(b.bucket)}>
              {props.rule && (
                <td>
                  {str(b.rule)} <span class="muted">{str(b.kind)}</span>
                </td>
              )}
              <td>
                {str(b.scope)} {str(b.subject)}
              </td>
              <td class="num">{str(b.current)}</td>
              <td class="num">
                {str(b.limit)} {b.currency ? str(b.currency) : ""}
              </td>
              <td>
                <Meter utilization={b.utilization} label={`use of ${str(b.subject)}`} />{" "}
                {typeof b.utilization === "number" ? `${Math.round(b.utilization * 100)}%` : ""}
              </td>
              <td>{fmtTime(b.reset_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.rows.length === 0 && <p class="muted empty">Nothing used yet.</p>}
    </div>
  );
}

export function Limits(): JSX.Element {
  const limits = useApi<Page<Rec>>("/api/limits?limit=200");
  return (
    <div>
      <div class="toolbar">
        <h1>Limits</h1>
        <button type="button" onClick={limits.reload}>
          Refresh
        </button>
      </div>
      <ErrorNote error={limits.error} />
      <BucketRows rows={limits.data?.data ?? []} rule />
    </div>
  );
}

function Ledger(props: { name: string }): JSX.Element {
  const events = useApi<Page<Rec>>(`/api/budgets/${encodeURIComponent(props.name)}/events?limit=50`);
  const rows = events.data?.data ?? [];
  const cols = rows.length ? Object.keys(rows[0]).slice(0, 8) : [];
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
      <ErrorNote error={events.error} />
      <table class="list" aria-label={`Ledger of ${props.name}`}>
        <thead>
          <tr>
            {cols.map((c) => (
              <th scope="col" key={c}>
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              {cols.map((c) => (
                <td key={c}>{c.endsWith("_at") || c === "timestamp" ? fmtTime(r[c]) : str(r[c])}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      {rows.length === 0 && <p class="muted empty">No ledger entries yet.</p>}
    </div>
  );
}

export function Budgets(): JSX.Element {
  const budgets = useApi<Page<Rec>>("/api/budgets?limit=200");
  const [open, setOpen] = useState<string | null>(null);
  const list = budgets.data?.data ?? [];
  return (
    <div>
      <div class="toolbar">
        <h1>Budgets</h1>
        <button type="button" onClick={budgets.reload}>
          Refresh
        </button>
      </div>
      <ErrorNote error={budgets.error} />
      {list.length === 0 && !budgets.loading && <p class="muted empty">No budget is configured.</p>}
      {list.map((b) => {
        const name = str(b.name);
        const enc = encodeURIComponent(name);
        return (
          <section class="card" key={name}>
            <header class="card-head">
              <h2>{name}</h2>
              <span class="muted">
                {str(b.limit)} {str(b.currency)} per {str(b.window)} · key {str(b.key)} · on exceed {str(b.on_exceed)}
              </span>
            </header>
            <BucketRows rows={(b.buckets as Rec[]) ?? []} />
            <div class="actions">
              <button type="button" aria-expanded={open === name} onClick={() => setOpen(open === name ? null : name)}>
                {open === name ? "Hide ledger" : "Show ledger"}
              </button>
              <a class="button" href={`/api/budgets/${enc}/events/export?format=csv`} download>
                Export CSV
              </a>
              <a class="button" href={`/api/budgets/${enc}/events/export?format=json`} download>
                Export JSON
              </a>
            </div>
            {open === name && <Ledger name={name} />}
          </section>
        );
      })}
    </div>
  );
}
