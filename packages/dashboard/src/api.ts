// The operator API client: cookie session + CSRF header, one error shape, 401 → "log in again"
// without losing the page (the call waits for the new login and is retried).

export type Role = "viewer" | "approver" | "admin";

export interface Operator {
  operator: string;
  role: Role;
  via?: string;
  csrf_token?: string;
}

export interface Page<T> {
  data: T[];
  total: number;
  limit: number;
  offset: number;
  next_cursor?: string | null;
}

export class ApiFailure extends Error {
  constructor(
    public status: number,
    message: string,
    public details?: unknown,
  ) {
    super(message);
  }
}

const CSRF_KEY = "helio.csrf";
const ROLE_ORDER: Record<Role, number> = { viewer: 0, approver: 1, admin: 2 };

export function can(op: Operator | null, role: Role): boolean {
  return op !== null && ROLE_ORDER[op.role] >= ROLE_ORDER[role];
}

type ExpiryListener = () => void;
let expiryListener: ExpiryListener | null = null;
let waiting: Array<() => void> = [];

/** The app shows the login dialog when a request finds the session gone. */
export function onSessionExpired(listener: ExpiryListener): void {
  expiryListener = listener;
}

/** Called after a successful re-login: every request that met a 401 is retried. */
export function sessionRestored(): void {
  const resume = waiting;
  waiting = [];
  resume.forEach((f) => f());
}

export function rememberCsrf(token: string | undefined): void {
  if (token) sessionStorage.setItem(CSRF_KEY, token);
}

function errorMessage(body: unknown, status: number): [string, unknown] {
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    const err = b.error;
    if (typeof err === "string") return [err, b.details ?? b.code];
    if (err && typeof err === "object") {
      const e = err as Record<string, unknown>;
      return [String(e.message ?? e.code ?? `HTTP ${status}`), e.details ?? e.code];
    }
    if (typeof b.detail === "string") return [b.detail, undefined];
  }
  return [`HTTP ${status}`, undefined];
}

async function send(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") {
    const csrf = sessionStorage.getItem(CSRF_KEY);
    if (csrf) headers["x-helio-csrf"] = csrf;
  }
  return fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** One API call; resolves to the parsed JSON body. A 401 pauses it until the operator logs in again. */
export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  for (;;) {
    const response = await send(method, path, body);
    if (response.status === 401 && !path.startsWith("/api/auth/")) {
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        expiryListener?.();
      });
      continue;
    }
    const text = await response.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    if (!response.ok) {
      const [message, details] = errorMessage(parsed, response.status);
      throw new ApiFailure(response.status, message, details);
    }
    return parsed as T;
  }
}

export async function login(secret: string): Promise<Operator> {
  const body = await api<{ data: Operator }>("POST", "/api/auth/session", { secret });
  rememberCsrf(body.data.csrf_token);
  return body.data;
}

/** Exchanges a one-time login token (from `helio demo`'s link) for the session cookie. */
export async function exchangeToken(token: string): Promise<Operator> {
  const body = await api<{ data: Operator }>("POST", "/api/auth/token-exchange", { token });
  rememberCsrf(body.data.csrf_token);
  return body.data;
}

export async function whoami(): Promise<Operator | null> {
  const response = await send("GET", "/api/auth/session");
  if (response.status === 401) return null;
  if (!response.ok) {
    const [message] = errorMessage(await response.json().catch(() => null), response.status);
    throw new ApiFailure(response.status, message);
  }
  const body = (await response.json()) as { data: Operator };
  rememberCsrf(body.data.csrf_token);
  return body.data;
}

export async function logout(): Promise<void> {
  await send("POST", "/api/auth/logout", {});
  sessionStorage.removeItem(CSRF_KEY);
}

/** A query string from the non-empty entries of `params`. */
export function qs(params: Record<string, string | number | undefined | null>): string {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") out.set(k, String(v));
  }
  const s = out.toString();
  return s ? `?${s}` : "";
}
