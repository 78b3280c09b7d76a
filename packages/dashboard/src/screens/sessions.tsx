// Sessions: one agent session's evidence, context, dependencies and calls in order.
import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { Decision, ErrorNote, fmtTime, Json, Link, navigate, str, useApi, useRoute } from "../util";

type Rec = Record<string, unknown>;

function SessionView(props: { id: string }): JSX.Element {
  const one = useApi<{ data: Rec }>(`/api/sessions/${encodeURIComponent(props.id)}`);
  const s = one.data?.data;
  const calls = (s?.calls as Rec[] | undefined) ?? [];
  return (
    <div>
      <div class="toolbar">
        <h1>Session {props.id}</h1>
        <Link href={`/audit?session=${encodeURIComponent(props.id)}`}>Open in audit</Link>
      </div>
      <ErrorNote error={one.error} />
      {s && (
        <div class="detail">
          <section class="card">
            <h2>Evidence</h2>
            <div class="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
              <table class="list" aria-label="Evidence">
                <thead>
                  <tr>
                    <th scope="col">From tool</th>
                    <th scope="col">Key</th>
                    <th scope="col">Data</th>
                    <th scope="col">Expires</th>
                  </tr>
                </thead>
                <tbody>
                  {((s.evidence as Rec[] | undefined) ?? []).map((e, i) => (
                    <tr key={i}>
                      <td>{str(e.tool_name)}</td>
                      <td>
                        <code>{str(e.evidence_key)}</code>
                      </td>
                      <td>
                        <code>{str(e.data)}</code>
                      </td>
                      <td>{fmtTime(e.expires_at)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
          <section class="card">
            <h2>Context</h2>
            <Json value={s.context} />
          </section>
          <section class="card">
            <h2>Declared dependencies</h2>
            <ul class="plain">
              {((s.dependencies as Rec[] | undefined) ?? []).map((d, i) => (
                <li key={i}>
                  <code>{str(d.tool_name)}</code> needs {((d.requires as string[] | undefined) ?? []).join(", ") || "—"}
                </li>
              ))}
            </ul>
          </section>
          <section class="card wide-card">
            <h2>Calls in order</h2>
            <div class="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
              <table class="list">
                <thead>
                  <tr>
                    <th scope="col">#</th>
                    <th scope="col">Time</th>
                    <th scope="col">Tool</th>
                    <th scope="col">Decision</th>
                    <th scope="col">Rule</th>
                  </tr>
                </thead>
                <tbody>
                  {calls.map((c, i) => (
                    <tr key={str(c.id)}>
                      <td>{i + 1}</td>
                      <td>{fmtTime(c.timestamp)}</td>
                      <td>
                        <Link href={`/audit/${str(c.id)}`}>{str(c.tool_name)}</Link>
                      </td>
                      <td>
                        <Decision decision={c.policy_decision} reason={c.block_reason} />
                      </td>
                      <td>{str(c.matched_rule)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {calls.length === 0 && <p class="muted empty">No call in this session yet.</p>}
            </div>
          </section>
        </div>
      )}
    </div>
  );
}

export function Sessions(): JSX.Element {
  const { path } = useRoute();
  const id = path.startsWith("/sessions/") ? decodeURIComponent(path.slice("/sessions/".length)) : "";
  const [draft, setDraft] = useState("");
  const recent = useApi<{ data: Rec[] }>(id ? null : "/api/feed?limit=200");
  if (id) return <SessionView id={id} />;
  const seen = new Map<string, Rec>();
  for (const r of recent.data?.data ?? []) {
    const sid = r.session_id as string | undefined;
    if (sid && !seen.has(sid)) seen.set(sid, r);
  }
  return (
    <div>
      <div class="toolbar">
        <h1>Sessions</h1>
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            if (draft.trim()) navigate(`/sessions/${encodeURIComponent(draft.trim())}`);
          }}
        >
          <label>
            Session id{" "}
            <input value={draft} onInput={(e) => setDraft((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit">Open</button>
        </form>
      </div>
      <h2>Recently active</h2>
      <ul class="plain">
        {[...seen.entries()].map(([sid, r]) => (
          <li key={sid}>
            <Link href={`/sessions/${encodeURIComponent(sid)}`}>{sid}</Link>{" "}
            <span class="muted">
              {str(r.agent_id)} · last {fmtTime(r.timestamp)}
            </span>
          </li>
        ))}
      </ul>
      {seen.size === 0 && <p class="muted empty">No session seen in the recent calls.</p>}
    </div>
  );
}
