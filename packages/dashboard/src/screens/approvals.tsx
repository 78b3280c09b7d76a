// Approvals: pending tickets with live countdowns, the exact arguments, rule, quorum and approvers.
import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, ApiFailure, can, type Operator, type Page } from "../api";
import { onStatus, subscribe } from "../events";
import { ErrorNote, fmtDuration, fmtTime, Json, Link, str, toMs, useApi, useNow } from "../util";

export interface Ticket {
  id: string;
  status: string;
  kind?: string;
  upstream?: string | null;
  tool_name: string;
  tool_input: unknown;
  matched_rule?: string | null;
  reason?: string;
  session_id?: string | null;
  agent_id?: string | null;
  requested_at?: unknown;
  timeout_at?: unknown;
  on_timeout?: string;
  quorum?: number;
  approvals?: Array<{ by: string; at: unknown; text?: string | null }>;
  approvers?: string[];
  resolved_by?: string | null;
  denial_reason?: string | null;
  breached_budgets?: unknown[];
  drifted_aspects?: string[];
}

function Countdown(props: { until: unknown }): JSX.Element {
  const now = useNow(1000);
  const end = toMs(props.until);
  if (end === null) return <span>—</span>;
  const left = Math.max(0, (end - now) / 1000);
  return (
    <span class={left < 30 ? "urgent" : ""} role="timer">
      {left > 0 ? `${fmtDuration(left)} left` : "timing out"}
    </span>
  );
}

function TicketCard(props: { ticket: Ticket; operator: Operator; onDone: () => void }): JSX.Element {
  const { ticket, operator } = props;
  const [reason, setReason] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const approvals = ticket.approvals ?? [];
  const quorum = ticket.quorum ?? 1;

  const act = async (verb: "approve" | "deny" | "break-glass") => {
    if (verb === "break-glass" && !reason.trim()) {
      setError("Break-glass needs a reason.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const body = verb === "approve" ? (reason ? { comment: reason } : {}) : { reason: reason || undefined };
      await api("POST", `/api/approvals/${encodeURIComponent(ticket.id)}/${verb}`, body);
      props.onDone();
    } catch (err) {
      setError(err instanceof ApiFailure ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const reasonId = `reason-${ticket.id}`;
  return (
    <article class="card ticket" data-ticket={ticket.id} aria-label={`Approval for ${ticket.tool_name}`}>
      <header class="card-head">
        <h2>
          {ticket.tool_name}
          {ticket.upstream && <span class="muted"> · {ticket.upstream}</span>}
        </h2>
        <Countdown until={ticket.timeout_at} />
      </header>
      <dl class="facts">
        <dt>Why</dt>
        <dd>
          {ticket.reason ?? "—"}
          {ticket.matched_rule && <> · rule <code>{ticket.matched_rule}</code></>}
        </dd>
        <dt>Quorum</dt>
        <dd>
          <progress max={quorum} value={approvals.length} aria-label="approvals so far" /> {approvals.length} of{" "}
          {quorum}
          {approvals.length > 0 && <> · approved by {approvals.map((a) => a.by).join(", ")}</>}
        </dd>
        <dt>Agent</dt>
        <dd>
          {ticket.agent_id ?? "—"}
          {ticket.session_id && (
            <>
              {" · "}
              <Link href={`/sessions/${encodeURIComponent(ticket.session_id)}`}>session {ticket.session_id}</Link>
            </>
          )}
        </dd>
        <dt>Asked</dt>
        <dd>
          {fmtTime(ticket.requested_at)} · on timeout: {ticket.on_timeout ?? "deny"}
        </dd>
        {ticket.drifted_aspects && (
          <>
            <dt>Drifted</dt>
            <dd>{ticket.drifted_aspects.join(", ")}</dd>
          </>
        )}
      </dl>
      <h3>Arguments</h3>
      <Json value={ticket.tool_input} />
      {ticket.breached_budgets && (
        <>
          <h3>Budgets</h3>
          <Json value={ticket.breached_budgets} />
        </>
      )}
      {can(operator, "approver") ? (
        <div class="actions">
          <label for={reasonId}>Reason or comment</label>
          <input
            id={reasonId}
            value={reason}
            maxLength={1000}
            onInput={(e) => setReason((e.target as HTMLInputElement).value)}
          />
          <button type="button" class="primary" disabled={busy} onClick={() => act("approve")}>
            Approve
          </button>
          <button type="button" class="danger" disabled={busy} onClick={() => act("deny")}>
            Deny
          </button>
          {can(operator, "admin") && (
            <button type="button" disabled={busy} onClick={() => act("break-glass")}>
              Break glass
            </button>
          )}
        </div>
      ) : (
        <p class="muted">Your role ({operator.role}) can see tickets but not decide them.</p>
      )}
      <ErrorNote error={error} />
    </article>
  );
}

export function Approvals(props: { operator: Operator }): JSX.Element {
  const pending = useApi<Page<Ticket>>("/api/approvals?status=pending&limit=200");
  const recent = useApi<Page<Ticket>>("/api/approvals?limit=20");
  useEffect(() => {
    const offEvents = subscribe((e) => {
      if (e.type === "approval_requested" || e.type === "approval_resolved") {
        pending.reload();
        recent.reload();
      }
    });
    // The lists were fetched before the event stream was open (or while it was down): reload
    // them once it is, so a ticket opened in between is not missed.
    const offStatus = onStatus((connected) => {
      if (connected) {
        pending.reload();
        recent.reload();
      }
    });
    return () => {
      offEvents();
      offStatus();
    };
  }, []);
  const tickets = pending.data?.data ?? [];
  const done = (recent.data?.data ?? []).filter((t) => t.status !== "pending");
  return (
    <div>
      <div class="toolbar">
        <h1>Approvals</h1>
        <span class="muted">{tickets.length} pending</span>
      </div>
      <ErrorNote error={pending.error} />
      {tickets.length === 0 && !pending.loading && <p class="muted empty">No call is waiting for approval.</p>}
      <div class="tickets">
        {tickets.map((t) => (
          <TicketCard
            key={t.id}
            ticket={t}
            operator={props.operator}
            onDone={() => {
              pending.reload();
              recent.reload();
            }}
          />
        ))}
      </div>
      <h2>Recently resolved</h2>
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Tool</th>
              <th scope="col">Status</th>
              <th scope="col">By</th>
              <th scope="col">Reason</th>
              <th scope="col">Asked</th>
            </tr>
          </thead>
          <tbody>
            {done.map((t) => (
              <tr key={t.id}>
                <td>{t.tool_name}</td>
                <td>{t.status}</td>
                <td>{str(t.resolved_by)}</td>
                <td>{str(t.denial_reason)}</td>
                <td>{fmtTime(t.requested_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
