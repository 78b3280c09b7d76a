// Tools: each upstream's tools, annotations, drift state and the accept button (admin).
import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { api, ApiFailure, can, type Operator } from "../api";
import { ErrorNote, Json, str, useApi } from "../util";

type Rec = Record<string, unknown>;

function drifted(tool: Rec): boolean {
  return tool.drift !== null && tool.drift !== undefined;
}

function aspects(tool: Rec): string {
  const d = tool.drift as Rec | undefined;
  const list = (tool.drifted_aspects ?? (d && typeof d === "object" ? d.aspects : undefined)) as unknown;
  return Array.isArray(list) ? list.join(", ") : "";
}

export function Tools(props: { operator: Operator }): JSX.Element {
  const tools = useApi<{ data: Rec[] }>("/api/tools");
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const list = tools.data?.data ?? [];
  const accept = async (tool: Rec) => {
    setError(null);
    const name = str(tool.name ?? tool.tool_name);
    try {
      await api("POST", `/api/tools/${encodeURIComponent(name)}/accept`, tool.upstream ? { upstream: tool.upstream } : {});
      tools.reload();
    } catch (err) {
      setError(err instanceof ApiFailure ? err.message : String(err));
    }
  };
  return (
    <div>
      <div class="toolbar">
        <h1>Tools</h1>
        <span class="muted">{list.filter(drifted).length} drifted</span>
      </div>
      <ErrorNote error={tools.error ?? error} />
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
        <table class="list" aria-label="Tools">
          <thead>
            <tr>
              <th scope="col">Tool</th>
              <th scope="col">Upstream</th>
              <th scope="col">Annotations</th>
              <th scope="col">Drift</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {list.map((t) => {
              const name = str(t.name ?? t.tool_name);
              const key = `${str(t.upstream)}/${name}`;
              const isDrifted = drifted(t);
              return (
                <tr key={key} class="tool-row" data-tool={name} data-drifted={isDrifted}>
                  <td>
                    <button type="button" class="link" aria-expanded={open === key} onClick={() => setOpen(open === key ? null : key)}>
                      {name}
                    </button>
                    {open === key && <Json value={t} />}
                  </td>
                  <td>{str(t.upstream)}</td>
                  <td>
                    {Object.entries((t.annotations as Rec) ?? {})
                      .filter(([, v]) => v !== null && v !== undefined)
                      .map(([k, v]) => (
                        <span class="tag" key={k}>
                          {k}: {str(v)}
                        </span>
                      ))}
                  </td>
                  <td>
                    {isDrifted ? (
                      <span class="badge d-deny">drifted {aspects(t)}</span>
                    ) : (
                      <span class="badge d-allow">matches baseline</span>
                    )}
                  </td>
                  <td>
                    {isDrifted && can(props.operator, "admin") && (
                      <button type="button" class="primary" onClick={() => accept(t)}>
                        Accept
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {list.length === 0 && !tools.loading && <p class="muted empty">No tool listed yet.</p>}
      </div>
    </div>
  );
}
