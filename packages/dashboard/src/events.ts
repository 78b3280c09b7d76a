// One shared EventSource on /api/events; screens subscribe to the event types they show.

export interface LiveEvent {
  id: string;
  type: string;
  timestamp: number;
  data: Record<string, unknown>;
}

type Listener = (event: LiveEvent) => void;

const TYPES = [
  "action",
  "call",
  "feed",
  "approval_requested",
  "approval_resolved",
  "approval_notification_failed",
  "limit_warning",
  "budget_update",
  "budget_breached",
  "tool_drift",
  "kill_switch",
  "heartbeat",
];

let source: EventSource | null = null;
const listeners = new Set<Listener>();
const statusListeners = new Set<(connected: boolean) => void>();
const closedListeners = new Set<() => void>();

/** Called when the stream closed for good (the browser will not retry it). */
export function onClosed(listener: () => void): () => void {
  closedListeners.add(listener);
  return () => closedListeners.delete(listener);
}

function dispatch(type: string, message: MessageEvent<string>): void {
  let parsed: { type?: string; timestamp?: number; data?: Record<string, unknown> };
  try {
    parsed = JSON.parse(message.data);
  } catch {
    return;
  }
  const event: LiveEvent = {
    id: message.lastEventId,
    type: parsed.type ?? type,
    timestamp: parsed.timestamp ?? Date.now() / 1000,
    data: parsed.data ?? {},
  };
  listeners.forEach((l) => l(event));
}

export function connect(): void {
  if (source) return;
  source = new EventSource("/api/events", { withCredentials: true });
  source.onopen = () => statusListeners.forEach((l) => l(true));
  source.onerror = () => {
    statusListeners.forEach((l) => l(false));
    // A refused stream (401 after the session expired) is closed for good: say so, so the app can
    // check the session and reconnect.
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      closedListeners.forEach((l) => l());
    }
  };
  for (const type of TYPES) {
    source.addEventListener(type, (m) => dispatch(type, m as MessageEvent<string>));
  }
  source.onmessage = (m) => dispatch("message", m);
}

export function disconnect(): void {
  source?.close();
  source = null;
  statusListeners.forEach((l) => l(false));
}

export function subscribe(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function onStatus(listener: (connected: boolean) => void): () => void {
  statusListeners.add(listener);
  return () => statusListeners.delete(listener);
}
