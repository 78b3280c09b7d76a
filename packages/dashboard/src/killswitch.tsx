// The kill switch: a banner on every screen while it is on; admins can engage or release it.
import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, can, type Operator } from "./api";
import { subscribe } from "./events";

interface Scope {
  scope: string;
  reason: string | null;
  actor: string | null;
  changed_at: string | null;
}

interface KillState {
  engaged: boolean;
  unreadable: string | null;
  scopes: Scope[];
}

export function KillSwitch(props: { operator: Operator }): JSX.Element | null {
  const [state, setState] = useState<KillState | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const admin = can(props.operator, "admin");

  useEffect(() => {
    api<{ data: KillState }>("GET", "/api/kill-switch").then(
      // A proxy without the kill switch (or a page served without the API) answers no state.
      (body) => setState(body?.data ?? null),
      () => setState(null),
    );
    return subscribe((event) => {
      if (event.type === "kill_switch") setState((event.data as unknown as KillState | undefined) ?? null);
    });
  }, []);

  const change = async (engaged: boolean, scope?: Scope): Promise<void> => {
    let reason: string | null = null;
    if (engaged) {
      reason = prompt("Kill switch: why? (recorded in the audit trail and shown to agents)");
      if (reason === null) return;
    }
    const body: Record<string, unknown> = { engaged, reason: reason || undefined };
    if (scope?.scope.startsWith("upstream:")) body.upstream = scope.scope.slice("upstream:".length);
    if (scope?.scope.startsWith("agent:")) body.agent = scope.scope.slice("agent:".length);
    setBusy(true);
    setError(null);
    try {
      setState((await api<{ data: KillState }>("POST", "/api/kill-switch", body)).data);
    } catch (err) {
      setError(String(err instanceof Error ? err.message : err));
    } finally {
      setBusy(false);
    }
  };

  if (!state) return null;
  if (!state.engaged) {
    return admin ? (
      <div class="kill-off">
        <button type="button" class="danger" disabled={busy} onClick={() => void change(true)}>
          Kill switch: stop all tool calls
        </button>
        {error && <span class="error">{error}</span>}
      </div>
    ) : null;
  }
  return (
    <div class="kill-banner" role="alert">
      <strong>Kill switch ON</strong>
      {state.unreadable && <span> — its state cannot be read ({state.unreadable}): every tool call is blocked</span>}
      <ul>
        {state.scopes.map((s) => (
          <li>
            <code>{s.scope}</code> by {s.actor ?? "?"}
            {s.reason && <> — {s.reason}</>}
            {s.changed_at && <span class="muted"> since {s.changed_at.slice(0, 19)}Z</span>}
            {admin && (
              <button type="button" disabled={busy} onClick={() => void change(false, s)}>
                Resume
              </button>
            )}
          </li>
        ))}
      </ul>
      {error && <span class="error">{error}</span>}
    </div>
  );
}
