// Audit: the filters live in the URL (every filtered view is a link), keyset pages, a detail panel.
import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { qs, type Page } from "../api";
import { Decision, ErrorNote, fmtMs, fmtTime, Json, Link, navigate, str, useApi, useRoute } from "../util";

export const AUDIT_FILTERS: Array<[string, string, "datetime-local" | "text" | "search"]> = [
  ["from", "From", "datetime-local"],
  ["to", "To", "datetime-local"],
  ["tool", "Tool", "text"],
  ["upstream", "Upstream", "text"],
  ["decision", "Decision", "text"],
  ["reason", "Block reason", "text"],
  ["rule", "Rule", "text"],
  ["session", "Session", "text"],
  ["agent", "Agent", "text"],
  ["q", "Text in arguments", "search"],
];

type Rec = Record<string, unknown>;

function filterParams(query: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key] of AUDIT_FILTERS) {
    const v = query.get(key);
    if (v) out[key] = v;
  }
  return out;
}

/** datetime-local values carry no zone: send them as the browser's local time in ISO 8601. */
function apiFilters(filters: Record<string, string>): Record<string, string> {
  const out = { ...filters };
  for (const key of ["from", "to"]) {
    if (out[key] && !/[zZ]|[+-]\d\d:\d\d$/.test(out[key])) {
      const d = new Date(out[key]);
      if (!Number.isNaN(d.getTime())) out[key] = d.toISOString();
    }
  }
  return out;
}

function FilterForm(props: { filters: Record<string, string> }): JSX.Element {
  const [draft, setDraft] = useState(props.filters);
  return (
    <form
      class="filters"
      aria-label="Audit filters"
      onSubmit={(e) => {
        e.preventDefault();
        navigate(`/audit${qs(draft)}`);
      }}
    >
      {AUDIT_FILTERS.map(([key, label, type]) => (
        <label key={key}>
          {label}
          <input
            name={key}
            type={type as "text"}
            value={draft[key] ?? ""}
            onInput={(e) => setDraft({ ...draft, [key]: (e.target as HTMLInputElement).value })}
          />
        </label>
      ))}
      <div class="filter-actions">
        <button type="submit" class="primary">
          Apply
        </button>
        <button
          type="button"
          onClick={() => {
            setDraft({});
            navigate("/audit");
          }}
        >
          Clear
        </button>
      </div>
    </form>
  );
}

function AuditList(): JSX.Element {
  const { query } = useRoute();
  const filters = filterParams(query);
  const cursor = query.get("cursor") ?? undefined;
  const path = `/api/audit${qs({ ...apiFilters(filters), limit: 50, cursor })}`;
  const list = useApi<Page<Rec>>(path);
  const count = useApi<{ data: { total: number } }>(`/api/audit/count${qs(apiFilters(filters))}`);
  const rows = list.data?.data ?? [];
  const next = list.data?.next_cursor;
  const exportQs = qs(apiFilters(filters));
  const key = JSON.stringify(filters);
  return (
    <div>
      <div class="toolbar">
        <h1>Audit</h1>
        <a class="button" href={`/api/audit/export${exportQs}${exportQs ? "&" : "?"}format=csv`} download>
          Export CSV
        </a>
        <a class="button" href={`/api/audit/export${exportQs}${exportQs ? "&" : "?"}format=json`} download>
          Export JSON
        </a>
        {count.data && <span class="muted">{count.data.data.total} matching</span>}
      </div>
      <FilterForm key={key} filters={filters} />
      <ErrorNote error={list.error} />
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
        <table class="list" aria-label="Audit records">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Kind / tool</th>
              <th scope="col">Decision</th>
              <th scope="col">Rule</th>
              <th scope="col" class="wide">Agent</th>
              <th scope="col" class="wide">Session</th>
              <th scope="col" class="num">Duration</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={String(r.id)} class="audit-row">
                <td>
                  <Link href={`/audit/${String(r.id)}${location.search}`}>{fmtTime(r.timestamp)}</Link>
                </td>
                <td>
                  {r.record_kind !== "tool_call" && <span class="muted">{str(r.record_kind)} · </span>}
                  <span class="tool">{str(r.tool_name)}</span>
                </td>
                <td>
                  <Decision decision={r.policy_decision} reason={r.block_reason} />
                </td>
                <td>{str(r.matched_rule)}</td>
                <td class="wide">{str(r.agent_id)}</td>
                <td class="wide">{str(r.session_id)}</td>
                <td class="num">{fmtMs(r.total_duration_ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {rows.length === 0 && !list.loading && <p class="muted empty">No record matches these filters.</p>}
      </div>
      <div class="pager">
        {cursor && (
          <button type="button" onClick={() => history.back()}>
            Newer
          </button>
        )}
        {next && (
          <button type="button" onClick={() => navigate(`/audit${qs({ ...filters, cursor: next })}`)}>
            Older
          </button>
        )}
      </div>
    </div>
  );
}

function ChainStatus(props: { value: unknown }): JSX.Element {
  const v = props.value as Rec | undefined | null;
  if (!v) return <span>—</span>;
  const status = str(v.status);
  const ok = status === "ok" || status === "anchor";
  return (
    <span class={`badge ${ok ? "d-allow" : status === "unchained" ? "d-pending" : "d-deny"}`} title={str(v.detail)}>
      {status}
      {v.detail ? ` · ${str(v.detail)}` : ""}
    </span>
  );
}

function AuditDetail(props: { id: string }): JSX.Element {
  const one = useApi<{ data: Rec; chain?: Rec }>(`/api/audit/${encodeURIComponent(props.id)}`);
  const record = one.data?.data;
  const chain = one.data?.chain ?? (record?.chain as Rec | undefined) ?? (record?.hash_chain as Rec | undefined);
  return (
    <div>
      <div class="toolbar">
        <Link href={`/audit${location.search}`}>← Back to the list</Link>
        <h1>Audit record</h1>
      </div>
      <ErrorNote error={one.error} />
      {record && (
        <div class="detail">
          <section class="card">
            <h2>
              {str(record.tool_name ?? record.record_kind)} <Decision decision={record.policy_decision} reason={record.block_reason} />
            </h2>
            <dl class="facts">
              <dt>Record</dt>
              <dd>
                <code>{str(record.id)}</code> · {str(record.record_kind)} · seq {str(record.seq)}
              </dd>
              <dt>Time</dt>
              <dd>{fmtTime(record.timestamp)}</dd>
              <dt>Agent / session</dt>
              <dd>
                {str(record.agent_id)} ·{" "}
                {record.session_id ? (
                  <Link href={`/sessions/${encodeURIComponent(String(record.session_id))}`}>
                    {String(record.session_id)}
                  </Link>
                ) : (
                  "—"
                )}
              </dd>
              <dt>Rule</dt>
              <dd>
                {str(record.matched_rule)} {record.matched_rule_index != null && `(#${str(record.matched_rule_index)})`}
              </dd>
              <dt>Latency</dt>
              <dd>
                total {fmtMs(record.total_duration_ms)} · upstream {fmtMs(record.upstream_latency_ms)} · proxy{" "}
                {fmtMs(record.proxy_compute_ms)} · approval wait {fmtMs(record.approval_wait_ms)}
              </dd>
              <dt>Approval</dt>
              <dd>
                {str(record.approval_status)} {record.approved_by ? `by ${str(record.approved_by)}` : ""}
              </dd>
              <dt>Hash chain</dt>
              <dd>
                <ChainStatus value={chain} /> <code class="hash">{str(record.hash)}</code>
              </dd>
              <dt>Flags</dt>
              <dd>
                {record.dry_run ? "dry run · " : ""}
                {record.flagged_destructive ? "destructive · " : ""}success {str(record.success)}
              </dd>
            </dl>
          </section>
          <section class="card">
            <h2>Arguments</h2>
            <Json value={record.tool_input} />
          </section>
          <section class="card">
            <h2>Evidence chain</h2>
            <Json value={record.evidence_chain} />
          </section>
          <section class="card">
            <h2>Upstream answer</h2>
            <Json value={record.upstream_error ?? record.upstream_response} />
          </section>
          {Boolean(record.metadata) && (
            <section class="card">
              <h2>Approval and limit details</h2>
              <Json value={record.metadata} />
            </section>
          )}
        </div>
      )}
    </div>
  );
}

export function Audit(): JSX.Element {
  const { path } = useRoute();
  const id = path.startsWith("/audit/") ? decodeURIComponent(path.slice("/audit/".length)) : "";
  return id ? <AuditDetail id={id} /> : <AuditList />;
}
